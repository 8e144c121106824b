"""Two recovery workers in one consumer group, sharing one PostgreSQL database: they split
the partitions, the per-IP window holds across them, and either one logs a subscriber in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from schemas.topics import CODE_ISSUED
from tests.recovery.conftest import account_changed, make_keyring, new_mobile
from tests.recovery.integration.support import (
    feed_accounts,
    feed_requests,
    log_in,
    outcomes,
    password_of,
    prefix_of,
    requested,
    start_worker,
    wait_projected,
)
from tests.support.workers import Worker

KEYRING = make_keyring()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[list[Worker]]:
    extra = {"RECOVERY_DATABASE_URL": pg_url, "LIMIT_IP_MAX": "5"}
    first = start_worker(tmp_path_factory.mktemp("w1"), extra)
    second = None
    try:
        # started one after the other: migrations are not guarded against a concurrent start
        second = start_worker(tmp_path_factory.mktemp("w2"), extra, prefix=prefix_of(first))
        yield [first, second]
    finally:
        for w in (second, first):
            if w is not None:
                w.stop()


def issued_by(worker: Worker) -> int:
    total = 0
    for line in worker.log_text().splitlines():
        if '"code requests decided"' in line:
            total += json.loads(line)["issued"]
    return total


async def test_partitions_split_limits_shared_login_anywhere(workers: list[Worker],
                                                             pg_url: str) -> None:
    first, second = workers
    mobiles = [new_mobile() for _ in range(16)]
    accounts = [account_changed(KEYRING, mobile=m) for m in mobiles]
    await feed_accounts(first, accounts)
    await wait_projected(pg_url, [a.account_id for a in accounts])
    ids = await feed_requests(first, [requested(m) for m in mobiles])
    got = await outcomes(first, ids)
    assert {topic for topic, _ in got.values()} == {CODE_ISSUED}
    assert issued_by(first) > 0 and issued_by(second) > 0
    assert issued_by(first) + issued_by(second) == 16
    # one client IP, requests spread over both workers' partitions, one after the other
    reasons = []
    for i in range(7):
        (rid,) = await feed_requests(first, [requested(f"+7 916 000 44 {i:02d}",
                                                       client_ip="192.0.2.44")])
        reasons.append((await outcomes(first, [rid]))[rid][1]["reason"])
    assert reasons == ["unknown_login"] * 5 + ["rate_limited"] * 2
    # a code decided by either worker logs in through either worker's HTTP API
    _, issued = got[ids[0]]
    password = password_of(KEYRING, issued)
    assert (await log_in(second, mobiles[0], password))[0] == 200
    assert (await log_in(first, mobiles[0], password))[0] == 200
