"""Handler of AccountChanged batches and tombstones: keep the accounts projection up to date."""

from __future__ import annotations

from schemas.events import AccountChanged
from services.common.consumer_loop import Inbound, RawRecord
from services.common.crypto import Keyring
from services.common.db import Database
from services.recovery.adapters.projection import apply_changes, erase_accounts
from services.recovery.service_layer.ports import Clock


class ProjectAccounts:
    def __init__(self, *, db: Database, clock: Clock, keyring: Keyring) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring

    async def __call__(self, items: list[Inbound[AccountChanged]]) -> None:
        events = [item.event for item in items]
        now = self.clock.now()
        await self.db.run(lambda session: apply_changes(session, events, now))

    async def tombstones(self, records: list[RawRecord]) -> None:
        """Erased accounts (null values on the compacted topic): delete what is kept of them."""
        ids = [r.key.decode("utf-8", "replace") for r in records if r.key]
        if ids:
            await self.db.run(lambda session: erase_accounts(session, ids, self.keyring))
