"""A tombstone on code.issued or password.changed erases the account's deliveries again: a code
recorded after the account topic's tombstone (the topics are read apart) goes too."""

from __future__ import annotations

from services.common.consumer_loop import RawRecord, TombstoneHandler, tombstones_as
from services.notifier.domain.commands import EraseDeliveries
from services.notifier.entrypoints.agents import erase_deliveries_of


def tombstone(key: bytes | None) -> RawRecord:
    return RawRecord(topic="selfcare.code.issued.v1", partition=0, offset=1, key=key, value=None,
                     headers=[])


def erased_upstream(handle: object) -> TombstoneHandler:
    """As the bootstrap builds the tombstone handler of code.issued and password.changed."""
    return tombstones_as(erase_deliveries_of, handle)  # type: ignore[arg-type]


async def test_the_keys_of_the_tombstones_are_the_accounts_erased() -> None:
    seen: list[EraseDeliveries] = []

    async def handle(command: EraseDeliveries) -> None:
        seen.append(command)

    await erased_upstream(handle)([tombstone(b"b-account"), tombstone(b"a-account"),
                                   tombstone(b"a-account"), tombstone(None)])
    assert seen == [EraseDeliveries(account_ids=("a-account", "b-account"))]


async def test_no_key_no_call() -> None:
    seen: list[EraseDeliveries] = []

    async def handle(command: EraseDeliveries) -> None:
        seen.append(command)

    await erased_upstream(handle)([tombstone(None)])
    assert seen == []
