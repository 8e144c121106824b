"""Recovery's handlers over a real database (SQLite or PostgreSQL) with a fake clock and hasher."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from schemas.events import AccountChanged, CodeRequested
from services.common.consumer_loop import Inbound, InOrder, RawRecord, tombstones_as
from services.common.crypto import Keyring
from services.common.db import Database, Staged
from services.common.metrics import ServiceMetrics
from services.common.migrations import migrate
from services.recovery.adapters.repository import SqlUnitOfWork
from services.recovery.adapters.tables import MIGRATIONS, codes, outbox
from services.recovery.domain.commands import LogIn
from services.recovery.domain.model import Policy
from services.recovery.entrypoints.agents import erase_accounts, on_account_changes, on_code_requests
from services.recovery.service_layer.codes import IssueCodes, IssueConfig, Unwritten
from services.recovery.service_layer.log_in import LogInHandler
from services.recovery.service_layer.metrics import RecoveryMetrics
from services.recovery.service_layer.project_accounts import ProjectAccounts
from tests.recovery.builders import POLICY, inbound
from tests.recovery.conftest import FakeClock, FakeHasher


@dataclass
class Harness:
    db: Database
    keyring: Keyring
    clock: FakeClock
    hasher: FakeHasher
    uow: SqlUnitOfWork
    projection: ProjectAccounts
    issue_codes: IssueCodes
    in_order: InOrder[Inbound[CodeRequested], Unwritten]  # as the runner writes its batches
    log_in: LogInHandler
    metrics: RecoveryMetrics
    handed: list[Staged]  # the outbox rows of committed transactions, as a relay is handed them

    async def project(self, items: list[Inbound[AccountChanged]]) -> None:
        await on_account_changes(self.projection)(items)

    async def tombstones(self, records: list[RawRecord]) -> None:
        await tombstones_as(erase_accounts, self.projection.erase)(records)

    async def issue(self, items: list[Inbound[CodeRequested]]) -> Callable[[], Awaitable[None]]:
        """Decides the batch as the runner hands it over; returns its write, which waits for
        the batches decided before it."""
        return await self.in_order(items)

    async def accounts(self, *events: AccountChanged) -> None:
        await self.project([inbound(e) for e in events])

    async def requests(self, *events: CodeRequested) -> None:
        complete = await self.issue([inbound(e) for e in events])
        await complete()

    async def login(self, login: str, password: str, ip: str | None = None) -> str | None:
        return await self.log_in(LogIn(login=login, password=password, client_ip=ip))

    def staged(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self.db.run_sync(lambda s: s.execute(select(outbox).order_by(outbox.c.id)).all())
        return [(r.topic, json.loads(r.value)) for r in rows if r.value is not None]

    def tombstones_staged(self) -> list[tuple[str, bytes]]:
        """(topic, key) of the tombstones in the outbox."""
        rows = self.db.run_sync(lambda s: s.execute(select(outbox).order_by(outbox.c.id)).all())
        return [(r.topic, bytes(r.key)) for r in rows if r.value is None]

    def codes(self) -> list[Any]:
        return list(self.db.run_sync(
            lambda s: s.execute(select(codes).order_by(codes.c.created_at)).all()))


def harness(url: str, keyring: Keyring, policy: Policy = POLICY, ttl: float = 3600, *,
            hasher: FakeHasher | None = None, clock: FakeClock | None = None,
            delivery_keyring: Keyring | None = None) -> Harness:
    """Handlers over ``url``; a second harness on the same URL acts as a second worker.
    ``delivery_keyring`` seals CodeIssued (``keyring`` when not given)."""
    db = Database(url=url, name=f"test-{uuid.uuid4().hex[:6]}")
    migrate(db.engine, MIGRATIONS)
    clock, hasher = clock or FakeClock(), hasher or FakeHasher()
    metrics = RecoveryMetrics(ServiceMetrics("recovery"))
    config = IssueConfig(policy=policy, code_ttl_s=ttl, password_length=10,
                         support_phone="8 800 250-08-90")
    handed: list[Staged] = []
    uow = SqlUnitOfWork(db=db, hand_over=handed.extend)
    issue_codes = IssueCodes(uow=uow, keyring=keyring, hasher=hasher, clock=clock, config=config,
                             metrics=metrics, delivery_keyring=delivery_keyring)
    return Harness(
        db=db, keyring=keyring, clock=clock, hasher=hasher, metrics=metrics, uow=uow, handed=handed,
        projection=ProjectAccounts(uow=uow, clock=clock, keyring=keyring),
        issue_codes=issue_codes, in_order=on_code_requests(issue_codes),
        log_in=LogInHandler(uow=uow, keyring=keyring, hasher=hasher, clock=clock, policy=policy,
                            metrics=metrics),
    )
