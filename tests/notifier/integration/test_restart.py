"""Never twice: a worker killed while sends are in flight, restarted, on PostgreSQL.

Codes already recorded as sent are not sent again (even when their CodeIssued is redelivered).
Codes whose gateway call was in flight at the kill are the one documented window: their lease
expires, they are sent again with the same ``client_ref``, and the gateway drops the duplicate —
every code reaches its destination exactly once and gets exactly one ``sent`` status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notifier.integration.stack import Stack, start_stack, stop_stack
from tests.notifier.support import code_issued


@pytest.fixture
def stack(kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path, database_url=postgres_url)
    yield running
    stop_stack(running)


async def test_no_duplicate_after_a_kill_mid_batch(stack: Stack) -> None:
    done = [code_issued(to=f"+7916{9000 + i:07d}") for i in range(30)]
    await stack.send_codes(*done)
    await stack.statuses([e.code_id for e in done])

    in_flight = [code_issued(to=f"+7916{9100 + i:07d}") for i in range(30)]
    for event in in_flight:
        stack.gateway.script(f"+7916{9100 + in_flight.index(event):07d}", ["hang:8"])  # accept, answer late
    await stack.send_codes(*in_flight)
    refs = {str(e.code_id) for e in in_flight}
    deadline = time.monotonic() + 30
    while not refs <= stack.gateway.call(lambda s: set(s.calls)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert refs <= stack.gateway.call(lambda s: set(s.calls)), "sends never reached the gateway"
    stack.worker.kill()  # SIGKILL while every one of them waits for the gateway's answer
    for i in range(30):
        stack.gateway.script(f"+7916{9100 + i:07d}", ["ok"])
    stack.worker.start()
    await stack.send_codes(*done)  # redelivered CodeIssued for codes already sent
    found = await stack.statuses([e.code_id for e in [*done, *in_flight]], timeout_s=60)
    await asyncio.sleep(2)  # room for any (wrong) extra call

    calls = stack.gateway.call(lambda s: dict(s.calls))
    accepted = stack.gateway.call(lambda s: dict(s.accepted))
    duplicates = stack.gateway.call(lambda s: s.duplicates)
    assert all(calls[str(e.code_id)] == 1 for e in done), "a sent code was sent again"
    assert all(1 <= calls[str(e.code_id)] <= 2 for e in in_flight)
    assert set(accepted) == {str(e.code_id) for e in [*done, *in_flight]}
    assert duplicates == sum(calls[r] - 1 for r in refs)
    assert duplicates > 0, "the kill was meant to hit sends in flight"
    for event in [*done, *in_flight]:
        assert [s["status"] for s in found[str(event.code_id)]] == ["sent"]
        assert found[str(event.code_id)][0]["message_id"] == accepted[str(event.code_id)].message_id
