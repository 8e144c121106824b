"""While the broker is away, every service reconnects with a back-off and logs a few lines a
second at most (it used to log about 2,000 "Unable connect to node" lines a second)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.faults import Stack, record

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(600)]

OUTAGE_S = 30
MAX_LINES_PER_S = 5.0


async def test_broker_away_for_30_s_logs_a_few_lines_a_second(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack()
    workers = [w for ws in stack.workers.values() for w in ws]
    sizes = {w.log_path: w.log_path.stat().st_size for w in workers}
    await asyncio.to_thread(stack.broker.stop)
    t0 = time.monotonic()
    try:
        await asyncio.sleep(OUTAGE_S)
    finally:
        outage = time.monotonic() - t0
        lines = {p.name: p.read_bytes()[sizes[p]:].count(b"\n") for p in sizes}
        await asyncio.to_thread(stack.broker.start)
    per_s = {name: round(n / outage, 2) for name, n in lines.items()}
    record(tmp_path, "broker-away-30s-log-lines", {"outage_s": round(outage, 1), "lines": lines,
                                                    "lines_per_s": per_s})
    assert all(rate <= MAX_LINES_PER_S for rate in per_s.values()), per_s
    # and every service serves again once the broker is back
    for w in workers:
        await asyncio.to_thread(_ready_again, w.base_url)
    assert stack.dead() == []


def _ready_again(base_url: str, timeout_s: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=3) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base_url} not ready {timeout_s} s after the broker came back")
