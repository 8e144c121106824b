"""``POST /api/v1/sms-status``: the SMS gateway's delivery report (DESIGN.md)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from faust.web import Request, Response, View

from services.notifier.service_layer.delivery_reports import (
    CARRIER_STATUSES,
    ApplyDeliveryReport,
    ReportResult,
)

PATH = "/api/v1/sms-status"


def parse_report(raw: bytes) -> tuple[str, str] | None:
    """(message_id, status) of a well-formed report, else None."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    message_id, status = data.get("message_id"), data.get("status")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= 64:
        return None
    if status not in CARRIER_STATUSES:
        return None
    return message_id, status


def install_webhook(app: Any, *, apply_report: ApplyDeliveryReport, token: str) -> None:
    """Adds the route; when ``token`` is set the caller must present it as a bearer token."""

    @app.page(PATH)
    class SmsStatus(View):
        async def post(self, request: Request) -> Response:
            if token and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()
            ):
                return self.json({"error": "unauthorized"}, status=401)
            report = parse_report(await request.read())
            if report is None:
                return self.json({"error": "bad_request"}, status=400)
            result = await apply_report(message_id=report[0], status=report[1])
            if result == ReportResult.UNKNOWN:
                return self.json({"error": "unknown_message_id"}, status=404)
            return self.json({"result": result.value}, status=200)
