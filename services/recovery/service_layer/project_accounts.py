"""Handler of AccountChanged batches: keep the accounts projection up to date."""

from __future__ import annotations

from schemas.events import AccountChanged
from services.common.batch import Inbound
from services.common.db import Database
from services.recovery.adapters.projection import apply_changes
from services.recovery.service_layer.ports import Clock


class ProjectAccounts:
    def __init__(self, *, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def __call__(self, items: list[Inbound[AccountChanged]]) -> None:
        events = [item.event for item in items]
        now = self.clock.now()
        await self.db.run(lambda session: apply_changes(session, events, now))
