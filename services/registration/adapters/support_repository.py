"""``SqlSupportRepository``: the reads and writes of support's operations (reseal chunks, identity
lookups, attempt counts) over SQLAlchemy Core, and its unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from schemas.events import AccountStatus
from services.common.codec import WireRecord
from services.common.db import RepositoryUnitOfWork, SqlOutbox, is_postgres
from services.registration.adapters.repository import _to_account, _to_row
from services.registration.adapters.support_tables import identify_attempts
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

    def count_attempt(self, subject: str, window_start: float, limit: int) -> int | None:
        """The row is created if missing, then raised by one only while below the limit, in a
        single statement: simultaneous attempts (on any number of workers) queue on the row lock
        and each sees the count the previous one left."""
        insert = pg_insert if is_postgres(self.session) else sqlite_insert
        self.session.execute(insert(identify_attempts).values(
            subject=subject, window_start=window_start, attempts=0).on_conflict_do_nothing())
        raised: int | None = self.session.execute(
            update(identify_attempts)
            .where(and_(identify_attempts.c.subject == subject,
                        identify_attempts.c.window_start == window_start,
                        identify_attempts.c.attempts < limit))
            .values(attempts=identify_attempts.c.attempts + 1)
            .returning(identify_attempts.c.attempts)
        ).scalar_one_or_none()
        return raised

    def prune_attempts(self, before: float) -> None:
        self.session.execute(
            identify_attempts.delete().where(identify_attempts.c.window_start < before))

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.outbox.stage(topic, records)


class SqlSupportUnitOfWork(RepositoryUnitOfWork[SqlSupportRepository]):
    """One ``run`` = one transaction; what it staged goes to the relay right after the commit."""

    repository = SqlSupportRepository
