"""The answers of ``POST /api/v1/sms-status`` that depend on recording the report: a report the
database cannot take now is a JSON 503 (the gateway sends it again), never a bare 500, and a
message id with a control character is a 400 that never reaches the database (PostgreSQL
refuses a NUL in text). The view runs on faust's web server; the handler is a stand-in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from sqlalchemy.exc import OperationalError

from services.notifier.domain.commands import ApplyDeliveryReport
from services.notifier.entrypoints.webhook import register_webhook
from services.notifier.service_layer.delivery_reports import ReportResult
from tests.support.web import serving

TOKEN = "status-token-0123456789"
Apply = Callable[[ApplyDeliveryReport], Awaitable[ReportResult]]


class Handler:
    def __init__(self) -> None:
        self.seen: list[ApplyDeliveryReport] = []
        self.fail: Exception | None = None
        self.result = ReportResult.RECORDED

    async def __call__(self, report: ApplyDeliveryReport) -> ReportResult:
        self.seen.append(report)
        if self.fail is not None:
            raise self.fail
        return self.result


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Handler]]:
    handler = Handler()
    async with serving("webhook-answers",
                       lambda app: register_webhook(app, apply_report=handler, token=TOKEN)) as url:
        yield url + "/api/v1/sms-status", handler


async def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=json.dumps(body), headers={"Authorization": f"Bearer {TOKEN}",
                                                 "Content-Type": "application/json"}) as r:
        return r.status, json.loads(await r.read())


async def test_a_report_that_cannot_be_recorded_is_a_json_503(
        served: tuple[str, Handler], caplog: pytest.LogCaptureFixture) -> None:
    url, handler = served
    handler.fail = OperationalError("SELECT", {}, ConnectionError("database away"))
    assert await post(url, {"message_id": "m-1", "status": "delivered"}) == (
        503, {"error": "unavailable"})
    assert "a delivery report was not recorded (OperationalError)" in caplog.text
    handler.fail = None
    assert await post(url, {"message_id": "m-1", "status": "delivered"}) == (
        200, {"result": "recorded"})


@pytest.mark.parametrize("message_id", ["m\u0000", "\u0007bell", "m-\u0085", "tab\there"])
async def test_a_message_id_with_a_control_character_is_a_400_and_goes_no_further(
        served: tuple[str, Handler], message_id: str) -> None:
    url, handler = served
    assert await post(url, {"message_id": message_id, "status": "delivered"}) == (
        400, {"error": "bad_request"})
    assert handler.seen == []


@pytest.mark.parametrize(("result", "answer"), [
    (ReportResult.RECORDED, (200, {"result": "recorded"})),
    (ReportResult.UNCHANGED, (200, {"result": "unchanged"})),
    (ReportResult.PARKED, (202, {"result": "parked"})),
    (ReportResult.UNKNOWN, (404, {"error": "unknown_message_id"})),
    (ReportResult.AMBIGUOUS, (409, {"error": "ambiguous_message_id"})),
    (ReportResult.NOT_PARKED, (503, {"error": "unavailable"})),
])
async def test_each_result_has_its_answer(served: tuple[str, Handler], result: ReportResult,
                                          answer: tuple[int, dict[str, object]]) -> None:
    url, handler = served
    handler.result = result
    assert await post(url, {"message_id": "m-1", "status": "delivered"}) == answer
