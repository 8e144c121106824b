"""Stand-ins for the consumer loop's publisher and relay, for tests that run a ``BatchRunner``
without a broker."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.codec import WireRecord


class Sent:
    """A publisher that keeps what it is given: (topic, record) in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, WireRecord]] = []

    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        self.records.extend(items)


class Relay:
    """A relay with nothing to publish; counts its flushes."""

    def __init__(self) -> None:
        self.flushes = 0

    async def flush(self) -> int:
        self.flushes += 1
        return 0
