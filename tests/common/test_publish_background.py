"""``in_background``: a flush an answer must not wait for."""

from __future__ import annotations

import asyncio

import pytest

from services.common.publish import in_background


async def test_the_start_returns_at_once_and_a_failure_is_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    answered = asyncio.get_running_loop().create_future()

    async def broker_away() -> None:
        await answered  # the broker does not answer ...
        raise ConnectionError("broker away")  # ... and then fails

    start = in_background(broker_away, "a status")
    await asyncio.wait_for(start(), 1)  # not held by the flush
    assert "waits for the outbox sweep" not in caplog.text
    answered.set_result(None)
    for _ in range(3):
        await asyncio.sleep(0)
    assert caplog.text.count("a status waits for the outbox sweep (ConnectionError)") == 1


async def test_a_flush_that_works_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    flushed: list[int] = []

    async def flush() -> int:
        flushed.append(1)
        return 1

    await in_background(flush, "a status")()
    await asyncio.sleep(0)
    assert flushed == [1] and "outbox sweep" not in caplog.text
