"""A recovery worker on SQLite: an expired pending code is refused, and a wiped database is
rebuilt from the compacted account topic although the consumer group has committed offsets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from schemas.topics import CODE_ISSUED
from tests.recovery.conftest import account_changed, make_keyring, new_mobile
from tests.recovery.integration.support import (
    BOOTSTRAP,
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
from tests.support.kafka import read_all
from tests.support.workers import Worker

KEYRING = make_keyring()
# a lifetime long enough for the fresh code below to be found and used under load (finding one
# takes a read of the topic), short enough to wait out in the test
CODE_TTL_S = 6
# the shortest cool-down (0 is refused at start): the second request below comes after CODE_TTL_S
EXTRA = {"CODE_TTL_S": str(CODE_TTL_S), "LIMIT_LOGIN_COOLDOWN_S": "1"}


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recovery-sqlite")


@pytest.fixture(scope="module")
def worker(var_dir: Path) -> Iterator[Worker]:
    w = start_worker(var_dir, EXTRA)
    yield w
    w.stop()


def db_url(var_dir: Path) -> str:
    return f"sqlite:///{var_dir / 'recovery.db'}"


async def test_expired_pending_code_is_refused(worker: Worker, var_dir: Path) -> None:
    mobile = new_mobile()
    acc = account_changed(KEYRING, mobile=mobile)
    await feed_accounts(worker, [acc])
    await wait_projected(db_url(var_dir), [acc.account_id])
    (rid,) = await feed_requests(worker, [requested(mobile)])
    topic, issued = (await outcomes(worker, [rid]))[rid]
    assert topic == CODE_ISSUED
    expires_at = datetime.fromisoformat(issued["expires_at"]).timestamp()
    assert expires_at - time.time() <= CODE_TTL_S  # the lifetime configured above
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.5)  # past the code's own expiry
    assert (await log_in(worker, mobile, password_of(KEYRING, issued)))[0] == 401
    # a fresh code within its lifetime works (the refusal above was the expiry); it is read as
    # soon as it is on the topic, and used well within its lifetime
    (rid,) = await feed_requests(worker, [requested(mobile)])
    records = await read_all(BOOTSTRAP, prefix_of(worker) + CODE_ISSUED, timeout_s=40, until=lambda got: any(
        json.loads(r.value or b"{}").get("request_event_id") == rid for r in got))
    fresh = next(body for r in records if (body := json.loads(r.value or b"{}")).get("request_event_id") == rid)
    assert time.time() < datetime.fromisoformat(fresh["expires_at"]).timestamp()
    assert (await log_in(worker, mobile, password_of(KEYRING, fresh)))[0] == 200


async def test_wiped_database_is_rebuilt_from_the_account_topic(worker: Worker,
                                                                var_dir: Path) -> None:
    mobiles = [new_mobile() for _ in range(3)]
    accounts = [account_changed(KEYRING, mobile=m) for m in mobiles]
    await feed_accounts(worker, accounts)
    await wait_projected(db_url(var_dir), [a.account_id for a in accounts])
    await asyncio.sleep(1.5)  # let faust commit the offsets (every second)
    worker.stop()
    for suffix in ("", "-wal", "-shm"):
        (var_dir / f"recovery.db{suffix}").unlink(missing_ok=True)
    again = start_worker(var_dir, EXTRA, prefix=prefix_of(worker))
    worker.proc = again.proc  # the module fixture stops whichever process runs now
    await wait_projected(db_url(var_dir), [a.account_id for a in accounts])
    assert "account topic rewound" in again.log_text()
    ids = await feed_requests(again, [requested(m) for m in mobiles])
    got = await outcomes(again, ids)
    assert {topic for topic, _ in got.values()} == {CODE_ISSUED}
