"""Ports of the notifier: one gateway per channel, all answering with a classified ``SendResult``."""

from __future__ import annotations

from typing import Protocol

from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import SendResult


class NotificationGateway(Protocol):
    """Sends one message. Never raises for a gateway's answer or a network error: classifies it."""

    async def start(self) -> None: ...

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...
