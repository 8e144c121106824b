"""The login page's backend: ``POST /api/v1/code-requests`` and ``POST /api/v1/login``.

Both calls need ``Authorization: Bearer $RECOVERY_API_TOKEN`` (401 otherwise). Bodies are JSON
objects of at most ``max_body`` bytes, received within the read time-out (413 above, 408 when
too slow, 415 for another content type, 400 for anything malformed, with a message naming the
field — never the input or a trace). ``schemas/openapi.yaml`` documents every answer. The client
address is the socket peer, or what trusted proxies forwarded (``services.common.http_edge``);
a ``client_ip`` in the body is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas.events import CodeRequested
from services.common.codec import describe
from services.common.http_edge import (
    ClientGone,
    HttpError,
    TrustedProxies,
    bearer_ok,
    client_address,
    closing,
    decode_object,
    read_body,
)
from services.recovery.domain.commands import LogIn
from services.recovery.service_layer.codes import RequestCode
from services.recovery.service_layer.log_in import LogInHandler

log = logging.getLogger(__name__)

ACCEPTED_MESSAGE = ("If the login exists, a password is on its way. "
                    "If nothing arrives, call the support phone.")
UNAUTHORIZED = {"error": "invalid_credentials", "message": "Login or password is incorrect."}
NO_TOKEN = {"error": "unauthorized", "message": "a valid bearer token is required"}
UNAVAILABLE = {"error": "unavailable", "message": "try again later"}


def accepted_body(support_phone: str) -> dict[str, str]:
    """The 202 body of "Get code": the same for every login."""
    return {"status": "accepted", "message": ACCEPTED_MESSAGE, "support_phone": support_phone}


@dataclass(frozen=True)
class HttpConfig:
    api_token: str
    max_body: int = 4096
    read_timeout_s: float = 10.0
    # how long "Get code" waits for the broker to take the request: past a broker's failover (on
    # the project's 2-core machine the three-broker test's took over 10 s), far below the
    # producer's own request time-out (20 min), which it would wait with the broker away
    publish_timeout_s: float = 60.0
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    support_phone: str = "8 800 250-08-90"


def forwarded_for(request: Any) -> list[str]:
    """Every ``X-Forwarded-For`` line of the request, in order."""
    return list(request.headers.getall("X-Forwarded-For", []))


def code_request(data: dict[str, Any], address: str | None) -> CodeRequested:
    """The event of a "Get code" body (a decoded JSON object), or HttpError 400.

    The body's values came from JSON (strings, numbers, booleans, null, lists, objects). The
    model's lax rules over such values are its strict JSON rules — a string for an enum, and
    nothing but a string for a string — so they are validated as they are, not encoded to JSON
    again (``tests/recovery/unit/test_code_request_fields.py`` holds the two equal)."""
    fields: dict[str, Any] = {k: data[k] for k in ("login", "channel", "locale") if k in data}
    fields["client_ip"] = address
    try:
        return CodeRequested.model_validate(fields, strict=False)
    except ValidationError as exc:
        raise HttpError(400, "invalid_request", describe(exc)[1]) from None


def register_http(app: faust.App, *, request_code: RequestCode, log_in: LogInHandler,
                  config: HttpConfig) -> None:
    accepted = accepted_body(config.support_phone)

    async def guarded(view: View, request: Request,
                      call: Callable[[dict[str, Any], str | None], Awaitable[Response]]) -> Response:
        if not bearer_ok(request.headers.get("Authorization"), config.api_token):
            return view.json(NO_TOKEN, status=401)
        try:
            body = await read_body(request, max_body=config.max_body,
                                   timeout_s=config.read_timeout_s)
            data = decode_object(body)
            address = client_address(getattr(request, "remote", None),
                                     forwarded_for(request),
                                     config.trusted_proxies)
            return await call(data, address)
        except HttpError as exc:
            response = view.json(exc.body(), status=exc.status)
            return closing(response) if exc.status in (408, 413) else response
        except ClientGone:
            return closing(view.json({"error": "incomplete_body", "message": "body incomplete"},
                                     status=400))
        except Exception:
            log.exception("request failed")
            return view.json({"error": "internal_error", "message": "try again later"},
                             status=500)

    @app.page("/api/v1/code-requests")
    class CodeRequests(View):
        async def post(self, request: Request) -> Response:
            async def call(data: dict[str, Any], address: str | None) -> Response:
                event = code_request(data, address)
                try:
                    async with asyncio.timeout(config.publish_timeout_s):
                        await request_code(event)
                except TimeoutError:  # not known to be on the broker: the page asks again later
                    log.warning("a code request was not published within %.0f s",
                                config.publish_timeout_s)
                    return self.json(UNAVAILABLE, status=503)
                return self.json(accepted, status=202)

            return await guarded(self, request, call)

    @app.page("/api/v1/login")
    class Login(View):
        async def post(self, request: Request) -> Response:
            async def call(data: dict[str, Any], address: str | None) -> Response:
                login, password = data.get("login"), data.get("password")
                for name, value, limit in (("login", login, 64), ("password", password, 128)):
                    if not isinstance(value, str) or not value or len(value) > limit:
                        raise HttpError(400, "invalid_request",
                                        f"{name}: a string of 1 to {limit} characters is required")
                account_id = await log_in(LogIn(login=str(login), password=str(password),
                                                client_ip=address))
                if account_id is None:
                    return self.json(UNAUTHORIZED, status=401)
                return self.json({"account_id": account_id}, status=200)

            return await guarded(self, request, call)
