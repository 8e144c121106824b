"""Handler of ``EraseDeliveries``: an account's tombstone on ``selfcare.account.changed.v1``
deletes its deliveries.

A delivery row holds the masked destination, and until it is final the sealed destination and
password: all of it goes. Idempotent (a second tombstone finds nothing)."""

from __future__ import annotations

from services.notifier.domain.commands import EraseDeliveries
from services.notifier.service_layer.ports import UnitOfWork


async def erase_deliveries(command: EraseDeliveries, *, uow: UnitOfWork) -> int:
    """Returns how many deliveries were deleted."""
    return (await uow.run(lambda tx: tx.deliveries.erase(command.account_ids))).result
