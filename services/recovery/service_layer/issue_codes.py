"""Handler of re-keyed CodeRequested batches: decide, hash, then write — in three phases.

1. one read transaction: drop duplicates (within the batch and already processed), resolve
   logins against the projection, apply the limits, generate passwords;
2. argon2id of every password of the batch, concurrently in the process pool;
3. one write transaction: processed_events, codes (older pending ones voided), rate events,
   and CodeIssued / CodeRejected staged in the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from schemas.events import CodeRequested
from schemas.topics import CODE_ISSUED, CODE_REJECTED
from services.common import outbox
from services.common.batch import Inbound
from services.common.crypto import Keyring, contact_aad
from services.common.db import Database
from services.common.logins import candidate_keys
from services.recovery.adapters import repository
from services.recovery.adapters.metrics import RecoveryMetrics
from services.recovery.adapters.tables import outbox as outbox_table
from services.recovery.domain.decide import decide
from services.recovery.domain.limits import LimitBook, Policy
from services.recovery.domain.model import Account, Decision, Issue, IssueCode, Reject
from services.recovery.service_layer import outcomes
from services.recovery.service_layer.ports import Clock, PasswordHasher


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
    )


@dataclass
class _Plan:
    decisions: list[Decision]
    book: LimitBook


class IssueCodes:
    def __init__(self, *, db: Database, keyring: Keyring, hasher: PasswordHasher, clock: Clock,
                 config: IssueConfig, metrics: RecoveryMetrics) -> None:
        self.db = db
        self.keyring = keyring
        self.hasher = hasher
        self.clock = clock
        self.config = config
        self.metrics = metrics

    async def __call__(self, items: list[Inbound[CodeRequested]]) -> None:
        now = self.clock.now()
        unique: dict[str, IssueCode] = {}
        for item in items:
            unique.setdefault(str(item.event.event_id), command_of(item.event))
        plan = await self.db.run(lambda s: self._decide(s, list(unique.values()), now))
        issues = [d for d in plan.decisions if isinstance(d, Issue)]
        hashes = await self.hasher.hash_many([i.password for i in issues])
        await self.db.run(lambda s: self._write(s, plan, dict(zip(
            [i.code_id for i in issues], hashes, strict=True)), now))
        for decision in plan.decisions:
            if isinstance(decision, Issue):
                self.metrics.codes_issued.labels(decision.command.channel.value).inc()
            else:
                self.metrics.codes_rejected.labels(decision.reason.value).inc()

    def _reveal(self, account: Account, command: IssueCode) -> str:
        field = "mobile" if command.channel.value == "sms" else "email"
        token = account.mobile_enc if field == "mobile" else account.email_enc
        return self.keyring.decrypt(token or "", aad=contact_aad(account.account_id, field))

    def _decide(self, session: Session, commands: list[IssueCode], now: float) -> _Plan:
        done = repository.already_processed(session, [c.request_event_id for c in commands])
        book = LimitBook(policy=self.config.policy,
                         loader=lambda kind, subject, since: repository.rate_history(
                             session, kind, subject, since))
        decisions: list[Decision] = []
        for command in commands:
            if command.request_event_id in done:
                continue
            candidates = candidate_keys(self.keyring, command.login)
            decisions.append(decide(
                command, candidates=candidates,
                accounts=repository.accounts_by_keys(session, candidates),
                book=book, now=now, subject_of=lambda v: self.keyring.keyed_hash("limit", v),
                reveal=self._reveal, password_length=self.config.password_length,
            ))
        return _Plan(decisions=decisions, book=book)

    def _write(self, session: Session, plan: _Plan, hashes: dict[str, str], now: float) -> None:
        ids = [d.command.request_event_id for d in plan.decisions]
        if repository.already_processed(session, ids):  # another worker took over meanwhile
            raise RuntimeError("batch processed concurrently; retrying")
        repository.mark_processed(session, ids, now)
        repository.add_rate_events(session, plan.book.added)
        repository.prune_rate_events(session, now - self.config.policy.longest_s)
        issued, rejected = [], []
        expires_at = now + self.config.code_ttl_s
        for decision in plan.decisions:
            if isinstance(decision, Reject):
                rejected.append(outcomes.rejected(decision, support_phone=self.config.support_phone))
                continue
            repository.add_code(
                session, code_id=decision.code_id, account_id=decision.account.account_id,
                request_event_id=decision.command.request_event_id,
                hash_=hashes[decision.code_id], channel=decision.command.channel.value,
                now=now, expires_at=expires_at,
            )
            issued.append(outcomes.issued(decision, keyring=self.keyring, expires_at=expires_at))
        outbox.stage(session, outbox_table, CODE_ISSUED, issued)
        outbox.stage(session, outbox_table, CODE_REJECTED, rejected)
