"""Handler of CodeRequested batches as they arrive (any key): re-key by the login.

The original bytes and headers go unchanged to the internal topic, keyed by a keyed hash of
the normalised login, so that every request for one login is decided on one partition.
"""

from __future__ import annotations

from schemas.events import CodeRequested
from schemas.topics import REQUESTS_BY_LOGIN
from services.common import outbox
from services.common.batch import Inbound
from services.common.codec import WireRecord
from services.common.crypto import Keyring
from services.common.db import Database
from services.recovery.adapters.tables import outbox as outbox_table
from services.recovery.domain.resolve import route_key


def _text_headers(headers: object) -> list[tuple[str, bytes]]:
    """The original headers, as (name, bytes) pairs."""
    return [
        (name, value)
        for name, value in headers or ()  # type: ignore[attr-defined]
        if isinstance(name, str) and isinstance(value, bytes)
    ]


class RouteRequests:
    def __init__(self, *, db: Database, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring

    async def __call__(self, items: list[Inbound[CodeRequested]]) -> None:
        records = [
            WireRecord(
                key=route_key(self.keyring, item.event.login).encode("ascii"),
                value=item.raw.value or b"",
                headers=_text_headers(item.raw.headers),
            )
            for item in items
        ]
        await self.db.run(
            lambda session: outbox.stage(session, outbox_table, REQUESTS_BY_LOGIN, records)
        )
