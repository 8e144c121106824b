"""Recovery's own view of the world, and its decisions: accounts (a projection), requests,
codes; the rate limits; which account a typed login names; the decision on one code request.

- **Model**: accounts, issued and rejected requests, codes.
- **Limits**: sliding windows over timestamps; pure, the clock is passed in.
- **Resolving a login**: which account a typed login names, by the product table (DESIGN.md
  rule 2).
- **Deciding**: issue a password or reject with a reason. Checks in order: client IP window
  (every request counts), a login that is neither kind, unknown login, closed account, unusable
  channel, a mobile outside the SMS prefixes, per-login cool-down, per-destination window, codes
  per account a day, then the hourly SMS budget over all accounts (the last two are counted by
  ``take``, atomically among workers). An issued code's password is one people can type from an
  SMS: CSPRNG, no look-alike characters.
"""

from __future__ import annotations

import math
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from schemas.events import AccountStatus, Channel, CodeRejectReason, TvProduct
from services.common.crypto import Keyring
from services.common.logins import LOGIN_BY_PRODUCT, InvalidLogin, LoginKind, normalise_mobile
from services.recovery.domain.commands import IssueCode


class CodeStatus(StrEnum):
    PENDING = "pending"  # issued, not used yet
    ACTIVE = "active"  # used to log in: it became the password
    VOIDED = "voided"  # a newer code replaced it before it was used
    EXPIRED = "expired"


@dataclass(frozen=True, kw_only=True)
class Account:
    account_id: str
    status: AccountStatus
    tv_product: TvProduct
    login_keys: dict[LoginKind, str]
    sms_usable: bool
    email_usable: bool
    mobile_enc: str
    mobile_masked: str
    email_enc: str | None
    email_masked: str | None
    version: int

    def channel_usable(self, channel: Channel) -> bool:
        if channel is Channel.SMS:
            return self.sms_usable
        return self.email_usable and self.email_enc is not None and self.email_masked is not None

    def masked(self, channel: Channel) -> str:
        return self.mobile_masked if channel is Channel.SMS else (self.email_masked or "")


@dataclass(frozen=True, kw_only=True)
class Issue:
    command: IssueCode
    account: Account
    code_id: str
    password: str
    destination: str


class Guard(StrEnum):
    """Which guard against SMS pumping refused a request (ops are told of each)."""

    SMS_PREFIX = "sms_prefix"  # the mobile is outside SMS_ALLOWED_PREFIXES
    ACCOUNT_DAILY = "account_daily"  # LIMIT_ACCOUNT_DAILY_MAX reached
    SMS_BUDGET = "sms_budget"  # SMS_HOURLY_BUDGET spent


@dataclass(frozen=True, kw_only=True)
class Reject:
    command: IssueCode
    reason: CodeRejectReason
    retry_after_s: int | None = None
    guard: Guard | None = None
    account_id: str | None = None  # the login's account, once resolved


Decision = Issue | Reject


@dataclass(frozen=True, kw_only=True)
class NewCode:
    """An issued code as stored: its argon2id hash, never the password."""

    code_id: str
    account_id: str
    request_event_id: str
    hash: str
    status: CodeStatus
    channel: Channel
    locale: str
    expires_at: float
    created_at: float


@dataclass(frozen=True, kw_only=True)
class LoggedRequest:
    """One decided code request as support sees it (``request_log``): no contact, no password."""

    login_key: str
    request_event_id: str
    account_id: str | None
    channel: str
    outcome: str  # "issued" or "rejected"
    reason: str | None
    retry_after_s: int | None
    code_id: str | None
    requested_at: float | None
    decided_at: float

# --------------------------------------------------------------------------- limits


class LimitKind(StrEnum):
    CLIENT_IP = "ip"
    LOGIN = "login"
    DESTINATION = "destination"


@dataclass(frozen=True, kw_only=True)
class Window:
    """At most ``max_events`` in any ``window_s`` seconds (``max_events=1``: a cool-down)."""

    max_events: int
    window_s: float


@dataclass(frozen=True, kw_only=True)
class Policy:
    login_cooldown: Window = Window(max_events=1, window_s=60)
    per_destination: Window = Window(max_events=5, window_s=600)
    per_ip: Window = Window(max_events=30, window_s=300)
    # against SMS pumping: codes per account a day, SMS over all accounts an hour, and the
    # mobile prefixes an SMS may go to (sliding windows counted atomically in the database)
    account_daily: Window = Window(max_events=10, window_s=86400)
    sms_hourly: Window = Window(max_events=10000, window_s=3600)
    sms_prefixes: tuple[str, ...] = ("+79",)
    # logins: per client address (no hashing beyond it), and the lock-outs. One login costs two
    # argon2id verifications; ``python -m benchmarks.login`` measured about 40-50 logins/s of
    # argon2id capacity on a quiet 2-core machine and 5-6 under heavy load (docs/security.md).
    # 30 a minute (0.5/s) keeps one address under a tenth of even the latter, and is far above
    # what one person types.
    login_ip: Window = Window(max_events=30, window_s=60)
    lockout_failures: int = 5  # per login and client address
    global_lockout_failures: int = 100  # per login, from any address
    lockout_s: float = 900

    def sms_allowed(self, mobile: str) -> bool:
        return any(mobile.startswith(prefix) for prefix in self.sms_prefixes)

    def window(self, kind: LimitKind) -> Window:
        return {
            LimitKind.CLIENT_IP: self.per_ip,
            LimitKind.LOGIN: self.login_cooldown,
            LimitKind.DESTINATION: self.per_destination,
        }[kind]

    @property
    def longest_s(self) -> float:
        return max(self.login_cooldown.window_s, self.per_destination.window_s,
                   self.per_ip.window_s)


Subject = tuple[LimitKind, str]


# peek(subject, window, now): ``None`` if one more event would fit in a sliding window now, else
# the seconds until it would; counts nothing
Peek = Callable[[str, Window, float], int | None]

SMS_BUDGET = "sms-budget"  # the subject of the hourly SMS budget over all accounts


def counted_windows(account_id: str, channel: Channel, policy: Policy,
                    subject_of: Callable[[str], str]) -> list[tuple[str, Window, Guard]]:
    """The shared windows a code counts in, as (subject, window, the guard that refuses when it
    is full): its account's codes a day and, for an SMS, the hourly budget. They are taken when
    the code is written, all or none, on the account that gets it (``Windows.take_together``)."""
    daily = (subject_of("account-day:" + account_id), policy.account_daily, Guard.ACCOUNT_DAILY)
    if channel is Channel.SMS:
        return [daily, (SMS_BUDGET, policy.sms_hourly, Guard.SMS_BUDGET)]
    return [daily]


def refused_by_window(issue: Issue, guard: Guard, wait: int) -> Reject:
    """An issue whose code a full window refused when it was to be written."""
    return Reject(command=issue.command, account_id=issue.account.account_id,
                  reason=CodeRejectReason.RATE_LIMITED, retry_after_s=wait, guard=guard)


# loader(kind, subject, since, newest): at most the ``newest`` latest event times after ``since``
Loader = Callable[[LimitKind, str, float, int], list[float]]


@dataclass
class LimitBook:
    """Recent events per subject, loaded on first use and updated in memory as a batch is
    decided; ``added`` is what the batch must store. A sliding window needs only the newest
    ``max_events`` events inside it, so that is all that is loaded: a flood from one client
    costs the same per request as a single request."""

    policy: Policy
    loader: Loader
    history: dict[Subject, list[float]] = field(default_factory=dict)
    added: list[tuple[LimitKind, str, float]] = field(default_factory=list)

    def _events(self, kind: LimitKind, subject: str, now: float) -> list[float]:
        key = (kind, subject)
        if key not in self.history:
            window = self.policy.window(kind)
            self.history[key] = list(self.loader(kind, subject, now - window.window_s, window.max_events))
        return self.history[key]

    def retry_after(self, kind: LimitKind, subject: str, now: float) -> int | None:
        """Seconds until one more event is allowed, or ``None`` if it is allowed now."""
        window = self.policy.window(kind)
        if window.window_s <= 0:
            return None
        events = self._events(kind, subject, now)
        recent = sorted(t for t in events if t > now - window.window_s)
        if len(recent) < window.max_events:
            return None
        frees_at = recent[len(recent) - window.max_events] + window.window_s
        return max(1, math.ceil(frees_at - now))

    def record(self, kind: LimitKind, subject: str, now: float) -> None:
        self._events(kind, subject, now).append(now)
        self.added.append((kind, subject, now))

# --------------------------------------------------------------------------- resolving a login


def route_login(typed: str) -> str:
    """The login in one canonical form: E.164 when it is a mobile, else its digits.

    Whitespace of any kind goes first, as ``normalise_personal_account`` drops it: two typings
    that reach one account by either kind of login key (``candidate_keys``) must get one form,
    or each would have a lock-out count, and a partition, of its own (``89161110003`` and
    ``8916111<no-break space>0003`` are one personal account, and the first reads as a mobile)."""
    compact = re.sub(r"\s", "", typed)
    try:
        return normalise_mobile(compact)
    except InvalidLogin:
        return "".join(ch for ch in compact if ch.isdigit())


def route_key(keyring: Keyring, typed: str) -> str:
    """The internal partition key of a login (a keyed hash: no phone number in any key)."""
    return keyring.keyed_hash("login-route", route_login(typed))


def resolve(candidates: Mapping[LoginKind, str], accounts: Iterable[Account]) -> Account | None:
    """The account whose product's login kind matches one of ``candidates`` (kind → key).

    An active account wins over a closed one with the same login; then the newest version.
    """
    matches = [
        account
        for account in accounts
        if (kind := LOGIN_BY_PRODUCT[account.tv_product]) in candidates
        and account.login_keys.get(kind) == candidates[kind]
    ]
    if not matches:
        return None
    return max(matches, key=lambda a: (a.status is AccountStatus.ACTIVE, a.version))

# --------------------------------------------------------------------------- deciding


# No 0/O/o, 1/l/I/i, nor 5/S, 2/Z, 8/B, u/v pairs that blur on small screens.
ALPHABET = "abcdefghjkmnpqrstwxyzACDEFGHJKLMNPQRTUVWXY34679"
MIN_LENGTH = 8


def generate_password(length: int = 12) -> str:
    if length < MIN_LENGTH:
        raise ValueError(f"a password has at least {MIN_LENGTH} characters")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def decide(
    command: IssueCode,
    *,
    candidates: Mapping[LoginKind, str],
    accounts: list[Account],
    book: LimitBook,
    now: float,
    subject_of: Callable[[str], str],
    reveal: Callable[[Account, Channel], str],
    password_length: int,
    peek: Peek,
) -> Decision:
    """``subject_of`` turns a value into its keyed hash; ``reveal`` decrypts the destination.
    The shared windows (``counted_windows``) are only looked at here, so that a request they
    would refuse is refused before its password is hashed; the write takes them."""
    if command.client_ip is not None:
        ip = subject_of("ip:" + command.client_ip)
        wait = book.retry_after(LimitKind.CLIENT_IP, ip, now)
        book.record(LimitKind.CLIENT_IP, ip, now)
        if wait is not None:  # named after its account all the same, which an erasure follows
            known = resolve(candidates, accounts) if candidates else None
            return Reject(command=command, reason=CodeRejectReason.RATE_LIMITED, retry_after_s=wait,
                          account_id=None if known is None else known.account_id)
    if not candidates:
        return Reject(command=command, reason=CodeRejectReason.INVALID_REQUEST)
    account = resolve(candidates, accounts)
    if account is None:
        return Reject(command=command, reason=CodeRejectReason.UNKNOWN_LOGIN)
    aid = account.account_id  # from here on a refusal names the account (support's log, erasure)
    if account.status is AccountStatus.CLOSED:
        return Reject(command=command, account_id=aid, reason=CodeRejectReason.ACCOUNT_CLOSED)
    if not account.channel_usable(command.channel):
        return Reject(command=command, account_id=aid, reason=CodeRejectReason.CHANNEL_UNAVAILABLE)
    login = subject_of("account:" + aid)
    destination = reveal(account, command.channel)
    sms = command.channel is Channel.SMS
    if sms and not book.policy.sms_allowed(destination):
        return Reject(command=command, account_id=aid, reason=CodeRejectReason.CHANNEL_UNAVAILABLE,
                      guard=Guard.SMS_PREFIX)
    dest = subject_of(f"destination:{command.channel.value}:{destination.lower()}")
    for kind, subject in ((LimitKind.LOGIN, login), (LimitKind.DESTINATION, dest)):
        wait = book.retry_after(kind, subject, now)
        if wait is not None:
            return Reject(command=command, account_id=aid, reason=CodeRejectReason.RATE_LIMITED,
                          retry_after_s=wait)
    for subject, window, guard in counted_windows(aid, command.channel, book.policy, subject_of):
        wait = peek(subject, window, now)
        if wait is not None:
            return Reject(command=command, account_id=aid, reason=CodeRejectReason.RATE_LIMITED,
                          retry_after_s=wait, guard=guard)
    book.record(LimitKind.LOGIN, login, now)
    book.record(LimitKind.DESTINATION, dest, now)
    return Issue(
        command=command,
        account=account,
        code_id=str(uuid.uuid4()),
        password=generate_password(password_length),
        destination=destination,
    )


def redecide(issue: Issue, *, candidates: Mapping[LoginKind, str], accounts: list[Account],
             reveal: Callable[[Account, Channel], str], sms_allowed: Callable[[str], bool]
             ) -> Decision:
    """An issue whose account changed after it was decided (a re-link, a termination, an
    erasure), decided again on the login's account as it stands: the same code to that account's
    destination now, or the refusal the request would get now. Its cool-downs stay counted on
    the account it was decided on; the shared windows are taken by the write, on the account
    that gets the code."""
    command = issue.command
    account = resolve(candidates, accounts)
    if account is None:
        return Reject(command=command, reason=CodeRejectReason.UNKNOWN_LOGIN)
    aid = account.account_id
    if account.status is AccountStatus.CLOSED:
        return Reject(command=command, account_id=aid, reason=CodeRejectReason.ACCOUNT_CLOSED)
    if not account.channel_usable(command.channel):
        return Reject(command=command, account_id=aid, reason=CodeRejectReason.CHANNEL_UNAVAILABLE)
    destination = reveal(account, command.channel)
    if command.channel is Channel.SMS and not sms_allowed(destination):
        return Reject(command=command, account_id=aid, reason=CodeRejectReason.CHANNEL_UNAVAILABLE,
                      guard=Guard.SMS_PREFIX)
    return replace(issue, account=account, destination=destination)
