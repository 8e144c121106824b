"""``HttpSmsGateway``: the SMS gateway's HTTP call of DESIGN.md (JSON, bearer token, client_ref)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import SendResult

log = logging.getLogger(__name__)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        return None


class HttpSmsGateway:
    def __init__(self, *, url: str, token: str, timeout_s: float = 5.0, max_connections: int = 200) -> None:
        self.url = url
        self._token = token
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                headers={"Authorization": f"Bearer {self._token}"},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: OutgoingMessage) -> SendResult:
        await self.start()
        assert self._session is not None
        body = {"to": message.to, "text": message.text, "client_ref": message.code_id}
        try:
            async with self._session.post(self.url, json=body) as response:
                status = response.status
                if 200 <= status < 300:
                    data = await response.json(content_type=None)
                    message_id = data.get("message_id") if isinstance(data, dict) else None
                    if not isinstance(message_id, str) or not message_id:
                        return SendResult.transient("no_message_id")
                    return SendResult.accepted(message_id[:64])
                if status == 429:
                    return SendResult.transient(
                        "http_429", retry_after_seconds(response.headers.get("Retry-After"))
                    )
                if status >= 500:
                    return SendResult.transient(f"http_{status}")
                return SendResult.permanent(f"http_{status}")
        except TimeoutError:
            return SendResult.transient("timeout")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return SendResult.transient(f"connection_{type(exc).__name__}"[:64])
        except asyncio.CancelledError:
            raise
