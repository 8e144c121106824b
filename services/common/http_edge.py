"""The HTTP edge shared by recovery's API and the notifier's webhook.

* ``read_body``: at most ``max_body`` bytes (413 above), within ``timeout_s`` (408 for a body
  sent too slowly or never finished); a client that goes away mid-body is one INFO line.
* ``decode_object``: a JSON object or a 400 — never a 5xx. Everything the decoder can raise is
  caught (``RecursionError`` for deep nesting, invalid UTF-8, digits past the integer limit), and
  what it would let through is refused: ``NaN``/``Infinity``, numbers that overflow to infinity,
  duplicate keys, and text that does not encode as UTF-8 (an escaped lone surrogate such as
  ``"\\udfff"``), which would only fail later, deep inside hashing or encryption.
* ``bearer_ok``: ``Authorization: Bearer <token>`` compared in constant time;
  ``require_token_under``: every request under a path prefix (the ops routes') without the token
  is a 401, before routing.
* ``client_address``: which address a request comes from (DESIGN.md "Who may call what"). By
  default the socket peer. With ``TRUSTED_PROXIES`` (comma-separated addresses or CIDRs), a
  request whose peer is trusted is attributed to the right-most address of ``X-Forwarded-For``
  that is not itself trusted. Entries left of that one were written by the client and are never
  believed. A malformed entry met on the way ends the walk: the request is then attributed to the
  last trusted hop (the nearest address known for certain), never to anything further left.
* ``harden_web_server``: the faust web server closes a connection whose request headers have not
  arrived within the read time-out (aiohttp's keep-alive timer also runs before the first
  request of a connection).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import AppRunner
from aiohttp.web_protocol import RequestPayloadError

from services.common.faust_private import replace_web_runner

log = logging.getLogger(__name__)

JSON = "application/json"


class HttpError(Exception):
    """An answer to give instead of handling the request: status, error code, message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


class ClientGone(Exception):
    """The client closed the connection before its body was complete; nobody reads an answer."""


def bearer_ok(authorization: str | None, token: str) -> bool:
    """Whether the header is ``Bearer <token>``: the scheme in any case (RFC 9110), the token
    compared in constant time over its bytes; an empty ``token`` admits nobody."""
    scheme, _, given = (authorization or "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8"))


async def read_body(request: Any, *, max_body: int, timeout_s: float,
                    require_json: bool = True) -> bytes:
    """The whole body, or HttpError 415/413/408, or ClientGone."""
    if require_json and request.content_type != JSON:
        raise HttpError(415, "unsupported_media_type", "Content-Type must be application/json")
    if request.content_length is not None and request.content_length > max_body:
        raise HttpError(413, "payload_too_large", f"body larger than {max_body} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(max_body + 1 - len(body)):
                body += chunk
                if len(body) > max_body:
                    raise HttpError(413, "payload_too_large", f"body larger than {max_body} bytes")
    except TimeoutError:
        raise HttpError(408, "request_timeout",
                        f"body not received within {timeout_s:g} s") from None
    except (ConnectionError, RequestPayloadError, HttpProcessingError) as exc:
        transport = getattr(request, "transport", None)
        if isinstance(exc, ConnectionError) or transport is None or transport.is_closing():
            log.info("client went away before its request body was complete (%s)",
                     type(exc).__name__)
            raise ClientGone from None
        raise HttpError(400, "invalid_body",
                        "the body's transfer or content encoding is broken") from None
    return bytes(body)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("duplicate key")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _all_text_encodes(value: Any) -> bool:
    """Every key and string in ``value`` encodes as UTF-8 (iterative: depth is no concern)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``, or HttpError 400 ``invalid_json``."""
    try:
        data = json.loads(
            body.decode("utf-8"), object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant, parse_float=_finite_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers JSONDecodeError, the hooks above and integers past Python's digit limit
        raise HttpError(400, "invalid_json", "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, "invalid_json", "body must be a JSON object")
    if not _all_text_encodes(data):
        raise HttpError(400, "invalid_json", "body holds text that is not valid Unicode")
    return data


def closing(response: Any) -> Any:
    """``response`` with the connection closed after it (the rest of a body is not awaited)."""
    response.force_close()
    return response


def require_token_under(app: Any, prefix: str, token: str) -> None:
    """Any request whose path starts with ``prefix`` and that lacks ``Authorization: Bearer
    <token>`` is answered ``401 {"error": "unauthorized"}`` before routing decides anything,
    whatever its method or path: a caller without the token learns nothing from a 405 or a 404.
    With it, routing answers as usual. (An aiohttp middleware on the faust app's web server.)"""

    @web.middleware
    async def token_first(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(prefix) and not bearer_ok(
                request.headers.get("Authorization"), token):
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    app.web.web_app.middlewares.append(token_first)


def harden_web_server(app: Any, *, read_timeout_s: float) -> None:
    """Give the faust app's aiohttp server a header read time-out of ``read_timeout_s``.

    faust builds its ``AppRunner`` without server settings; it is replaced (before the server
    starts) by one whose keep-alive time-out is the read time-out: aiohttp arms that timer when
    a connection opens and after each answer, and closes the connection if no complete request
    head has arrived by then. Idle keep-alive connections are closed after the same time.
    """
    replace_web_runner(app, AppRunner(app.web.web_app, access_log=None, keepalive_timeout=read_timeout_s))


# Which address a request comes from.
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> IPAddress | None:
    """An address as found in a peer name or a forwarded-for entry, or None if it is not one.

    Accepts ``1.2.3.4``, ``::1``, ``[::1]``, ``1.2.3.4:5678`` and ``[::1]:5678``; an IPv4
    address mapped into IPv6 (``::ffff:1.2.3.4``) is taken as the IPv4 address, and a zone
    (``fe80::1%eth0``) is dropped.
    """
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not _is_port(text[end + 1:])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _is_port(":" + port):
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        # a link-local peer's zone (fe80::1%eth0) names this host's interface, not the client
        return ipaddress.IPv6Address(text.partition("%")[0])
    return address


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """From ``TRUSTED_PROXIES``; raises ValueError naming the entry that is not an address/CIDR."""
        networks: list[IPNetwork] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(_unmapped(ipaddress.ip_network(item, strict=False)))
            except ValueError as exc:
                raise ValueError(f"TRUSTED_PROXIES entry {item!r} is not an address or CIDR") from exc
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(network: IPNetwork) -> IPNetwork:
    """An IPv6 network of IPv4-mapped addresses (``::ffff:10.0.0.0/104``) as the IPv4 network it
    maps, since ``parse_address`` takes a mapped peer as its IPv4 address."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        first = network.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.IPv4Network((first, network.prefixlen - 96))
    return network


def forwarded_entries(header_values: Iterable[str]) -> list[str]:
    """Every entry of every ``X-Forwarded-For`` line, in order (several lines form one list)."""
    return [entry.strip() for value in header_values for entry in value.split(",")]


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   trusted: TrustedProxies) -> str | None:
    """The client's address: the peer, or, from a trusted peer, the rule of the module doc."""
    peer_address = parse_address(peer) if peer else None
    if peer_address is None:
        return None
    if not trusted or not trusted.trusts(peer_address):
        return str(peer_address)
    nearest = peer_address
    for entry in reversed(forwarded_entries(forwarded_for)):
        address = parse_address(entry)
        if address is None:
            break
        if not trusted.trusts(address):
            return str(address)
        nearest = address
    return str(nearest)
