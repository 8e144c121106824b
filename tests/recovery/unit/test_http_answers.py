""""Get code" with the broker away: the answer is bounded (``publish_timeout_s``) and is a JSON
503, not a request held for the producer's time-out (minutes). The views run on faust's web
server; the handlers are stand-ins."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from schemas.events import CodeRequested
from services.recovery.entrypoints.http import HttpConfig, register_http
from tests.support.web import serving

TOKEN = "recovery-token-0123456789"


class Publishing:
    def __init__(self) -> None:
        self.answer: asyncio.Future[None] | None = None  # None: published at once
        self.sent: list[CodeRequested] = []

    async def __call__(self, event: CodeRequested) -> None:
        self.sent.append(event)
        if self.answer is not None:
            await self.answer  # the broker does not answer


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Publishing]]:
    publishing = Publishing()
    config = HttpConfig(api_token=TOKEN, publish_timeout_s=0.5)
    async with serving("http-answers", lambda app: register_http(
            app, request_code=publishing, log_in=None,  # type: ignore[arg-type]
            config=config)) as url:
        yield url + "/api/v1/code-requests", publishing


async def post(url: str) -> tuple[int, dict[str, object], float]:
    started = asyncio.get_running_loop().time()
    async with aiohttp.ClientSession() as session, session.post(
            url, json={"login": "+7 916 123-45-67", "channel": "sms"},
            headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        return r.status, json.loads(await r.read()), asyncio.get_running_loop().time() - started


async def test_a_request_the_broker_does_not_take_in_time_is_a_json_503(
        served: tuple[str, Publishing], caplog: pytest.LogCaptureFixture) -> None:
    url, publishing = served
    publishing.answer = asyncio.get_running_loop().create_future()
    status, body, took = await post(url)
    assert (status, body) == (503, {"error": "unavailable", "message": "try again later"})
    assert took < 5  # bounded by publish_timeout_s, not the producer's time-out
    assert "a code request was not published within" in caplog.text
    publishing.answer = None
    status, body, _ = await post(url)
    assert status == 202 and body["status"] == "accepted"
    assert len(publishing.sent) == 2
