"""Authenticated ops routes on a service's web port (``OPS_API_TOKEN``).

Every ops route is a ``POST`` with a JSON body (logins, passports and names never travel in a
URL, so no access log holds them) and requires ``Authorization: Bearer $OPS_API_TOKEN``,
compared in constant time (``hmac.compare_digest``): ``401 {"error": "unauthorized"}``
otherwise. A service without a token serves no ops route at all (404): outside local/demo mode
that is the default until an operator sets one; local/demo mode generates it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from services.common.codec import has_control_character
from services.common.http_edge import (
    ClientGone,
    HttpError,
    bearer_ok,
    closing,
    decode_object,
    read_body,
    require_token_under,
)

log = logging.getLogger(__name__)

OPS_PREFIX = "/ops/"

OpsHandler = Callable[[dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
MAX_BODY = 4096


class OpsError(Exception):
    """A request an ops handler refuses: answered ``status`` with ``error`` (no input echoed)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def register_ops_routes(app: faust.App, *, token: str, routes: dict[str, OpsHandler],
                        read_timeout_s: float) -> bool:
    """Registers each ``path → handler`` as an authenticated POST route; none without a token.
    A body is read as the API's are (``http_edge``): at most ``MAX_BODY`` bytes, within
    ``read_timeout_s`` (``HTTP_READ_TIMEOUT_S``), one JSON object without duplicate keys."""
    if not token:
        log.info("OPS_API_TOKEN unset: ops routes not served")
        return False
    require_token_under(app, OPS_PREFIX, token)
    for path, handler in routes.items():
        _register(app, path, handler, token, read_timeout_s)
    return True


def _register(app: faust.App, path: str, handler: OpsHandler, token: str,
              read_timeout_s: float) -> None:
    class OpsRoute(View):
        async def post(self, request: Request) -> Response:
            if not bearer_ok(request.headers.get("Authorization"), token):
                return self.json({"error": "unauthorized"}, status=401)
            try:
                body = await read_body(request, max_body=MAX_BODY, timeout_s=read_timeout_s)
                status, answer = await handler(decode_object(body))
            except (OpsError, HttpError) as exc:
                response = self.json({"error": exc.error, "message": exc.message}, status=exc.status)
                return closing(response) if exc.status in (408, 413) else response
            except ClientGone:
                return closing(self.json({"error": "incomplete_body", "message": "body incomplete"},
                                         status=400))
            except Exception as exc:  # its type only: a database error's text holds the values
                log.error("ops request failed (%s)", type(exc).__name__, extra={"route": path})
                return self.json({"error": "internal_error"}, status=500)
            return self.json(answer, status=status)

    OpsRoute.__name__ = "Ops" + "".join(p.title() for p in path.split("/") if p).replace("-", "")
    app.page(path)(OpsRoute)


def text_field(data: dict[str, Any], name: str, *, limit: int = 128, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise OpsError(400, "invalid_request", f"{name}: a string of 1 to {limit} characters")
    if has_control_character(value):
        raise OpsError(400, "invalid_request", f"{name}: no control characters")
    return value

