"""A consumer of a compacted topic that acts on tombstones only.

Every non-null value is acked without being decoded (the consumer may not even hold the keys
that open it); the keys of null values go to the handler in batches, retried while the
database is away. Offsets advance only after the handler has returned (at-least-once; the
handler is idempotent: deleting what is already gone changes nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.common.consumer_loop import take_batches
from services.common.db import is_transient

log = logging.getLogger(__name__)

TombstoneKeys = Callable[[Sequence[str]], Awaitable[None]]


class TombstoneRunner:
    def __init__(self, *, topic: str, handler: TombstoneKeys, batch_size: int = 500,
                 within_s: float = 0.2, retry_initial_s: float = 0.5,
                 retry_max_s: float = 30.0) -> None:
        self.topic = topic
        self.handler = handler
        self.batch_size = batch_size
        self.within_s = within_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s

    async def run(self, stream: Any) -> None:
        """The agent body."""
        async for events in take_batches(stream, self.batch_size, self.within_s):
            await self.process([(e.message.key, e.message.value) for e in events])
            for event in events:
                await stream.ack(event)

    async def process(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> list[str]:
        """One batch of (key, value); returns the keys handed to the handler."""
        keys = list(dict.fromkeys(
            key.decode("utf-8", "replace") for key, value in records if value is None and key))
        if not keys:
            return keys
        delay = self.retry_initial_s
        while True:
            try:
                await self.handler(keys)
                return keys
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("database unavailable (%s); retrying tombstones in %.1fs",
                            type(exc).__name__, delay, extra={"topic": self.topic})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
