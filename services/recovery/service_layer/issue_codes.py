"""Handler of re-keyed CodeRequested batches: decide, then hash and write while the next batch
is decided.

1. decide, chunk by chunk (one read transaction each): duplicates (within the batch, already
   processed, or in an earlier batch not yet written) are dropped, logins resolved against the
   projection, limits applied — counting what earlier, unwritten batches decided —, passwords
   generated; each chunk's passwords go to the argon2 thread pool at once;
2. the handler returns, and the batch runner takes the next batch while the completion waits for
   every hash of this one;
3. the completion's write transaction, after the previous batch's (writes keep the order of the
   decisions): processed_events, codes (older pending ones voided), rate events, and
   CodeIssued / CodeRejected staged in the outbox.

Nothing is written before step 3, so a crash before it loses nothing: the batch was not acked and
is decided again. Decisions never wait for another batch's argon2 work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from schemas.events import Channel, CodeRequested
from schemas.topics import CODE_ISSUED, CODE_REJECTED
from services.common import outbox
from services.common.consumer_loop import Finish, Inbound
from services.common.crypto import Keyring, contact_aad
from services.common.db import Database, is_transient
from services.common.logins import candidate_keys
from services.recovery.adapters import counters, repository, request_log
from services.recovery.adapters.metrics import RecoveryMetrics
from services.recovery.adapters.tables import outbox as outbox_table
from services.recovery.domain.decide import decide
from services.recovery.domain.limits import LimitBook, LimitKind, Policy
from services.recovery.domain.model import (
    Account,
    CodeStatus,
    Decision,
    Guard,
    Issue,
    IssueCode,
    Reject,
)
from services.recovery.domain.resolve import route_key
from services.recovery.service_layer import outcomes
from services.recovery.service_layer.ports import Clock, PasswordHasher

log = logging.getLogger(__name__)
CHUNK = 50
MAINTENANCE_EVERY_S = 10.0


@dataclass(frozen=True, kw_only=True)
class IssueConfig:
    policy: Policy
    code_ttl_s: float
    password_length: int
    support_phone: str


def command_of(event: CodeRequested) -> IssueCode:
    return IssueCode(
        request_event_id=str(event.event_id), login=event.login, channel=event.channel,
        locale=event.locale, client_ip=None if event.client_ip is None else str(event.client_ip),
        requested_at=event.occurred_at.timestamp(),
    )


@dataclass(eq=False)
class _Unwritten:
    """What a decided batch will write; later batches count it until it is written."""

    event_ids: set[str]
    rate_events: list[tuple[LimitKind, str, float]] = field(default_factory=list)
    written: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


def _unwritten_events(session: Session, batches: list[_Unwritten]) -> list[tuple[LimitKind, str, float]]:
    """Rate events of earlier batches that are not in the database yet. Read in the same
    transaction as the rate history: a batch written meanwhile is counted once, from the table."""
    live = {min(b.event_ids): b for b in batches if b.rate_events and b.event_ids}
    stored = repository.already_processed(session, list(live)) if live else set()
    return [e for key, b in live.items() if key not in stored for e in b.rate_events]


class IssueCodes:
    def __init__(self, *, db: Database, keyring: Keyring, hasher: PasswordHasher, clock: Clock,
                 config: IssueConfig, metrics: RecoveryMetrics,
                 delivery_keyring: Keyring | None = None) -> None:
        """``keyring``: the contact keys (opens AccountChanged contacts, keyed hashes);
        ``delivery_keyring``: seals CodeIssued (the same keyring when not given)."""
        self.db = db
        self.keyring = keyring
        self.delivery_keyring = delivery_keyring or keyring
        self.hasher = hasher
        self.clock = clock
        self.config = config
        self.metrics = metrics
        self._unwritten: list[_Unwritten] = []  # decided batches, oldest first
        self._maintained_at = float("-inf")  # last pruning of rate events and expiry of codes
        self._logged: set[str] = set()  # logins with request_log rows since the last pruning

    async def __call__(self, items: list[Inbound[CodeRequested]]) -> Finish:
        """Decides the batch; returns the completion that hashes and writes it."""
        now = self.clock.now()
        started = time.perf_counter()
        unique: dict[str, IssueCode] = {}
        for item in items:
            unique.setdefault(str(item.event.event_id), command_of(item.event))
        earlier = list(self._unwritten)
        in_flight = {e for batch in earlier for e in batch.event_ids}
        book = LimitBook(policy=self.config.policy, loader=lambda *_: [])
        commands: list[IssueCode] = []

        def plan(session: Session, at: int) -> list[Decision]:
            if at == 0:  # the first chunk's transaction also drops what was processed before
                done = repository.already_processed(session, list(unique))
                commands.extend(c for key, c in unique.items()
                                if key not in done and key not in in_flight)
            return self._decide(session, commands[at:at + CHUNK], book, now,
                                _unwritten_events(session, earlier))

        decisions: list[Decision] = []
        pending: list[asyncio.Future[list[str]]] = []
        try:
            at = 0
            while at == 0 or at < len(commands):
                part = await self.db.run(partial(plan, at=at))
                at += CHUNK
                decisions += part
                passwords = [d.password for d in part if isinstance(d, Issue)]
                if passwords:
                    pending.append(asyncio.ensure_future(self.hasher.hash_many(passwords)))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        batch = _Unwritten(event_ids={d.command.request_event_id for d in decisions},
                           rate_events=list(book.added))
        previous = earlier[-1].written if earlier else None
        self._unwritten.append(batch)
        decided = time.perf_counter()
        hashes: list[str] | None = None

        async def complete() -> None:
            nonlocal hashes
            try:
                if hashes is None:
                    hashes = [h for group in await asyncio.gather(*pending) for h in group]
                hashed = time.perf_counter()
                if previous is not None:
                    await asyncio.wait([previous])  # written (or given up) first: keep the order
                issues = [d for d in decisions if isinstance(d, Issue)]
                by_code = dict(zip([i.code_id for i in issues], hashes, strict=True))
                await self.db.run(lambda s: self._write(s, decisions, batch.rate_events, by_code, now))
            except Exception as exc:
                # the database away: the runner calls this again, and the batch stays in line
                # (later batches still count it and write after it); otherwise it is given up
                if not is_transient(exc):
                    self._forget(batch, pending)
                raise
            except BaseException:  # cancelled: the worker is stopping
                self._forget(batch, pending)
                raise
            self._forget(batch, pending)
            log.info("code requests decided", extra={
                "requests": len(items), "issued": len(issues),
                "decide_s": round(decided - started, 3), "hash_s": round(hashed - decided, 3),
                "write_s": round(time.perf_counter() - hashed, 3)})
            for decision in decisions:
                if isinstance(decision, Issue):
                    self.metrics.codes_issued.labels(decision.command.channel.value).inc()
                else:
                    self.metrics.codes_rejected.labels(decision.reason.value).inc()
            self._tell_ops([d for d in decisions if isinstance(d, Reject) and d.guard])

        return complete

    def _tell_ops(self, guarded: list[Reject]) -> None:
        """A metric and a warning for each request an SMS-pumping guard refused."""
        counted = {Guard.SMS_PREFIX: self.metrics.sms_prefix_refused,
                   Guard.ACCOUNT_DAILY: self.metrics.account_daily_limit,
                   Guard.SMS_BUDGET: self.metrics.sms_budget_exceeded}
        for guard in Guard:
            hits = [r for r in guarded if r.guard is guard]
            if hits:
                for hit in hits:
                    counted[guard].labels(hit.command.channel.value).inc()
                log.warning("code requests refused against SMS pumping", extra={
                    "guard": guard.value, "requests": len(hits)})

    def _forget(self, batch: _Unwritten, pending: list[asyncio.Future[list[str]]]) -> None:
        """The batch is written or given up (its records will be redone one by one)."""
        for future in pending:
            future.cancel()
        if batch in self._unwritten:
            self._unwritten.remove(batch)
        if not batch.written.done():
            batch.written.set_result(None)

    def _reveal(self, account: Account, command: IssueCode) -> str:
        field = "mobile" if command.channel is Channel.SMS else "email"
        token = account.mobile_enc if field == "mobile" else account.email_enc
        return self.keyring.decrypt(token or "", aad=contact_aad(account.account_id, field))

    def _decide(self, session: Session, commands: list[IssueCode], book: LimitBook,
                now: float, unwritten: list[tuple[LimitKind, str, float]]) -> list[Decision]:
        def history(kind: LimitKind, subject: str, since: float, newest: int) -> list[float]:
            stored = repository.rate_history(session, kind, subject, since, newest)
            waiting = [at for k, s, at in unwritten if k == kind and s == subject and at > since]
            return sorted(stored + waiting)[-newest:] if newest > 0 else []

        book.loader = history
        candidates = [candidate_keys(self.keyring, c.login) for c in commands]
        accounts = repository.accounts_by_keys(session, candidates)
        return [
            decide(command, candidates=keys, accounts=accounts, book=book, now=now,
                   subject_of=lambda v: self.keyring.keyed_hash("limit", v),
                   reveal=self._reveal, password_length=self.config.password_length,
                   take=partial(counters.take, session))
            for command, keys in zip(commands, candidates, strict=True)
        ]

    def _write(self, session: Session, decisions: list[Decision],
               rate_events: list[tuple[LimitKind, str, float]], hashes: dict[str, str],
               now: float) -> None:
        # processed_events' primary key fails this transaction if another worker wrote one of
        # these ids meanwhile; the runner then redoes the records one by one
        repository.mark_processed(session, [d.command.request_event_id for d in decisions])
        repository.add_rate_events(session, rate_events)
        self._logged |= request_log.record(
            session, decisions, login_key=lambda typed: route_key(self.keyring, typed), now=now)
        if now - self._maintained_at >= MAINTENANCE_EVERY_S:  # bookkeeping, not every batch
            request_log.prune(session, self._logged, now)
            self._logged = set()
            repository.prune_rate_events(session, now - self.config.policy.longest_s)
            counters.prune(session, now)
            repository.expire_codes(session, now)  # logins check expires_at themselves
            self._maintained_at = now
        expires_at = now + self.config.code_ttl_s
        issues = [d for d in decisions if isinstance(d, Issue)]
        newest = {i.account.account_id: i.code_id for i in issues}  # a later issue voids earlier
        rows: list[dict[str, Any]] = [{
            "code_id": i.code_id, "account_id": i.account.account_id,
            "request_event_id": i.command.request_event_id, "hash": hashes[i.code_id],
            "status": (CodeStatus.PENDING if newest[i.account.account_id] == i.code_id
                       else CodeStatus.VOIDED).value,
            "channel": i.command.channel.value, "locale": i.command.locale.value,
            "expires_at": expires_at, "created_at": now,
        } for i in issues]
        repository.add_codes(session, rows)
        outbox.stage(session, outbox_table, CODE_ISSUED, [
            outcomes.issued(i, keyring=self.delivery_keyring, expires_at=expires_at) for i in issues])
        outbox.stage(session, outbox_table, CODE_REJECTED, [
            outcomes.rejected(d, support_phone=self.config.support_phone)
            for d in decisions if not isinstance(d, Issue)])
