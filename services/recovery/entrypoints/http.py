"""The login page's backend: ``POST /api/v1/code-requests`` and ``POST /api/v1/login``.

Bodies are JSON objects of at most ``max_body`` bytes (413 above, 415 for another content type,
400 for anything malformed, with a message naming the field — never the input or a trace).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas.events import CodeRequested
from services.common.codec import describe
from services.recovery.service_layer.log_in import LogIn, LogInCommand
from services.recovery.service_layer.request_code import RequestCode

log = logging.getLogger(__name__)

ACCEPTED = {"status": "accepted", "message": "If the login exists, a password is on its way."}
UNAUTHORIZED = {"error": "invalid_credentials", "message": "Login or password is incorrect."}


class BadRequest(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


async def read_json(request: Any, max_body: int) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest(415, "unsupported_media_type", "Content-Type must be application/json")
    if request.content_length is not None and request.content_length > max_body:
        raise BadRequest(413, "payload_too_large", f"body larger than {max_body} bytes")
    body = b""
    while chunk := await request.content.read(max_body + 1 - len(body)):
        body += chunk
        if len(body) > max_body:
            raise BadRequest(413, "payload_too_large", f"body larger than {max_body} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "invalid_json", "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "invalid_json", "body must be a JSON object")
    return data


def register_http(app: faust.App, *, request_code: RequestCode, log_in: LogIn,
                  max_body: int) -> None:
    async def guarded(view: View, call: Callable[[], Awaitable[Response]]) -> Response:
        try:
            return await call()
        except BadRequest as exc:
            return view.json({"error": exc.error, "message": exc.message}, status=exc.status)
        except Exception:
            log.exception("request failed")
            return view.json({"error": "internal_error", "message": "try again later"},
                             status=500)

    @app.page("/api/v1/code-requests")
    class CodeRequests(View):
        async def post(self, request: Request) -> Response:
            async def call() -> Response:
                data = await read_json(request, max_body)
                fields: dict[str, Any] = {k: data[k] for k in ("login", "channel", "locale") if k in data}
                fields["client_ip"] = getattr(request, "remote", None)
                try:
                    event = CodeRequested.model_validate_json(json.dumps(fields))
                except ValidationError as exc:
                    raise BadRequest(400, "invalid_request", describe(exc)[1]) from None
                await request_code(event)
                return self.json(ACCEPTED, status=202)

            return await guarded(self, call)

    @app.page("/api/v1/login")
    class Login(View):
        async def post(self, request: Request) -> Response:
            async def call() -> Response:
                data = await read_json(request, max_body)
                login, password = data.get("login"), data.get("password")
                for name, value, limit in (("login", login, 64), ("password", password, 128)):
                    if not isinstance(value, str) or not value or len(value) > limit:
                        raise BadRequest(400, "invalid_request",
                                         f"{name}: a string of 1 to {limit} characters is required")
                account_id = await log_in(LogInCommand(login=str(login), password=str(password),
                                                       client_ip=getattr(request, "remote", None)))
                if account_id is None:
                    return self.json(UNAUTHORIZED, status=401)
                return self.json({"account_id": account_id}, status=200)

            return await guarded(self, call)
