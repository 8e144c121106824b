"""Handler of ``EraseDeliveries``: an account's tombstone on ``selfcare.account.changed.v1``
deletes its deliveries.

A delivery row holds the masked destination, and until it is final the sealed destination and
password: all of it goes. The statuses published for those deliveries carry the masked
destination too: in the same transaction a tombstone goes to ``selfcare.notification.status.v1``
for each code id they were keyed by (compacted as well as deleted), so compaction drops them
before their retention ends; the runner publishes them once the batch is done. Idempotent (a
second tombstone finds nothing, stages nothing)."""

from __future__ import annotations

from schemas.topics import NOTIFICATION_STATUS
from services.common.codec import tombstone
from services.notifier.domain.commands import EraseDeliveries
from services.notifier.service_layer.ports import Transaction, UnitOfWork


async def erase_deliveries(command: EraseDeliveries, *, uow: UnitOfWork) -> int:
    """Returns how many deliveries were deleted."""
    return await uow.run(lambda tx: _erase(tx, command))


def _erase(tx: Transaction, command: EraseDeliveries) -> int:
    keys = tx.deliveries.status_keys(command.account_ids)
    tx.outbox.stage(NOTIFICATION_STATUS, [tombstone(key) for key in sorted(keys)])
    return tx.deliveries.erase(command.account_ids)
