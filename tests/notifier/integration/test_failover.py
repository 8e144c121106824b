"""Failover with two real HTTP gateways on loopback and a real worker.

In every test the calls are counted per ``client_ref`` over both gateways: no code is accepted by
two gateways, and no gateway sends one twice (a replay of a ``client_ref`` is counted apart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notifier.integration.stack import Stack, start_stack, stop_stack
from tests.notifier.support import code_issued
from tests.support.workers import free_port

FAST = {"SMS_CIRCUIT_OPEN_S": "2", "NOTIFIER_RETRY_INITIAL_S": "0.2", "NOTIFIER_RETRY_MAX_S": "0.5"}


@pytest.fixture
def refused(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    dead_url = f"http://127.0.0.1:{free_port()}/sms"  # nothing listens there
    running = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path, fallback=True,
                          extra={**FAST, "SMS_GATEWAY_URL": dead_url})
    yield running
    stop_stack(running)


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path, fallback=True, extra=FAST)
    yield running
    stop_stack(running)


@pytest.fixture
def outage(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path, fallback=True,
                          extra={**FAST, "SMS_CIRCUIT_OPEN_S": "4"})
    yield running
    stop_stack(running)


def _no_code_twice(stack: Stack, refs: set[str]) -> None:
    by_ref = stack.accepted_by_ref()
    assert {r: by_ref.get(r, 0) for r in refs} == dict.fromkeys(refs, 1), "a code at two gateways"
    assert stack.gateway.call(lambda s: s.without_idempotency_key) == 0
    assert stack.fallback is not None
    assert stack.fallback.call(lambda s: s.without_idempotency_key) == 0


async def test_primary_refuses_connections_the_fallback_takes_the_codes(refused: Stack) -> None:
    stack = refused
    assert stack.fallback is not None
    events = [code_issued(to=f"+7916{4000 + i:07d}") for i in range(20)]
    await stack.send_codes(*events)
    found = await stack.statuses([e.code_id for e in events])
    refs = {str(e.code_id) for e in events}
    for event in events:
        [status] = found[str(event.code_id)]
        assert status["status"] == "sent" and status["gateway"] == "fallback"
    calls = stack.fallback.call(lambda s: dict(s.calls))
    assert {r: calls[r] for r in refs} == dict.fromkeys(refs, 1)
    assert stack.fallback.call(lambda s: s.duplicates) == 0
    _no_code_twice(stack, refs)


async def test_primary_answers_503_the_circuit_opens_and_the_primary_takes_over_after_its_probe(
        outage: Stack) -> None:
    stack = outage
    assert stack.fallback is not None
    stack.gateway.call(lambda s: setattr(s, "override", "503"))
    first = [code_issued(to=f"+7916{5000 + i:07d}") for i in range(30)]
    await stack.send_codes(*first)  # all in flight at once: each fails once at the primary
    found = await stack.statuses([e.code_id for e in first])
    assert {s["gateway"] for e in first for s in found[str(e.code_id)]} == {"fallback"}
    second = [code_issued(to=f"+7916{5050 + i:07d}") for i in range(10)]
    await stack.send_codes(*second)  # the circuit is open: straight to the fallback
    found = await stack.statuses([e.code_id for e in second])
    assert {s["gateway"] for e in second for s in found[str(e.code_id)]} == {"fallback"}
    calls = stack.gateway.call(lambda s: dict(s.calls))
    assert all(str(e.code_id) not in calls for e in second)
    await asyncio.sleep(4.5)  # still down after the open time: the probe fails, the circuit reopens
    probe = code_issued(to="+79165060000")
    await stack.send_codes(probe)
    [status] = (await stack.statuses([probe.code_id]))[str(probe.code_id)]
    assert status["gateway"] == "fallback"
    stack.gateway.call(lambda s: setattr(s, "override", None))  # the primary is back
    await asyncio.sleep(4.5)  # the open time passes: the next call is the probe
    second_probe = code_issued(to="+79165070000")
    await stack.send_codes(second_probe)
    [status] = (await stack.statuses([second_probe.code_id]))[str(second_probe.code_id)]
    assert status["gateway"] == "primary"  # the probe succeeded: the circuit closes
    after = [code_issued(to=f"+7916{5100 + i:07d}") for i in range(10)]
    await stack.send_codes(*after)
    found_after = await stack.statuses([e.code_id for e in after])
    assert {s["gateway"] for e in after for s in found_after[str(e.code_id)]} == {"primary"}
    assert stack.gateway.call(lambda s: len(s.accepted)) == 11
    _no_code_twice(stack, {str(e.code_id) for e in [*first, *second, probe, second_probe, *after]})
    text = stack.worker.log_text()
    assert "SMS gateway circuit open" in text and "SMS gateway circuit closed" in text


async def test_a_time_out_keeps_the_code_on_the_primary(stack: Stack) -> None:
    assert stack.fallback is not None
    slow = code_issued(to="+79166000000")
    stack.gateway.script("+79166000000", ["hang:3", "hang:3", "ok"])  # accepted, answered too late
    others = [code_issued(to=f"+7916{6100 + i:07d}") for i in range(5)]
    started = time.monotonic()
    await stack.send_codes(slow, *others)
    found = await stack.statuses([e.code_id for e in [slow, *others]])
    [status] = found[str(slow.code_id)]
    assert status["status"] == "sent" and status["gateway"] == "primary" and status["attempts"] == 3
    ref = str(slow.code_id)
    assert stack.fallback.call(lambda s: s.calls.get(ref, 0)) == 0  # never at the fallback
    assert stack.gateway.call(lambda s: s.calls[ref]) == 3
    assert stack.gateway.call(lambda s: s.duplicates) == 2  # replays, answered with the first id
    assert status["message_id"] == stack.gateway.call(lambda s: s.accepted[ref].message_id)
    assert time.monotonic() - started < 30
    _no_code_twice(stack, {str(e.code_id) for e in [slow, *others]})


async def test_a_timed_out_code_stays_on_the_primary_while_its_circuit_is_open(outage: Stack) -> None:
    """The primary takes a code but answers too late, then fails everything (503): its circuit
    opens, the other codes go to the fallback, and the timed-out code's own next call (the
    probe) fails definitely. That code may already be out at the primary: it stays pinned there
    and is never sent to the fallback."""
    stack = outage
    assert stack.fallback is not None
    slow = code_issued(to="+79166200000")
    ref = str(slow.code_id)
    stack.gateway.script("+79166200000", ["hang:3", "ok"])  # accepted at once, answered past 2 s
    await stack.send_codes(slow)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # its first call is at the primary
        if stack.gateway.call(lambda s: s.calls.get(ref, 0)) >= 1:
            break
        await asyncio.sleep(0.05)
    assert stack.gateway.call(lambda s: s.calls.get(ref, 0)) >= 1, "no first call at the primary"
    stack.gateway.call(lambda s: setattr(s, "override", "503"))  # then the primary fails everything
    others = [code_issued(to=f"+7916{6300 + i:07d}") for i in range(10)]
    await stack.send_codes(*others)
    found = await stack.statuses([e.code_id for e in others])
    assert {s["gateway"] for e in others for s in found[str(e.code_id)]} == {"fallback"}
    assert "SMS gateway circuit open" in stack.worker.log_text()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the code's next call at the primary (its circuit's probe) fails too
        if stack.gateway.call(lambda s: s.calls.get(ref, 0)) >= 2:
            break
        await asyncio.sleep(0.05)
    assert stack.gateway.call(lambda s: s.calls.get(ref, 0)) >= 2
    await asyncio.sleep(1.5)  # retries while the circuit is open again: skipped, not re-routed
    assert stack.fallback.call(lambda s: s.calls.get(ref, 0)) == 0
    stack.gateway.call(lambda s: setattr(s, "override", None))  # the primary is back
    [status] = (await stack.statuses([slow.code_id]))[ref]
    assert status["status"] == "sent" and status["gateway"] == "primary"
    assert status["message_id"] == stack.gateway.call(lambda s: s.accepted[ref].message_id)
    assert stack.fallback.call(lambda s: s.calls.get(ref, 0)) == 0  # never at the fallback
    _no_code_twice(stack, {ref, *(str(e.code_id) for e in others)})
