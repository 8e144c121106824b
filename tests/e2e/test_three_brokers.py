"""The workflow on a three-broker KRaft cluster (``deploy.broker start --nodes 3``): topics with
three replicas and ``min.insync.replicas=2``, producers with ``acks=all`` and idempotence.
One broker is killed with SIGKILL while 100 code requests arrive at about 20/s; every request
still gives exactly one SMS (counted at the gateway by ``client_ref``), and codes log in.

The cluster runs on its own ports (base 19192) under a temporary folder and is stopped at the
end, also when the test fails."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from deploy import broker
from deploy import topics as topic_admin
from deploy.local_stack import LocalStack
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_LINKED
from tests.e2e.test_workflow import PASSWORD, linked, wait_for_projection
from tests.support.kafka import new_prefix, produce, read_all
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS, free_port

pytestmark = pytest.mark.cluster
BASE_PORT = 19192
SUBSCRIBERS = 100
RATE_PER_S = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    var_dir = tmp_path_factory.mktemp("cluster")
    try:
        t0 = time.monotonic()
        bootstrap = broker.start(3, BASE_PORT, var_dir)
        print(f"three-broker cluster answered in {time.monotonic() - t0:.1f} s")
        yield var_dir, bootstrap
    finally:
        broker.stop(var_dir=var_dir)


def mobile(i: int) -> str:
    return f"+7916{3000000 + i:07d}"


async def test_a_broker_killed_under_load_loses_nothing_and_sends_nothing_twice(
    cluster: tuple[Path, str], tmp_path: Path
) -> None:
    var_dir, bootstrap = cluster
    prefix = new_prefix()
    await topic_admin.apply(bootstrap, prefix=prefix)  # replicas: as many brokers as there are (3)
    admin = topic_admin.admin_client(bootstrap)
    await admin.start()
    try:
        # every broker learns of the new topics, their partitions and configs within a moment
        # (a describe that comes first may see the configs but no partition yet)
        for _ in range(100):
            found = await topic_admin.describe(admin, [prefix + CONTRACT_LINKED])
            described = found.get(prefix + CONTRACT_LINKED)
            if described and described.partitions and "min.insync.replicas" in described.configs:
                break
            await asyncio.sleep(0.2)
        state = found[prefix + CONTRACT_LINKED]
    finally:
        await admin.close()
    assert state.replication_factor == 3 and state.configs["min.insync.replicas"] == "2"

    stack = LocalStack(
        bootstrap=bootstrap, var_dir=tmp_path / "stack", topic_prefix=prefix,
        ports={"registration": free_port(), "recovery": free_port(), "notifier": free_port()},
        extra_env={"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
                   "LIMIT_IP_MAX": "10000", "LIMIT_LOGIN_COOLDOWN_S": "1"},
    )
    await asyncio.to_thread(stack.start)
    try:
        await produce(bootstrap, prefix + CONTRACT_LINKED, [
            (f"CL-{i}".encode(), linked(f"CL-{i}", f"1{i:011d}", "interactive", mobile(i), None))
            for i in range(SUBSCRIBERS)
        ])
        await read_all(bootstrap, prefix + ACCOUNT_CHANGED, timeout_s=90,
                       until=lambda got: len(got) >= SUBSCRIBERS)
        # recovery's projection has every account (its own metric), or a request may find none
        await asyncio.to_thread(wait_for_projection, stack, SUBSCRIBERS, 90.0)

        running = broker.running_pids(var_dir)
        assert len(running) == 3, running
        pid = running[1]  # node 2
        statuses: list[int] = []
        killed_at = 0.0
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as http:
            async def ask(i: int) -> None:
                async with http.post(stack.url("recovery") + "/api/v1/code-requests",
                                     json={"login": mobile(i), "channel": "sms"},
                                     headers=stack.api_headers()) as r:
                    statuses.append(r.status)

            tasks = []
            for i in range(SUBSCRIBERS):
                if i == SUBSCRIBERS // 3:
                    os.kill(pid, signal.SIGKILL)
                    killed_at = time.monotonic() - t0
                tasks.append(asyncio.create_task(ask(i)))
                await asyncio.sleep(1 / RATE_PER_S)
            await asyncio.gather(*tasks)
        assert statuses == [202] * SUBSCRIBERS
        assert broker.running_pids(var_dir) == [running[0], running[2]], "node 2 still counted"

        gateway = stack.sms_gateway
        assert gateway is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if gateway.call(lambda s: len(s.accepted)) >= SUBSCRIBERS:
                break
            await asyncio.sleep(0.5)
        drained = time.monotonic() - t0
        await asyncio.sleep(3)  # anything sent twice would arrive now
        accepted, calls = gateway.call(lambda s: (dict(s.accepted), dict(s.calls)))
        print(f"killed broker 2 at {killed_at:.1f} s; {len(accepted)} SMS in {drained:.1f} s; "
              f"calls per client_ref: max {max(calls.values(), default=0)}")
        by_phone: dict[str, int] = {}
        for sms in accepted.values():
            by_phone[sms.to] = by_phone.get(sms.to, 0) + 1
        assert sorted(by_phone) == sorted(mobile(i) for i in range(SUBSCRIBERS)), "lost codes"
        assert set(by_phone.values()) == {1}, "a subscriber got two codes"
        assert set(calls.values()) == {1}, {k: v for k, v in calls.items() if v != 1}

        async with aiohttp.ClientSession() as http:
            for sms in list(accepted.values())[:5]:
                password = PASSWORD.search(sms.text).group(1)  # type: ignore[union-attr]
                async with http.post(stack.url("recovery") + "/api/v1/login",
                                     json={"login": sms.to, "password": password},
                                     headers=stack.api_headers()) as r:
                    assert r.status == 200, await r.text()
                    assert "account_id" in json.loads(await r.read())
    finally:
        await asyncio.to_thread(stack.stop)
