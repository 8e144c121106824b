"""Erasure: an account's tombstone on ``selfcare.account.changed.v1`` deletes its deliveries.

A delivery row holds the masked destination, and until it is final the sealed destination and
password: all of it goes. Idempotent (a second tombstone finds nothing)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy.orm import Session

from services.common.db import Database
from services.notifier.adapters.tables import deliveries


def delete_deliveries(session: Session, account_ids: Sequence[str]) -> int:
    result = session.execute(delete(deliveries).where(deliveries.c.account_id.in_(list(account_ids))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class EraseDeliveries:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    async def __call__(self, account_ids: Sequence[str]) -> None:
        await self.db.run(lambda session: delete_deliveries(session, account_ids))
