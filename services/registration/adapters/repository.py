"""``SqlAccountRepository``: the repository port over SQLAlchemy Core, set-based per batch."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, false, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from schemas.events import AccountStatus, TvProduct
from services.common.codec import WireRecord
from services.common.db import (
    RepositoryUnitOfWork,
    SqlOutbox,
    claim_events,
    forget_windows,
    insert_rows,
    is_postgres,
    one_of,
)
from services.registration.adapters.tables import (
    accounts,
    backfills,
    erasures,
    now,
    outbox,
    processed_events,
)
from services.registration.domain.model import Account, Erasure, SealedContacts


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._loaded: dict[uuid.UUID, tuple[str, str]] = {}  # account_id → (status, login_key) as read
        self.outbox = SqlOutbox(session, outbox)  # keeps the rows this transaction staged

    def claim(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        return {uuid.UUID(e) for e in claim_events(self.session, processed_events, event_ids)}

    def by_contracts(self, numbers: Collection[str]) -> dict[str, Account]:
        result: dict[str, Account] = {}
        for condition in one_of(self.session, accounts.c.contract_number, list(numbers)):
            for row in self.session.execute(select(accounts).where(condition)):
                account = _to_account(row)
                self._loaded[account.account_id] = (account.status.value, account.login_key)
                result[account.contract_number] = account
        return result

    def active_holders(self, login_keys: Collection[str]) -> dict[str, str]:
        result: dict[str, str] = {}
        for condition in one_of(self.session, accounts.c.login_key, list(login_keys)):
            query = select(accounts.c.login_key, accounts.c.contract_number).where(
                condition, accounts.c.status == AccountStatus.ACTIVE.value
            )
            result.update({row.login_key: row.contract_number for row in self.session.execute(query)})
        return result

    def hold(self, keys: Collection[str]) -> None:
        hold_keys(self.session, keys)

    def hold_contracts(self, numbers: Collection[str]) -> None:
        hold_keys(self.session, contract_keys(numbers))

    def alias_holders(self, login_keys: Collection[str]) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {}
        for condition in one_of(self.session, accounts.c.alias_key, list(login_keys)):
            query = select(accounts.c.alias_key, accounts.c.contract_number).where(
                condition, accounts.c.status == AccountStatus.ACTIVE.value
            )
            for row in self.session.execute(query):
                result.setdefault(row.alias_key, set()).add(row.contract_number)
        return result

    def save(self, items: Sequence[Account]) -> None:
        stamp = now()
        new = [_to_row(a, stamp) for a in items if a.account_id not in self._loaded]
        old = [a for a in items if a.account_id in self._loaded]
        # Accounts that gave up their active login first, so that the unique partial index never
        # sees two active holders mid-statement when logins move between accounts in one batch.
        movers = [
            a.account_id for a in old
            if self._loaded[a.account_id][0] == AccountStatus.ACTIVE.value
            and (not a.active or a.login_key != self._loaded[a.account_id][1])
        ]
        if movers:
            self.session.execute(
                update(accounts).where(accounts.c.account_id.in_(movers))
                .values(status=AccountStatus.CLOSED.value)
            )
        if old:
            rows = [{**_to_row(a, stamp), "b_id": a.account_id} for a in old]
            for row in rows:
                del row["account_id"]
            self.session.connection().execute(
                update(accounts).where(accounts.c.account_id == bindparam("b_id")), rows
            )
        insert_rows(self.session, accounts, new)
        for a in items:
            self._loaded[a.account_id] = (a.status.value, a.login_key)

    def erasures(self, numbers: Collection[str]) -> dict[str, Erasure]:
        result: dict[str, Erasure] = {}
        for condition in one_of(self.session, erasures.c.contract_number, list(numbers)):
            for row in self.session.execute(select(erasures).where(condition)):
                result[row.contract_number] = Erasure(
                    contract_number=row.contract_number, account_id=row.account_id,
                    erased_at=row.erased_at)
        return result

    def erase(self, erased: Sequence[Account], markers: Sequence[Erasure],
              counted: Collection[str] = ()) -> None:
        """Delete the accounts' rows and what is counted of them, and keep (or advance) the
        erasure markers."""
        ids = [a.account_id for a in erased]
        if ids:
            self.session.execute(delete(accounts).where(accounts.c.account_id.in_(ids)))
            # support's identity checks (``service_layer.identify``): per account, and per mobile
            # or contract number while no active account held it (a terminated contract)
            forget_windows(self.session, {*(str(i) for i in ids),
                                          *(a.mobile_key for a in erased), *counted})
        stamp = now()
        numbers = [m.contract_number for m in markers]
        if numbers:
            self.session.execute(delete(erasures).where(erasures.c.contract_number.in_(numbers)))
            self.session.execute(erasures.insert(), [
                {"contract_number": m.contract_number, "account_id": m.account_id,
                 "erased_at": m.erased_at, "recorded_at": stamp} for m in markers])

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.outbox.stage(topic, records)


class SqlUnitOfWork(RepositoryUnitOfWork[SqlAccountRepository]):
    """One batch = one ``Database.run`` = one transaction in the database thread."""

    repository = SqlAccountRepository


def hold_keys(session: Session, keys: Collection[str]) -> None:
    """PostgreSQL: a transaction-scoped advisory lock per key, taken in one statement, in the
    order of their hashes (two transactions never wait for each other in a cycle). SQLite: the
    one write lock, taken now by a write that changes nothing (the driver begins a transaction
    at its first write; a link batch, a termination and an erasure hold it already, from their
    first statement, ``claim``; a reseal takes it here, before its locked read, and the alias
    fill before its writes, which change only rows as it read them)."""
    if not keys:
        return
    if not is_postgres(session):
        session.execute(update(backfills).where(false()).values(name=backfills.c.name))
        return
    session.connection().exec_driver_sql(
        "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h "
        "FROM unnest(%(keys)s::text[]) AS k ORDER BY h) AS held", {"keys": sorted(keys)})


def contract_keys(numbers: Collection[str]) -> set[str]:
    """The advisory-lock keys of contracts, apart from the mobile login keys (hex) by a prefix."""
    return {"contract:" + n for n in numbers}


def _to_row(a: Account, stamp: Any) -> dict[str, Any]:
    c = a.contacts
    return {
        "account_id": a.account_id, "contract_number": a.contract_number, "status": a.status.value,
        "tv_product": a.tv_product.value, "login_key": a.login_key, "mobile_key": a.mobile_key,
        "personal_account_key": a.personal_account_key, "mobile_enc": c.mobile_enc,
        "mobile_masked": c.mobile_masked, "email_enc": c.email_enc, "email_masked": c.email_masked,
        "full_name_enc": c.full_name_enc, "personal_account_enc": c.personal_account_enc,
        "passport_hash": a.passport_hash,
        "fingerprint": a.fingerprint, "mobile_active": a.mobile_active, "linked_at": a.linked_at,
        "closed_at": a.closed_at, "last_event_at": a.last_event_at, "version": a.version,
        "updated_at": stamp, "holder_hash": a.holder_hash, "contacts_hash": a.contacts_hash,
        "holder_epoch": a.holder_epoch, "contacts_epoch": a.contacts_epoch,
        "alias_key": a.alias_key,
    }


def _to_account(row: Row[Any]) -> Account:
    return Account(
        account_id=row.account_id, contract_number=row.contract_number,
        status=AccountStatus(row.status), tv_product=TvProduct(row.tv_product),
        login_key=row.login_key, mobile_key=row.mobile_key,
        personal_account_key=row.personal_account_key,
        contacts=SealedContacts(
            mobile_enc=row.mobile_enc, mobile_masked=row.mobile_masked, email_enc=row.email_enc,
            email_masked=row.email_masked, full_name_enc=row.full_name_enc,
            personal_account_enc=row.personal_account_enc,
        ),
        passport_hash=row.passport_hash, fingerprint=row.fingerprint,
        mobile_active=row.mobile_active, linked_at=row.linked_at, closed_at=row.closed_at,
        last_event_at=row.last_event_at, version=row.version, holder_hash=row.holder_hash,
        contacts_hash=row.contacts_hash, holder_epoch=row.holder_epoch,
        contacts_epoch=row.contacts_epoch, alias_key=row.alias_key,
    )
