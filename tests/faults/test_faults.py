"""One fault at a time under load, with every service as its own process on PostgreSQL.

Each scenario links ``FAULT_SUBSCRIBERS`` subscribers (300), then each requests a code by SMS at
``FAULT_RATE`` (20/s) while the fault happens. Afterwards every request has exactly one outcome on
the topics, every issued code reached the gateway exactly once (replays of a ``client_ref`` are
counted apart), every delivered password logs in, and no process died unless the scenario killed
it. Each scenario prints one ``[fault] {...}`` line of figures (``-s``; ``FAULT_REPORT=path``
appends them as JSON lines).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.topics import ACCOUNT_CHANGED
from tests.support.faults import (
    Stack,
    check,
    code_requests,
    link_all,
    log_in_all,
    rate,
    record,
    request_codes,
    settle,
    subscribers,
)
from tests.support.kafka import read_all

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(900)]

Fault = Callable[[Stack], Awaitable[dict[str, Any]]]


def dead_lettered(stack: Stack) -> float:
    return sum(stack.metric(s, f"{s}_dlq_records_total") for s in ("registration", "recovery", "notifier"))


async def play(stack: Stack, tmp_path: Path, name: str, fault: Fault | None, *,
               drain_timeout_s: float = 180.0, at_s: float | None = None,
               linked: bool = False) -> dict[str, Any]:
    """Link everyone, request a code each while ``fault`` runs ``at_s`` into the load (a third of
    the way by default), settle, log in with every delivered password, record the figures and
    check the promises."""
    n = subscribers()
    at_s = n / rate() / 3 if at_s is None else at_s
    if not linked:
        await link_all(stack, n)
    requests = code_requests(n)
    notes: dict[str, Any] = {}

    async def fault_later() -> None:
        if fault is not None:
            await asyncio.sleep(at_s)
            notes.update(await fault(stack))

    producer = await request_codes(stack, requests, during=fault_later)
    assert not producer.lost, f"{len(producer.lost)} requests never accepted: {producer.errors}"
    ledger, drain = await settle(stack, requests, timeout_s=drain_timeout_s)
    logins = await log_in_all(stack, ledger)
    figures = ledger.figures(requests) | {
        "drain_s": round(drain, 1), "logins": logins, "dead_lettered": dead_lettered(stack),
        "producer_retries": producer.retried, "producer_errors": dict(producer.errors), **notes,
    }
    record(tmp_path, name, figures)
    check(figures, stack, logins)
    return figures


def kill_and_restart(service: str) -> Fault:
    async def fault(stack: Stack) -> dict[str, Any]:
        worker = stack.worker(service)
        stack.kill(worker)
        await asyncio.sleep(3)
        t0 = time.monotonic()
        await asyncio.to_thread(worker.start, 120)
        stack.killed.remove(worker)  # it runs again: from now on it must stay alive
        return {"killed": service, "ready_after_restart_s": round(time.monotonic() - t0, 1)}
    return fault


async def test_sigkill_recovery_mid_stream(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    await play(make_stack(), tmp_path, "sigkill-recovery", kill_and_restart("recovery"))


async def test_sigkill_notifier_mid_stream(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    figures = await play(make_stack(), tmp_path, "sigkill-notifier", kill_and_restart("notifier"))
    assert figures["drain_s"] <= 20, f"in-flight sends waited for the lease: {figures}"


async def test_sigkill_registration_during_a_burst_of_links(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack()
    n = subscribers()
    notes: dict[str, Any] = {}

    async def during() -> None:
        await asyncio.sleep(0.5)
        notes.update(await kill_and_restart("registration")(stack))

    # the burst over two seconds, with the kill half a second into it; link_all waits for
    # every account
    await link_all(stack, n, per_s=n / 2, during=during)
    changed = await read_all(stack.bootstrap, stack.prefix + ACCOUNT_CHANGED, idle_s=1.0)
    keys = {r.key for r in changed}
    assert len(keys) == n, f"{n - len(keys)} contracts without an account"
    notes |= {"account_changed_records": len(changed), "accounts": len(keys)}

    async def nothing(_: Stack) -> dict[str, Any]:
        return notes

    await play(stack, tmp_path, "sigkill-registration-links", nothing, at_s=0, linked=True)


async def test_broker_stopped_for_10_s(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    async def fault(stack: Stack) -> dict[str, Any]:
        await asyncio.to_thread(stack.broker.stop)
        down = time.monotonic()
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.to_thread(stack.broker.start)
        return {"broker_down_s": round(time.monotonic() - down, 1)}

    await play(make_stack(), tmp_path, "broker-down-10s", fault, drain_timeout_s=240)


async def test_postgres_stopped_for_10_s(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    async def fault(stack: Stack) -> dict[str, Any]:
        await asyncio.to_thread(stack.postgres.stop)
        down = time.monotonic()
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.to_thread(stack.postgres.start)
        return {"postgres_down_s": round(time.monotonic() - down, 1)}

    figures = await play(make_stack(), tmp_path, "postgres-down-10s", fault, drain_timeout_s=240)
    # no worker died: none of them is taken for dead, and nothing is sent again (at 300 requests
    # a worker once took its own unrecorded sends over after the outage: 1,057 replays)
    assert figures["gateway_replays"] == 0, figures


async def test_gateway_answers_500_to_every_other_call_for_20_s(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    async def fault(stack: Stack) -> dict[str, Any]:
        stack.gateway.mode = "flaky"
        await asyncio.sleep(20)
        stack.gateway.mode = "ok"
        return {"flaky_s": 20}

    figures = await play(make_stack(), tmp_path, "gateway-500-every-other-20s", fault, at_s=2)
    assert figures["gateway_500"] > 0


async def gateway_down(stack: Stack, seconds: float) -> dict[str, Any]:
    await asyncio.to_thread(stack.gateway.down)
    try:
        await asyncio.sleep(seconds)
    finally:
        await asyncio.to_thread(stack.gateway.up)
    return {"gateway_down_s": seconds}


async def test_gateway_down_for_90_s_then_every_code_delivered(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    figures = await play(make_stack(), tmp_path, "gateway-down-90s",
                         lambda s: gateway_down(s, 90), at_s=1, drain_timeout_s=300)
    assert figures["failed"] == 0


async def test_gateway_down_past_the_retry_budget_still_delivers_valid_codes(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    # retries 0.5-2 s apart make 15 and more attempts while the gateway is down for 30 s (the old
    # default gave up after 20); every code is valid for 120 s, so every one must still go out
    stack = make_stack(extra_env={"NOTIFIER_RETRY_INITIAL_S": "0.5",
                                  "NOTIFIER_RETRY_MAX_S": "2", "CODE_TTL_S": "120"})
    figures = await play(stack, tmp_path, "gateway-down-past-retry-budget",
                         lambda s: gateway_down(s, 30), at_s=0, drain_timeout_s=240)
    assert figures["failed"] == 0


async def test_gateway_down_until_codes_expire_ends_in_failed_expired(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """Retries go on until the code expires, whatever the attempt count; then ``failed``."""
    ttl = 20
    stack = make_stack(extra_env={"NOTIFIER_RETRY_INITIAL_S": "0.5",
                                  "NOTIFIER_RETRY_MAX_S": "2", "CODE_TTL_S": str(ttl)})
    n = min(subscribers(), 60)
    await link_all(stack, n)
    stack.gateway.down()
    requests = code_requests(n)
    producer = await request_codes(stack, requests)
    assert not producer.lost
    ledger, drain = await settle(stack, requests, timeout_s=ttl + 90)
    figures = ledger.figures(requests) | {"subscribers": n, "drain_s": round(drain, 1), "code_ttl_s": ttl}
    reasons: dict[str, int] = {}
    early = 0
    for code_id, code in ledger.codes().items():
        failed = [s for s in ledger.statuses.get(code_id, []) if s["status"] == "failed"]
        assert len(failed) == 1, (code_id, ledger.statuses.get(code_id))
        reasons[failed[0]["reason"]] = reasons.get(failed[0]["reason"], 0) + 1
        expires = datetime.fromisoformat(code["expires_at"].replace("Z", "+00:00"))
        failed_at = datetime.fromisoformat(failed[0]["occurred_at"].replace("Z", "+00:00"))
        # the last retry may be planned up to NOTIFIER_RETRY_MAX_S before the expiry
        early += (expires - failed_at).total_seconds() > 2 + 1
    figures |= {"failed_reasons": reasons, "failed_early": early}
    record(tmp_path, "gateway-down-until-expiry", figures)
    assert figures["lost"] == 0 and figures["double_outcome"] == 0
    assert figures["failed"] == figures["issued"] > 0
    assert ledger.book.sent == {}
    assert early == 0 and set(reasons) == {"expired"}, figures
    assert stack.dead() == []
