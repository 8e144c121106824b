"""Lease takeover: two real workers on PostgreSQL; one is killed (SIGKILL) while its sends wait for
the gateway's answer. The other resumes them within seconds — long before ``NOTIFIER_LEASE_S``
(60 s here) — with the same ``client_ref``; the idempotent gateway answers the replays with the
first message id, so every code is accepted exactly once (replays are counted apart)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notifier.integration.stack import Stack, start_stack, stop_stack
from tests.notifier.support import code_issued

LEASE_S = 60
TAKEOVER_S = 3
# the gateway accepts every call at once and answers HANG_S later: the killed worker's calls are
# still in flight at the kill unless its last one began HANG_S before the last call of the
# survivor (the kill waits for every code to reach the gateway). Below the gateway time-out.
HANG_S = 8
GATEWAY_TIMEOUT_S = 12
RESUMED_WITHIN_S = 15  # far below LEASE_S: the takeover did not wait for the lease


@pytest.fixture
def stack(kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path, database_url=postgres_url,
                          extra={"NOTIFIER_LEASE_S": str(LEASE_S), "NOTIFIER_TAKEOVER_S": str(TAKEOVER_S),
                                 "SMS_GATEWAY_TIMEOUT_S": str(GATEWAY_TIMEOUT_S)})
    try:
        running.add_worker()
        yield running
    finally:
        stop_stack(running)


async def test_a_killed_workers_sends_are_resumed_by_the_other_within_seconds(stack: Stack) -> None:
    survivor = stack.extra_workers[0]
    await asyncio.sleep(3)  # let the group settle so both workers own partitions
    stack.gateway.call(lambda s: setattr(s, "override", f"hang:{HANG_S}"))  # accept at once, answer late
    events = [code_issued(to=f"+7916{7000 + i:07d}") for i in range(200)]
    await stack.send_codes(*events)
    refs = {str(e.code_id) for e in events}
    deadline = time.monotonic() + 30
    while len(refs & stack.gateway.call(lambda s: set(s.calls))) < len(refs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert refs <= stack.gateway.call(lambda s: set(s.calls)), "sends never reached the gateway"
    stack.worker.kill()  # SIGKILL while its calls wait for their answers
    killed_at = time.monotonic()
    stack.gateway.call(lambda s: setattr(s, "override", None))
    found = await stack.statuses([e.code_id for e in events], timeout_s=LEASE_S)
    drained_s = time.monotonic() - killed_at
    await asyncio.sleep(1)  # room for any (wrong) extra call

    calls = stack.gateway.call(lambda s: dict(s.calls))
    accepted = stack.gateway.call(lambda s: dict(s.accepted))
    replays = stack.gateway.call(lambda s: s.duplicates)
    call_log = stack.gateway.call(lambda s: list(s.call_log))
    assert set(accepted) == refs  # every code went out, once
    assert replays == sum(calls[r] - 1 for r in refs) and all(calls[r] <= 2 for r in refs)
    assert replays > 0, "the kill was meant to hit sends in flight"
    for event in events:
        [status] = found[str(event.code_id)]
        assert status["status"] == "sent"
        assert status["message_id"] == accepted[str(event.code_id)].message_id
    # when the survivor re-sent the killed worker's codes: the gateway's own clock (this process's
    # monotonic one) at each replay's arrival, not when the statuses were seen
    replayed_at = [at for ref, _step, at in call_log if ref in refs and at > killed_at]
    assert len(replayed_at) == replays  # every call after the kill is a replay, and vice versa
    resumed_s = max(replayed_at) - killed_at
    print(f"takeover: {len(events)} codes, {replays} resumed after the kill within {resumed_s:.1f} s, "
          f"drained in {drained_s:.1f} s")
    assert resumed_s < RESUMED_WITHIN_S, f"resumed {resumed_s:.1f} s after the kill: the takeover waited for the lease"
    # every status, once the survivor's own calls of before the kill were answered (HANG_S)
    assert drained_s < HANG_S + RESUMED_WITHIN_S, f"took {drained_s:.1f} s"
    with urllib.request.urlopen(survivor.base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    resent = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith('notifier_resends_total{channel="sms"}'))
    assert resent == replays  # each re-send counted once
    assert survivor.log_text().count("re-sending a delivery taken over") == replays
