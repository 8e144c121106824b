"""Getting a code: the portal's request, the decision on a batch of requests and its write, and
what comes of each decision.

- **Requesting** (``RequestCode``): "Get code" on the login page publishes CodeRequested.
- **Deciding and writing a batch** (``IssueCodes``): decided in order, hashed and written while
  the next batch is decided; ``Unwritten`` is what a decided batch carries until it is written.
- **Outcomes**: each decision as records (CodeIssued / CodeRejected, stored codes, support's
  request log; the PasswordChanged notice of a login), and its reporting (``report_decisions``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from schemas.events import (
    Channel,
    CodeIssued,
    CodeRejected,
    CodeRejectReason,
    CodeRequested,
    Locale,
    NoticeContact,
    PasswordChanged,
)
from schemas.topics import CODE_ISSUED, CODE_REJECTED, CODE_REQUESTED
from services.common.codec import WireRecord, encode
from services.common.crypto import Keyring, code_aad, contact_aad
from services.common.logins import LoginKind, candidate_keys
from services.recovery.domain.commands import IssueCode
from services.recovery.domain.model import (
    Account,
    CodeStatus,
    Decision,
    Guard,
    Issue,
    LimitBook,
    LimitKind,
    Loader,
    LoggedRequest,
    NewCode,
    Policy,
    Reject,
    counted_windows,
    decide,
    redecide,
    refused_by_window,
    route_key,
)
from services.recovery.service_layer.metrics import RecoveryMetrics
from services.recovery.service_layer.ports import (
    Clock,
    PasswordHasher,
    RateEvent,
    RateEvents,
    Repositories,
    Sender,
    UnitOfWork,
)

SOURCE = "/selfcare-access/recovery"
log = logging.getLogger(__name__)

# --- Requesting a code -----------------------------------------------------------------------
# Handler of "Get code" on the login page: publish CodeRequested; the answer never varies.


class RequestCode:
    def __init__(self, *, publisher: Sender) -> None:
        self.publisher = publisher

    async def __call__(self, event: CodeRequested) -> None:
        record = encode(event, key=str(event.event_id), source=SOURCE)
        await self.publisher.send_all([(CODE_REQUESTED, record)])


# --- Deciding and writing a batch ------------------------------------------------------------
# Handler of ``IssueCode`` batches (re-keyed code requests): decide, then hash and write while
# the next batch is decided.
#
# 1. decide, chunk by chunk (one read transaction each): duplicates (within the batch, already
#    processed, or in an earlier batch not yet written) are dropped, logins resolved against the
#    projection, limits applied — counting what earlier, unwritten batches decided (``ahead``,
#    given by the consumer loop) —, passwords generated; each chunk's passwords go to the argon2
#    thread pool at once;
# 2. the handler returns the decided batch (what it carries, ``Unwritten``), and the batch runner
#    takes the next batch while this one's hashes are computed;
# 3. ``write``, which the consumer loop calls after the previous batches' writes (it keeps the
#    order of the decisions): every hash of the batch, then one transaction: processed ids, codes
#    (older pending ones voided), rate events, the request log, and CodeIssued / CodeRejected
#    staged in the outbox.
#
# Nothing is written before step 3, so a crash before it loses nothing: the batch was not acked and
# is decided again. Decisions never wait for another batch's argon2 work.

CHUNK = 50
MAINTENANCE_EVERY_S = 10.0


# What a decided batch carries until it is written. The consumer loop keeps decided batches in
# line (``services.common.consumer_loop.InOrder``) and gives a batch being decided what the
# batches ahead of it carry; a later batch must count them: their request ids (not decided twice)
# and their rate events (limits see them).
@dataclass(frozen=True, kw_only=True)
class Unwritten:
    """One decided batch, as later batches count it until it is written."""

    event_ids: frozenset[str]
    rate_events: tuple[RateEvent, ...]


def in_flight(ahead: Sequence[Unwritten]) -> set[str]:
    """Request ids decided by ``ahead``."""
    return {e for batch in ahead for e in batch.event_ids}


def unwritten_rate_events(ahead: Sequence[Unwritten],
                          written: Callable[[Collection[str]], set[str]]) -> list[RateEvent]:
    """Rate events of ``ahead`` that are not stored yet. ``written`` tells which request ids are
    stored; it is asked in the same transaction as the rate history is read, so a batch written
    meanwhile is counted once, from the table (one id per batch tells)."""
    live = {min(b.event_ids): b for b in ahead if b.rate_events and b.event_ids}
    stored = written(list(live)) if live else set()
    return [e for key, b in live.items() if key not in stored for e in b.rate_events]


@dataclass(frozen=True, kw_only=True)
class IssueConfig:
    policy: Policy
    code_ttl_s: float
    password_length: int
    support_phone: str


@dataclass(eq=False, kw_only=True)
class DecidedBatch:
    decisions: list[Decision]
    hashing: list[asyncio.Future[list[str]]]  # one per chunk, in the order of its issues
    rate_events: list[RateEvent]  # what the decisions added to the limits
    now: float
    requests: int  # commands in the batch, duplicates included
    started: float  # performance-counter times, for the log
    decided: float
    _hashes: list[str] | None = dataclasses.field(default=None, init=False)

    @property
    def issues(self) -> list[Issue]:
        return [d for d in self.decisions if isinstance(d, Issue)]

    @property
    def unwritten(self) -> Unwritten:
        """What later batches count until this one is written."""
        return Unwritten(event_ids=frozenset(d.command.request_event_id for d in self.decisions),
                         rate_events=tuple(self.rate_events))

    async def hashes(self) -> list[str]:
        """Awaited once: a write called again after a database error does not rehash."""
        if self._hashes is None:
            self._hashes = [h for group in await asyncio.gather(*self.hashing) for h in group]
        return self._hashes

    def abandon(self) -> None:
        """The batch is given up (its records will be redone one by one) or the worker stops:
        its hashes still waiting for the pool are not computed."""
        for future in self.hashing:
            future.cancel()


class IssueCodes:
    def __init__(self, *, uow: UnitOfWork, keyring: Keyring, hasher: PasswordHasher,
                 clock: Clock, config: IssueConfig, metrics: RecoveryMetrics,
                 delivery_keyring: Keyring | None = None) -> None:
        """``keyring``: the contact keys (opens AccountChanged contacts, keyed hashes);
        ``delivery_keyring``: seals CodeIssued (the same keyring when not given)."""
        self.uow = uow
        self.keyring = keyring
        self.delivery_keyring = delivery_keyring or keyring
        self.hasher = hasher
        self.clock = clock
        self.config = config
        self.metrics = metrics
        self._maintained_at = float("-inf")  # last pruning of rate events and expiry of codes
        self._logged: set[str] = set()  # logins with request_log rows since the last pruning

    async def __call__(self, commands: Sequence[IssueCode], ahead: Sequence[Unwritten]
                       ) -> DecidedBatch:
        """Decides the batch, counting what ``ahead`` (decided before, not written yet) carries;
        its hashes are started. ``write`` finishes it."""
        started, now = time.perf_counter(), self.clock.now()
        unique: dict[str, IssueCode] = {}
        for command in commands:
            unique.setdefault(command.request_event_id, command)
        book = LimitBook(policy=self.config.policy, loader=lambda *_: [])
        decisions, hashing = await self._decide(list(unique.values()), list(ahead), book, now)
        return DecidedBatch(decisions=decisions, hashing=hashing, rate_events=list(book.added),
                            now=now, requests=len(commands), started=started,
                            decided=time.perf_counter())

    async def _decide(self, commands: list[IssueCode], ahead: list[Unwritten],
                      book: LimitBook, now: float
                      ) -> tuple[list[Decision], list[asyncio.Future[list[str]]]]:
        def first_chunk(repos: Repositories) -> tuple[list[IssueCode], list[Decision]]:
            # the first chunk's transaction also drops what was processed or decided before
            skip = repos.processed.seen([c.request_event_id for c in commands]) | in_flight(ahead)
            fresh = [c for c in commands if c.request_event_id not in skip]
            return fresh, self._decide_chunk(repos, fresh[:CHUNK], book, now, ahead)

        decisions: list[Decision] = []
        hashing: list[asyncio.Future[list[str]]] = []

        def hash_issues(part: list[Decision]) -> None:
            decisions.extend(part)
            passwords = [d.password for d in part if isinstance(d, Issue)]
            if passwords:
                hashing.append(asyncio.ensure_future(self.hasher.hash_many(passwords)))

        try:
            fresh, part = await self.uow.run(first_chunk)
            hash_issues(part)
            for at in range(CHUNK, len(fresh), CHUNK):
                hash_issues(await self.uow.run(partial(
                    self._decide_chunk, commands=fresh[at:at + CHUNK], book=book, now=now,
                    ahead=ahead)))
        except BaseException:
            for future in hashing:
                future.cancel()
            raise
        return decisions, hashing

    def _decide_chunk(self, repos: Repositories, commands: list[IssueCode], book: LimitBook,
                      now: float, ahead: list[Unwritten]) -> list[Decision]:
        book.loader = _history(repos.rate_events,
                               unwritten_rate_events(ahead, repos.processed.seen))
        candidates = [candidate_keys(self.keyring, c.login) for c in commands]
        accounts = repos.accounts.by_keys(candidates)
        return [
            decide(command, candidates=keys, accounts=accounts, book=book, now=now,
                   subject_of=lambda v: self.keyring.keyed_hash("limit", v),
                   reveal=partial(reveal, self.keyring),
                   password_length=self.config.password_length, peek=repos.windows.peek)
            for command, keys in zip(commands, candidates, strict=True)
        ]

    async def write(self, batch: DecidedBatch) -> None:
        """Waits for the batch's hashes and writes it. The consumer loop calls this once the
        batches decided before it are written, and again after a transient database error."""
        turn = time.perf_counter()
        hashes = await batch.hashes()
        hashed = time.perf_counter()
        decisions = await self.uow.run(lambda repos: self._write(repos, batch, hashes))
        log.info("code requests decided", extra={
            "requests": batch.requests, "issued": sum(isinstance(d, Issue) for d in decisions),
            "decide_s": round(batch.decided - batch.started, 3),
            "turn_s": round(turn - batch.decided, 3),  # earlier batches' writes (and hashes)
            "hash_s": round(hashed - turn, 3),
            "write_s": round(time.perf_counter() - hashed, 3)})
        report_decisions(self.metrics, decisions)

    def _write(self, repos: Repositories, batch: DecidedBatch, hashes: list[str]
               ) -> list[Decision]:
        """The batch's records, on the accounts as they stand now; returns the decisions
        written."""
        # processed ids fail this transaction if another worker wrote one of them meanwhile;
        # the runner then redoes the records one by one
        now = batch.now
        hash_of = dict(zip((i.code_id for i in batch.issues), hashes, strict=True))
        decisions, erased = self._current(repos, batch.decisions)
        decisions = self._counted(repos, decisions, now)
        repos.processed.mark([d.command.request_event_id for d in batch.decisions])
        repos.rate_events.add([e for e in batch.rate_events if e[1] not in erased.limits])
        entries = [logged(d, login_key=route_key(self.keyring, d.command.login), now=now)
                   for d in decisions if d.command.request_event_id not in erased.requests]
        repos.request_log.record(entries)
        self._logged |= {e.login_key for e in entries}
        if now - self._maintained_at >= MAINTENANCE_EVERY_S:  # bookkeeping, not every batch
            repos.request_log.prune(self._logged, now)
            self._logged = set()
            repos.rate_events.prune(now - self.config.policy.longest_s)
            repos.windows.prune(now)
            repos.codes.expire(now)  # logins check expires_at themselves
            self._maintained_at = now
        expires_at = now + self.config.code_ttl_s
        issues = [d for d in decisions if isinstance(d, Issue)]
        repos.codes.add(new_codes(issues, [hash_of[i.code_id] for i in issues],
                                  expires_at=expires_at, now=now))
        repos.outbox.stage(CODE_ISSUED, [
            issued(i, keyring=self.delivery_keyring, expires_at=expires_at)
            for i in issues])
        repos.outbox.stage(CODE_REJECTED, [
            rejected(d, support_phone=self.config.support_phone)
            for d in decisions if isinstance(d, Reject)])
        return decisions

    def _counted(self, repos: Repositories, decisions: list[Decision], now: float
                 ) -> list[Decision]:
        """Each issue's shared windows (``counted_windows``: its account's codes a day, the SMS
        budget) taken in the write's transaction, all or none, on the account that gets the
        code: a request decided again (a crash, the database away, a re-link meanwhile) counts
        once, and a refused one counts nowhere. An issue a full window refuses becomes that
        refusal (its cool-downs stay counted)."""
        issues = [d for d in decisions if isinstance(d, Issue)]
        if not issues:
            return decisions
        windows = [counted_windows(i.account.account_id, i.command.channel, self.config.policy,
                                   lambda v: self.keyring.keyed_hash("limit", v))
                   for i in issues]
        answers = repos.windows.take_together(
            [[(subject, window) for subject, window, _ in group] for group in windows], now)
        refused: dict[str, Decision] = {}
        for issue, group, answer in zip(issues, windows, answers, strict=True):
            if answer is not None:
                at, wait = answer
                refused[issue.code_id] = refused_by_window(issue, group[at][2], wait)
        return [refused.get(d.code_id, d) if isinstance(d, Issue) else d for d in decisions]

    def _current(self, repos: Repositories, decisions: list[Decision]
                 ) -> tuple[list[Decision], Erased]:
        """The decisions, each issue whose account changed since it was decided (a re-link, a
        termination or an erasure committed while the batch was hashed) decided again on the
        account as it stands (``redecide``). The accounts stay locked until the write commits,
        so a change after this waits for the code and then voids it as it voids every pending
        code. Also what must not be written of the requests whose account was erased meanwhile:
        their log entries and their account's rate events, which the erasure deleted. A refusal
        that names an account locks it too, so its log entry is either written before the
        erasure (which then deletes it) or not at all."""
        issues = [d for d in decisions if isinstance(d, Issue)]
        refusals = [d for d in decisions if isinstance(d, Reject) and d.account_id is not None]
        versions = repos.accounts.lock_versions(
            {i.account.account_id for i in issues} | {r.account_id for r in refusals
                                                      if r.account_id is not None})
        stale = [i for i in issues if versions.get(i.account.account_id) != i.account.version]
        erased = Erased(requests={r.command.request_event_id for r in refusals
                                  if r.account_id not in versions}, limits=set())
        if not stale:
            return decisions, erased
        candidates = [candidate_keys(self.keyring, i.command.login) for i in stale]
        accounts = _locked_accounts(repos, candidates, versions)
        redone: dict[str, Decision] = {}
        for issue, keys in zip(stale, candidates, strict=True):
            redone[issue.code_id] = redecide(
                issue, candidates=keys, accounts=accounts, reveal=partial(reveal, self.keyring),
                sms_allowed=self.config.policy.sms_allowed)
            aid = issue.account.account_id
            if aid not in versions and not isinstance(redone[issue.code_id], Issue):
                erased.requests.add(issue.command.request_event_id)
                erased.limits.update((
                    self.keyring.keyed_hash("limit", "account:" + aid),
                    self.keyring.keyed_hash("limit", f"destination:{issue.command.channel.value}:"
                                                     f"{issue.destination.lower()}")))
        log.info("code requests decided again on changed accounts", extra={
            "requests": len(stale),
            "issued": sum(isinstance(d, Issue) for d in redone.values())})
        return [redone.get(d.code_id, d) if isinstance(d, Issue) else d for d in decisions], erased


def _locked_accounts(repos: Repositories, candidates: Sequence[Mapping[LoginKind, str]],
                     versions: Mapping[str, int]) -> list[Account]:
    """The accounts of these logins as they stand, each locked before it is read (``versions``:
    those the write locked already): a code moved to one of them is written on an account that
    no erasure or change can take away before the write commits. An account linked meanwhile is
    locked in turn; one that cannot be held still is left out."""
    held = dict(versions)
    found = repos.accounts.by_keys(candidates)
    for _ in range(3):
        new = {a.account_id for a in found} - held.keys()
        if not new:
            break
        locked = repos.accounts.lock_versions(new)
        held.update({aid: locked.get(aid, -1) for aid in new})  # -1: gone meanwhile
        found = repos.accounts.by_keys(candidates)
    return [a for a in found if held.get(a.account_id) == a.version]


@dataclass(frozen=True)
class Erased:
    """Of a batch being written, the requests whose account was erased since they were decided,
    and the rate-limit subjects of those accounts."""

    requests: set[str]
    limits: set[str]


def _history(stored: RateEvents, unwritten: list[RateEvent]) -> Loader:
    """The rate history as the database has it, plus the events of batches not written yet."""
    def load(kind: LimitKind, subject: str, since: float, newest: int) -> list[float]:
        waiting = [at for k, s, at in unwritten if k == kind and s == subject and at > since]
        both = sorted(stored.history(kind, subject, since, newest) + waiting)
        return both[-newest:] if newest > 0 else []
    return load


# --- Outcomes --------------------------------------------------------------------------------
# Decisions as records: the wire events CodeIssued (contacts and password encrypted) or
# CodeRejected, the PasswordChanged notice (every usable contact sealed for the notifier), the
# stored codes and support's request log; and what they count: metrics of the decided requests,
# with a warning to ops for each SMS-pumping guard that refused some.


def issued(issue: Issue, *, keyring: Keyring, expires_at: float) -> WireRecord:
    code_id = issue.code_id
    event = CodeIssued(
        code_id=uuid.UUID(code_id),
        request_event_id=uuid.UUID(issue.command.request_event_id),
        account_id=uuid.UUID(issue.account.account_id),
        channel=issue.command.channel,
        destination_masked=issue.account.masked(issue.command.channel),
        destination_enc=keyring.encrypt(issue.destination, aad=code_aad(code_id, "destination")),
        password_enc=keyring.encrypt(issue.password, aad=code_aad(code_id, "password")),
        expires_at=datetime.fromtimestamp(expires_at, UTC),
        locale=issue.command.locale,
    )
    return encode(event, key=issue.account.account_id, source=SOURCE)


def rejected(reject: Reject, *, support_phone: str) -> WireRecord:
    unavailable = reject.reason is CodeRejectReason.CHANNEL_UNAVAILABLE
    event = CodeRejected(
        request_event_id=uuid.UUID(reject.command.request_event_id),
        reason=reject.reason,
        channel=reject.command.channel,
        advice="contact_support" if unavailable else None,
        support_phone=support_phone if unavailable else None,
        retry_after_s=reject.retry_after_s,
    )
    return encode(event, key=reject.command.request_event_id, source=SOURCE)


def notice_aad(event_id: str, channel: Channel) -> str:
    """Associated data of a sealed contact in PasswordChanged (the notifier opens it so)."""
    return f"notice:{event_id}:{channel.value}"


def password_changed(account: Account, *, code_id: str, locale: str, contact_keyring: Keyring,
                     delivery_keyring: Keyring) -> WireRecord | None:
    """The notice for a newly activated password: each usable contact of the account, opened
    from the projection (contact keys) and sealed again for this event (delivery keys, which the
    notifier holds); ``None`` if no contact is usable."""
    event_id = uuid.uuid4()
    contacts = []
    for channel, field, token in ((Channel.SMS, "mobile", account.mobile_enc),
                                  (Channel.EMAIL, "email", account.email_enc)):
        if not account.channel_usable(channel) or not token:
            continue
        plain = contact_keyring.decrypt(token, aad=contact_aad(account.account_id, field))
        contacts.append(NoticeContact(
            channel=channel, destination_masked=account.masked(channel),
            destination_enc=delivery_keyring.encrypt(plain, aad=notice_aad(str(event_id), channel))))
    if not contacts:
        return None
    event = PasswordChanged(
        event_id=event_id, account_id=uuid.UUID(account.account_id), code_id=uuid.UUID(code_id),
        locale=Locale(locale) if locale in {x.value for x in Locale} else Locale.RU,
        contacts=tuple(contacts))
    return encode(event, key=account.account_id, source=SOURCE)


def reveal(keyring: Keyring, account: Account, channel: Channel) -> str:
    """The account's contact for ``channel``, opened from the projection (contact keys)."""
    field = "mobile" if channel is Channel.SMS else "email"
    token = account.mobile_enc if field == "mobile" else account.email_enc
    return keyring.decrypt(token or "", aad=contact_aad(account.account_id, field))


def new_codes(issues: list[Issue], hashes: list[str], *, expires_at: float,
              now: float) -> list[NewCode]:
    """The codes to store; of several issued to one account, only the newest stays pending."""
    newest = {i.account.account_id: i.code_id for i in issues}
    return [NewCode(
        code_id=i.code_id, account_id=i.account.account_id,
        request_event_id=i.command.request_event_id, hash=hash_,
        status=(CodeStatus.PENDING if newest[i.account.account_id] == i.code_id
                else CodeStatus.VOIDED),
        channel=i.command.channel, locale=i.command.locale.value, expires_at=expires_at,
        created_at=now,
    ) for i, hash_ in zip(issues, hashes, strict=True)]


def logged(decision: Decision, *, login_key: str, now: float) -> LoggedRequest:
    """Support's log entry of a decision; a refusal names the account once it was resolved (an
    erasure deletes the entries by account)."""
    command = decision.command
    if isinstance(decision, Issue):
        return LoggedRequest(
            login_key=login_key, request_event_id=command.request_event_id,
            account_id=decision.account.account_id, channel=command.channel.value,
            outcome="issued", reason=None, retry_after_s=None, code_id=decision.code_id,
            requested_at=command.requested_at, decided_at=now)
    return LoggedRequest(
        login_key=login_key, request_event_id=command.request_event_id,
        account_id=decision.account_id, channel=command.channel.value, outcome="rejected",
        reason=decision.reason.value, retry_after_s=decision.retry_after_s, code_id=None,
        requested_at=command.requested_at, decided_at=now)


def report_decisions(metrics: RecoveryMetrics, decisions: Sequence[Decision]) -> None:
    for decision in decisions:
        if isinstance(decision, Issue):
            metrics.codes_issued.labels(decision.command.channel.value).inc()
        else:
            metrics.codes_rejected.labels(decision.reason.value).inc()
    guarded = [d for d in decisions if isinstance(d, Reject) and d.guard]
    counted = {Guard.SMS_PREFIX: metrics.sms_prefix_refused,
               Guard.ACCOUNT_DAILY: metrics.account_daily_limit,
               Guard.SMS_BUDGET: metrics.sms_budget_exceeded}
    for guard in Guard:
        hits = [r for r in guarded if r.guard is guard]
        if hits:
            for hit in hits:
                counted[guard].labels(hit.command.channel.value).inc()
            log.warning("code requests refused against SMS pumping", extra={
                "guard": guard.value, "requests": len(hits)})
