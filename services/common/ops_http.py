"""Authenticated ops routes on a service's web port (``OPS_API_TOKEN``).

Every ops route is a ``POST`` with a JSON body (logins, passports and names never travel in a
URL, so no access log holds them) and requires ``Authorization: Bearer $OPS_API_TOKEN``,
compared in constant time (``hmac.compare_digest``): ``401 {"error": "unauthorized"}``
otherwise. A service without a token serves no ops route at all (404): outside local/demo mode
that is the default until an operator sets one; local/demo mode generates it.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

log = logging.getLogger(__name__)

OpsHandler = Callable[[dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
MAX_BODY = 4096


class OpsError(Exception):
    """A request an ops handler refuses: answered ``status`` with ``error`` (no input echoed)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def authorised(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, in constant time (bytes: any text compares safely)."""
    scheme, _, given = (header or "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


async def _body(request: Any) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise OpsError(415, "unsupported_media_type", "Content-Type must be application/json")
    raw = b""
    while chunk := await request.content.read(MAX_BODY + 1 - len(raw)):
        raw += chunk
        if len(raw) > MAX_BODY:
            raise OpsError(413, "payload_too_large", f"body larger than {MAX_BODY} bytes")
    try:
        data = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise OpsError(400, "invalid_json", "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise OpsError(400, "invalid_json", "body must be a JSON object")
    return data


def register_ops_routes(app: faust.App, *, token: str, routes: dict[str, OpsHandler]) -> bool:
    """Registers each ``path → handler`` as an authenticated POST route; none without a token."""
    if not token:
        log.info("OPS_API_TOKEN unset: ops routes not served")
        return False
    for path, handler in routes.items():
        _register(app, path, handler, token)
    return True


def _register(app: faust.App, path: str, handler: OpsHandler, token: str) -> None:
    class OpsRoute(View):
        async def post(self, request: Request) -> Response:
            if not authorised(request.headers.get("Authorization"), token):
                return self.json({"error": "unauthorized"}, status=401)
            try:
                status, body = await handler(await _body(request))
            except OpsError as exc:
                return self.json({"error": exc.error, "message": exc.message}, status=exc.status)
            except Exception:
                log.exception("ops request failed", extra={"route": path})
                return self.json({"error": "internal_error"}, status=500)
            return self.json(body, status=status)

    OpsRoute.__name__ = "Ops" + "".join(p.title() for p in path.split("/") if p).replace("-", "")
    app.page(path)(OpsRoute)


def text_field(data: dict[str, Any], name: str, *, limit: int = 128, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise OpsError(400, "invalid_request", f"{name}: a string of 1 to {limit} characters")
    return value
