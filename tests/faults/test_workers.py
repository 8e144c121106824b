"""Several workers of each service in one consumer group, on PostgreSQL, under load: a third
worker of each joins, then one is stopped (SIGTERM) and one killed (SIGKILL). Nothing is lost,
nothing sent twice, the per-login limit holds across workers, and so does the lock-out when the
attempts go to two recovery workers."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas.topics import SERVICES
from tests.support.faults import (
    API_TOKEN,
    PASSWORD,
    Request,
    Stack,
    check,
    code_requests,
    link_all,
    log_in_all,
    record,
    request_codes,
    settle,
    subscribers,
)

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(900)]
PAIRS = 20  # logins that ask twice within a second: one code, one rate_limited


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_two_workers_each_then_a_third_joins_one_stops_one_dies(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(replicas=dict.fromkeys(SERVICES, 2))
    n = max(subscribers(), 300)  # the churn takes a while: the load lasts through it
    await link_all(stack, n)
    first = code_requests(n)
    again = [Request(str(uuid.uuid4()), r.login) for r in first[:PAIRS]]
    # each second request right behind its first (same login, same partition, in order)
    order = [x for pair in zip(first[:PAIRS], again, strict=True) for x in pair] + first[PAIRS:]
    notes: dict[str, Any] = {}

    async def churn() -> None:
        await asyncio.sleep(2)
        t0 = time.monotonic()
        # with 4 partitions faust's assignor gives two workers 2 each and the third none (a
        # standby, not ready): it is alive and takes over when the others go
        await asyncio.gather(*(asyncio.to_thread(stack.add_worker, s, "/livez") for s in SERVICES))
        notes["third_alive_s"] = round(time.monotonic() - t0, 1)
        # a third worker may get no partition (a standby: /readyz 503) but serves HTTP at once
        thirds = [stack.workers[s][-1] for s in SERVICES]
        notes["third_readyz"] = [await asyncio.to_thread(status, w.base_url + "/readyz") for w in thirds]
        notes["third_readyz_http"] = [await asyncio.to_thread(status, w.base_url + "/readyz/http")
                                      for w in thirds]
        await asyncio.gather(*(asyncio.to_thread(stack.terminate, stack.worker(s, 0)) for s in SERVICES))
        for s in SERVICES:
            stack.kill(stack.worker(s, 1))
        notes["churn_done_at_s"] = round(time.monotonic() - t0 + 3, 1)

    producer = await request_codes(stack, order, during=churn)
    assert not producer.lost
    ledger, drain = await settle(stack, order, timeout_s=300)
    figures = ledger.figures(order) | {"subscribers": n, "drain_s": round(drain, 1), **notes}
    # outbox rows a killed worker committed and did not publish, published by a live one
    figures["outbox_swept"] = {s: stack.metric(s, f"{s}_outbox_swept_total") for s in SERVICES}

    # the per-login limit held across workers and rebalances
    pair_outcomes = []
    for a, b in zip(first[:PAIRS], again, strict=True):
        kinds = sorted(["issued" if ledger.issued.get(r.event_id) else
                        ledger.rejected[r.event_id][0]["reason"] for r in (a, b)])
        pair_outcomes.append(kinds)
    figures["pairs_one_issued_one_rate_limited"] = sum(k == ["issued", "rate_limited"] for k in pair_outcomes)

    # the lock-out, attempts alternating between two recovery workers: the killed one comes back
    killed = stack.worker("recovery", 1)
    await asyncio.to_thread(killed.start, 120, "/livez")
    stack.killed.remove(killed)
    live = [w for w in stack.workers["recovery"] if w not in stack.killed]
    sms = next(iter(ledger.book.sent.values()))
    password = PASSWORD.search(sms.text).group(1)  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        wrong = []
        for i in range(5):
            async with http.post(live[i % len(live)].base_url + "/api/v1/login", headers=headers,
                                 json={"login": sms.to, "password": "Wrong" + password[5:] + "x"}) as r:
                wrong.append(r.status)
        answers = []
        for w in live:
            async with http.post(w.base_url + "/api/v1/login", headers=headers,
                                 json={"login": sms.to, "password": password}) as r:
                answers.append(r.status)
    figures |= {"lockout_wrong": wrong, "lockout_right_password": answers,
                "recovery_workers_for_lockout": len(live)}

    logins = await log_in_all(stack, ledger, ports=len(live), skip=frozenset({sms.to}))
    figures["logins"] = logins
    record(tmp_path, "several-workers", figures)

    assert notes["third_readyz_http"] == [200, 200, 200], notes
    assert len(live) == 2
    assert wrong == [401] * 5 and answers == [401] * len(live), figures
    assert figures["pairs_one_issued_one_rate_limited"] == PAIRS, pair_outcomes
    assert figures["issued"] == n and figures["rejected"] == {"rate_limited": PAIRS}, figures
    # the locked-out login's password is the one that did not log in
    check(figures, stack, logins, not_logged_in=1)
    # a send repeated after the SIGKILL (the worker died between the gateway's answer and its
    # record) is a replay of the same client_ref: counted in the figures, never a second SMS
