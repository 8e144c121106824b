"""``SqlSupportRepository``: the reads and writes of support's operations (reseal chunks, identity
lookups, attempt counts) over SQLAlchemy Core, and its unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from schemas.events import AccountStatus
from services.common.codec import WireRecord
from services.common.db import Staged, StagingUnitOfWork, stage_outbox
from services.registration.adapters.repository import _to_account, _to_row
from services.registration.adapters.support_tables import identify_attempts
from services.registration.adapters.tables import accounts, now, outbox
from services.registration.domain.model import Account
from services.registration.service_layer.ports import SupportRepository

T = TypeVar("T")


class SqlSupportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.staged: list[Staged] = []  # outbox rows of this transaction, in order

    def accounts_after(self, after: uuid.UUID | None, limit: int) -> list[Account]:
        return accounts_after(self.session, after, limit)

    def save_sealed(self, items: Sequence[Account]) -> None:
        save_sealed(self.session, items)

    def active_by_contract(self, contract_number: str) -> list[Account]:
        return by_contract(self.session, contract_number)

    def active_by_mobile_key(self, mobile_key: str) -> list[Account]:
        return by_mobile_key(self.session, mobile_key)

    def count_attempt(self, subject: str, window_start: float, limit: int) -> int | None:
        return count_attempt(self.session, subject, window_start, limit)

    def prune_attempts(self, before: float) -> None:
        prune_attempts(self.session, before)

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.staged.extend(stage_outbox(self.session, outbox, topic, records))


class SqlSupportUnitOfWork(StagingUnitOfWork):
    """One ``run`` = one transaction; what it staged goes to the relay right after the commit."""

    async def run(self, work: Callable[[SupportRepository], T]) -> T:
        result, _ = await self._commit(partial(_in_transaction, work))
        return result


def _in_transaction(work: Callable[[SupportRepository], T],
                    session: Session) -> tuple[T, list[Staged]]:
    repo = SqlSupportRepository(session)
    return work(repo), repo.staged


def accounts_after(session: Session, after: uuid.UUID | None, limit: int) -> list[Account]:
    """The next ``limit`` accounts by id, locked for this transaction on PostgreSQL."""
    query = select(accounts).order_by(accounts.c.account_id).limit(limit)
    if after is not None:
        query = query.where(accounts.c.account_id > after)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return [_to_account(row) for row in session.execute(query)]


def save_sealed(session: Session, items: Sequence[Account]) -> None:
    """Writes the contacts and version of accounts whose contacts were sealed again."""
    stamp = now()
    for a in items:
        row = _to_row(a, stamp)
        session.execute(update(accounts).where(accounts.c.account_id == a.account_id).values(
            mobile_enc=row["mobile_enc"], email_enc=row["email_enc"],
            full_name_enc=row["full_name_enc"], personal_account_enc=row["personal_account_enc"],
            version=a.version, updated_at=stamp))


def by_contract(session: Session, contract_number: str) -> list[Account]:
    query = select(accounts).where(accounts.c.contract_number == contract_number,
                                   accounts.c.status == AccountStatus.ACTIVE.value)
    return [_to_account(row) for row in session.execute(query)]


def by_mobile_key(session: Session, mobile_key: str) -> list[Account]:
    query = select(accounts).where(accounts.c.mobile_key == mobile_key,
                                   accounts.c.status == AccountStatus.ACTIVE.value)
    return [_to_account(row) for row in session.execute(query.order_by(accounts.c.account_id))]


def count_attempt(session: Session, subject: str, window_start: float, limit: int) -> int | None:
    """Counts one attempt of ``subject`` in the window; None when ``limit`` is already reached.

    The row is created if missing, then raised by one only while below the limit, in a single
    statement: simultaneous attempts (on any number of workers) queue on the row lock and each
    sees the count the previous one left."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(identify_attempts).values(
        subject=subject, window_start=window_start, attempts=0).on_conflict_do_nothing())
    raised = session.execute(
        update(identify_attempts)
        .where(and_(identify_attempts.c.subject == subject,
                    identify_attempts.c.window_start == window_start,
                    identify_attempts.c.attempts < limit))
        .values(attempts=identify_attempts.c.attempts + 1)
        .returning(identify_attempts.c.attempts)
    ).scalar_one_or_none()
    return raised


def prune_attempts(session: Session, before: float) -> None:
    session.execute(identify_attempts.delete().where(identify_attempts.c.window_start < before))
