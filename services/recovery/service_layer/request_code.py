"""Handler of "Get code" on the login page: publish CodeRequested; the answer never varies."""

from __future__ import annotations

from schemas.events import CodeRequested
from schemas.topics import CODE_REQUESTED
from services.common.codec import encode
from services.recovery.service_layer.outcomes import SOURCE
from services.recovery.service_layer.ports import Sender


class RequestCode:
    def __init__(self, *, publisher: Sender) -> None:
        self.publisher = publisher

    async def __call__(self, event: CodeRequested) -> None:
        record = encode(event, key=str(event.event_id), source=SOURCE)
        await self.publisher.send_all([(CODE_REQUESTED, record)])
