"""``HttpSmsGateway``: the SMS gateway's HTTP call of DESIGN.md (JSON, bearer token, client_ref)."""

from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp

from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import SendResult, bounded_retry_after, message_id_usable

log = logging.getLogger(__name__)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form, at most a day; an HTTP date is
    ignored)."""
    if not value:
        return None
    try:
        return bounded_retry_after(float(value.strip()))
    except ValueError:
        return None


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """Server verification against ``ca_file`` (a PEM bundle); None: the system's trust store."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


class HttpSmsGateway:
    """One gateway. Every call carries ``Idempotency-Key: <client_ref>``.

    A failure is *definite* (the gateway did not take the message) for a refused connection, a
    5xx, a 429 or a redirect (never followed: the message and its password go to the configured
    URL only); a time-out, a connection lost after the request went out, or a 2xx without a
    usable message id (``message_id_usable``) are not: the gateway may have accepted.
    """

    def __init__(
        self, *, url: str, token: str, timeout_s: float = 5.0, max_connections: int = 200,
        ca_file: str | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.ca_file = ca_file or None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            context = tls_context(self.ca_file)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.max_connections,
                                               ssl=context if context is not None else True),
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
            headers = {"Idempotency-Key": message.code_id}
            async with self._session.post(self.url, json=body, headers=headers,
                                          allow_redirects=False) as response:
                status = response.status
                if 200 <= status < 300:
                    data = await response.json(content_type=None)
                    message_id = data.get("message_id") if isinstance(data, dict) else None
                    if message_id is None or message_id == "":
                        return SendResult.transient("no_message_id")
                    if not message_id_usable(message_id):
                        log.warning("the SMS gateway answered a message id that cannot be kept",
                                    extra={"code_id": message.code_id})
                        return SendResult.transient("bad_message_id")
                    return SendResult.accepted(message_id)
                if 300 <= status < 400:  # not followed: the body holds the password
                    return SendResult.transient(f"http_{status}", definite=True)
                if status == 429:
                    return SendResult.transient(
                        "http_429", retry_after_seconds(response.headers.get("Retry-After")),
                        definite=True,
                    )
                if status >= 500:
                    return SendResult.transient(f"http_{status}", definite=True)
                return SendResult.permanent(f"http_{status}")
        except TimeoutError:
            return SendResult.transient("timeout")
        except aiohttp.ClientSSLError as exc:  # no request went out
            return SendResult.transient(f"tls_{type(exc).__name__}"[:64], definite=True)
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable: nothing was sent
            return SendResult.transient(f"connection_{type(exc).__name__}"[:64], definite=True)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return SendResult.transient(f"connection_{type(exc).__name__}"[:64])
        except asyncio.CancelledError:
            raise
