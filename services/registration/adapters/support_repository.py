"""``SqlSupportRepository``: the reads and writes of support's operations (reseal chunks, identity
lookups, attempts counted in sliding windows) over SQLAlchemy Core, and its unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from schemas.events import AccountStatus
from services.common.codec import WireRecord
from services.common.db import RepositoryUnitOfWork, SqlOutbox, is_postgres, prune_windows, take_window
from services.registration.adapters.repository import _to_account, _to_row
from services.registration.adapters.tables import accounts, now, outbox
from services.registration.domain.model import Account


class SqlSupportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.outbox = SqlOutbox(session, outbox)

    def accounts_after(self, after: uuid.UUID | None, limit: int) -> list[Account]:
        """The next ``limit`` accounts by id, locked for this transaction on PostgreSQL."""
        query = select(accounts).order_by(accounts.c.account_id).limit(limit)
        if after is not None:
            query = query.where(accounts.c.account_id > after)
        if is_postgres(self.session):
            query = query.with_for_update()
        return [_to_account(row) for row in self.session.execute(query)]

    def save_sealed(self, items: Sequence[Account]) -> None:
        stamp = now()
        for a in items:
            row = _to_row(a, stamp)
            self.session.execute(update(accounts).where(accounts.c.account_id == a.account_id).values(
                mobile_enc=row["mobile_enc"], email_enc=row["email_enc"],
                full_name_enc=row["full_name_enc"], personal_account_enc=row["personal_account_enc"],
                version=a.version, updated_at=stamp))

    def active_by_contract(self, contract_number: str) -> list[Account]:
        query = select(accounts).where(accounts.c.contract_number == contract_number,
                                       accounts.c.status == AccountStatus.ACTIVE.value)
        return [_to_account(row) for row in self.session.execute(query)]

    def active_by_mobile_key(self, mobile_key: str) -> list[Account]:
        query = select(accounts).where(accounts.c.mobile_key == mobile_key,
                                       accounts.c.status == AccountStatus.ACTIVE.value)
        return [_to_account(row)
                for row in self.session.execute(query.order_by(accounts.c.account_id))]

    def take_attempt(self, subject: str, *, max_events: int, window_s: float,
                     now: float) -> int | None:
        return take_window(self.session, subject, max_events=max_events, window_s=window_s,
                            now=now)

    def prune_attempts(self, before: float) -> None:
        prune_windows(self.session, before)

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.outbox.stage(topic, records)


class SqlSupportUnitOfWork(RepositoryUnitOfWork[SqlSupportRepository]):
    """One ``run`` = one transaction; what it staged goes to the relay right after the commit."""

    repository = SqlSupportRepository
