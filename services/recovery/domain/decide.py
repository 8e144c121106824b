"""The decision on one code request: issue a password or reject with a reason.

Checks in order: client IP window (every request counts), a login that is neither kind,
unknown login, closed account, unusable channel, a mobile outside the SMS prefixes, per-login
cool-down, per-destination window, codes per account a day, then the hourly SMS budget over all
accounts (the last two are counted by ``take``, atomically among workers). An issued code's
password is one people can type from an SMS: CSPRNG, no look-alike characters.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping

from schemas.events import AccountStatus, Channel, CodeRejectReason
from services.common.logins import LoginKind
from services.recovery.domain.limits import LimitBook, LimitKind, Take
from services.recovery.domain.model import Account, Decision, Guard, Issue, IssueCode, Reject
from services.recovery.domain.resolve import resolve

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
    reveal: Callable[[Account, IssueCode], str],
    password_length: int,
    take: Take,
) -> Decision:
    """``subject_of`` turns a value into its keyed hash; ``reveal`` decrypts the destination."""
    if command.client_ip is not None:
        ip = subject_of("ip:" + command.client_ip)
        wait = book.retry_after(LimitKind.CLIENT_IP, ip, now)
        book.record(LimitKind.CLIENT_IP, ip, now)
        if wait is not None:
            return Reject(command=command, reason=CodeRejectReason.RATE_LIMITED, retry_after_s=wait)
    if not candidates:
        return Reject(command=command, reason=CodeRejectReason.INVALID_REQUEST)
    account = resolve(candidates, accounts)
    if account is None:
        return Reject(command=command, reason=CodeRejectReason.UNKNOWN_LOGIN)
    if account.status is AccountStatus.CLOSED:
        return Reject(command=command, reason=CodeRejectReason.ACCOUNT_CLOSED)
    if not account.channel_usable(command.channel):
        return Reject(command=command, reason=CodeRejectReason.CHANNEL_UNAVAILABLE)
    login = subject_of("account:" + account.account_id)
    destination = reveal(account, command)
    sms = command.channel is Channel.SMS
    if sms and not book.policy.sms_allowed(destination):
        return Reject(command=command, reason=CodeRejectReason.CHANNEL_UNAVAILABLE,
                      guard=Guard.SMS_PREFIX)
    dest = subject_of(f"destination:{command.channel.value}:{destination.lower()}")
    for kind, subject in ((LimitKind.LOGIN, login), (LimitKind.DESTINATION, dest)):
        wait = book.retry_after(kind, subject, now)
        if wait is not None:
            return Reject(command=command, reason=CodeRejectReason.RATE_LIMITED, retry_after_s=wait)
    wait = take(subject_of("account-day:" + account.account_id), book.policy.account_daily, now)
    if wait is not None:
        return Reject(command=command, reason=CodeRejectReason.RATE_LIMITED, retry_after_s=wait,
                      guard=Guard.ACCOUNT_DAILY)
    if sms:
        wait = take("sms-budget", book.policy.sms_hourly, now)
        if wait is not None:
            return Reject(command=command, reason=CodeRejectReason.RATE_LIMITED,
                          retry_after_s=wait, guard=Guard.SMS_BUDGET)
    book.record(LimitKind.LOGIN, login, now)
    book.record(LimitKind.DESTINATION, dest, now)
    return Issue(
        command=command,
        account=account,
        code_id=str(uuid.uuid4()),
        password=generate_password(password_length),
        destination=destination,
    )
