"""``SqlSupportRepository``: the reads and writes of support's operations (reseal chunks, identity
lookups, attempts counted in sliding windows) over SQLAlchemy Core, and its unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from schemas.events import AccountStatus
from services.common.codec import WireRecord
from services.common.db import RepositoryUnitOfWork, SqlOutbox, is_postgres, prune_windows, take_windows
from services.registration.adapters.repository import _to_account, _to_row, contract_keys, hold_keys
from services.registration.adapters.tables import accounts, backfills, now, outbox
from services.registration.domain.model import Account


class SqlSupportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.outbox = SqlOutbox(session, outbox)

    def accounts_after(self, after: uuid.UUID | None, limit: int, *,
                       lock: bool = True) -> list[Account]:
        """The next ``limit`` accounts by id, locked for this transaction on PostgreSQL."""
        query = select(accounts).order_by(accounts.c.account_id).limit(limit)
        if after is not None:
            query = query.where(accounts.c.account_id > after)
        if lock and is_postgres(self.session):
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

    def save_aliases(self, aliases: Sequence[tuple[uuid.UUID, str, str]]) -> set[uuid.UUID]:
        saved: set[uuid.UUID] = set()
        for account_id, sealed, alias_key in aliases:  # a link since the read set its own
            saved.update(self.session.execute(update(accounts).where(
                accounts.c.account_id == account_id, accounts.c.alias_key.is_(None),
                accounts.c.personal_account_enc == sealed,
            ).values(alias_key=alias_key).returning(accounts.c.account_id)).scalars())
        return saved

    def hold(self, keys: Collection[str]) -> None:
        hold_keys(self.session, keys)

    def hold_contracts(self, numbers: Collection[str]) -> None:
        hold_keys(self.session, contract_keys(numbers))

    def backfill_done(self, name: str) -> bool:
        return self.session.execute(
            select(backfills.c.name).where(backfills.c.name == name)).first() is not None

    def mark_backfill_done(self, name: str) -> None:
        """One statement: two workers finishing the same fill at once both succeed."""
        insert = pg_insert if is_postgres(self.session) else sqlite_insert
        self.session.execute(insert(backfills).values(name=name, done_at=now())
                             .on_conflict_do_nothing(index_elements=["name"]))

    def take_attempts(self, subjects: Sequence[str], *, max_events: int, window_s: float,
                      now: float) -> int | None:
        [refused] = take_windows(self.session, [[(s, max_events, window_s) for s in subjects]], now)
        return None if refused is None else refused[1]

    def prune_attempts(self, before: float) -> None:
        prune_windows(self.session, before)

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.outbox.stage(topic, records)


class SqlSupportUnitOfWork(RepositoryUnitOfWork[SqlSupportRepository]):
    """One ``run`` = one transaction; what it staged goes to the relay right after the commit."""

    repository = SqlSupportRepository
