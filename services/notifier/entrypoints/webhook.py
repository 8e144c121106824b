"""``POST /api/v1/sms-status``: the SMS gateway's delivery report (DESIGN.md).

The gateway must present ``Authorization: Bearer $SMS_STATUS_TOKEN`` — a token of its own, never
the one we send to it (``SMS_GATEWAY_TOKEN``). The body (at most ``max_body`` bytes, received
within the read time-out) is decoded by ``services.common.http_edge``: anything malformed is a
400, never a 5xx; a report that could not be recorded (the database away) is a 503, which the
gateway retries. The answer does not wait for the status to be published. ``schemas/openapi.yaml``
documents every answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faust.web import Request, Response, View

from services.common.http_edge import (
    ClientGone,
    HttpError,
    bearer_ok,
    closing,
    decode_object,
    read_body,
)
from services.notifier.domain.commands import ApplyDeliveryReport
from services.notifier.domain.model import message_id_usable
from services.notifier.service_layer.delivery_reports import CARRIER_STATUSES, ReportResult

PATH = "/api/v1/sms-status"
MAX_BODY = 4096

log = logging.getLogger(__name__)


def parse_report(raw: bytes) -> ApplyDeliveryReport | None:
    """The command of a well-formed report, else None."""
    try:
        data = decode_object(raw)
    except HttpError:
        return None
    message_id, status = data.get("message_id"), data.get("status")
    if not message_id_usable(message_id):  # NUL among control characters: PostgreSQL refuses it
        return None
    if status not in CARRIER_STATUSES:
        return None
    return ApplyDeliveryReport(message_id=message_id, status=status)


def register_webhook(app: Any, *, apply_report: Callable[[ApplyDeliveryReport], Awaitable[ReportResult]],
                     token: str,
                     read_timeout_s: float = 10.0, max_body: int = MAX_BODY) -> None:
    """Adds the route; the caller must present ``token`` as a bearer token (every call is
    refused while it is empty)."""

    @app.page(PATH)
    class SmsStatus(View):
        async def post(self, request: Request) -> Response:
            if not bearer_ok(request.headers.get("Authorization"), token):
                return self.json({"error": "unauthorized"}, status=401)
            try:
                raw = await read_body(request, max_body=max_body, timeout_s=read_timeout_s,
                                      require_json=False)
            except HttpError as exc:
                return closing(self.json({"error": exc.error}, status=exc.status))
            except ClientGone:
                return closing(self.json({"error": "bad_request"}, status=400))
            report = parse_report(raw)
            if report is None:
                return self.json({"error": "bad_request"}, status=400)
            try:
                result = await apply_report(report)
            except Exception as exc:  # the database away, mostly: the gateway sends it again
                log.warning("a delivery report was not recorded (%s)", type(exc).__name__)
                return self.json({"error": "unavailable"}, status=503)
            if result == ReportResult.PARKED:  # applied once its delivery is recorded sent
                return self.json({"result": result.value}, status=202)
            if result == ReportResult.NOT_PARKED:  # too many kept already: sent again later
                return self.json({"error": "unavailable"}, status=503)
            if result == ReportResult.UNKNOWN:
                return self.json({"error": "unknown_message_id"}, status=404)
            if result == ReportResult.AMBIGUOUS:
                return self.json({"error": "ambiguous_message_id"}, status=409)
            return self.json({"result": result.value}, status=200)
