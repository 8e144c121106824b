"""Handler of CodeRequested batches as they arrive (any key): re-key by the login.

The original bytes and headers go unchanged to the internal topic, keyed by a keyed hash of
the normalised login, so that every request for one login is decided on one partition.

Nothing is stored: the records are published directly and the batch is acked once the broker
has them. Forwarding is deterministic, so a batch redone after a crash publishes the same
records again, and the deciding stage drops the copies by ``event_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from schemas.events import CodeRequested
from schemas.topics import REQUESTS_BY_LOGIN
from services.common.codec import WireRecord
from services.common.consumer_loop import Inbound
from services.common.crypto import Keyring
from services.recovery.domain.resolve import route_key


class Sender(Protocol):
    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None: ...


def _text_headers(headers: object) -> list[tuple[str, bytes]]:
    """The original headers, as (name, bytes) pairs."""
    return [
        (name, value)
        for name, value in headers or ()  # type: ignore[attr-defined]
        if isinstance(name, str) and isinstance(value, bytes)
    ]


class RouteRequests:
    def __init__(self, *, publisher: Sender, keyring: Keyring) -> None:
        self.publisher = publisher
        self.keyring = keyring

    async def __call__(self, items: list[Inbound[CodeRequested]]) -> None:
        await self.publisher.send_all([
            (REQUESTS_BY_LOGIN, WireRecord(
                key=route_key(self.keyring, item.event.login).encode("ascii"),
                value=item.raw.value or b"",
                headers=_text_headers(item.raw.headers),
            ))
            for item in items
        ])
