"""The lock-out over HTTP with real recovery workers: one worker on SQLite, one on PostgreSQL,
two sharing PostgreSQL. 50 wrong passwords sent at once, then the right one: refused, and still
refused afterwards (the lock lasts the default 15 min). The first login with the new password
published one PasswordChanged, with every contact sealed (read from the raw topic).

Argon2 runs with its production parameters, so the 50 attempts overlap for real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import Channel
from schemas.topics import PASSWORD_CHANGED
from services.recovery.service_layer.codes import notice_aad
from tests.recovery.conftest import account_changed, make_keyring, new_mobile
from tests.recovery.integration.support import (
    feed_accounts,
    feed_requests,
    log_in,
    outcomes,
    password_of,
    prefix_of,
    raw_topic,
    requested,
    start_worker,
    wait_projected,
)
from tests.support.workers import Worker

KEYRING = make_keyring()
EXTRA = {"LOGIN_IP_MAX": "1000", "LIMIT_IP_MAX": "1000"}


@pytest.fixture(scope="module", params=["sqlite-1", "postgresql-1", "postgresql-2"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[list[Worker], str]]:
    kind, count = request.param.split("-")
    tmp: Path = tmp_path_factory.mktemp(request.param)
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'recovery.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    extra = {**EXTRA, "RECOVERY_DATABASE_URL": url}
    workers: list[Worker] = []
    try:
        workers.append(start_worker(tmp / "w1", extra))
        if int(count) == 2:
            workers.append(start_worker(tmp / "w2", extra, prefix=prefix_of(workers[0])))
        yield workers, url
    finally:
        for w in reversed(workers):
            w.stop()


async def test_50_simultaneous_wrong_passwords_lock_the_login(
        setup: tuple[list[Worker], str]) -> None:
    workers, url = setup
    mobile = new_mobile()
    acc = account_changed(KEYRING, mobile=mobile, email="owner@example.org")
    await feed_accounts(workers[0], [acc])
    await wait_projected(url, [acc.account_id])
    (rid,) = await feed_requests(workers[0], [requested(mobile, locale="en")])
    password = password_of(KEYRING, (await outcomes(workers[0], [rid]))[rid][1])
    assert (await log_in(workers[-1], mobile, password))[0] == 200  # activates the code
    assert (await log_in(workers[0], mobile, password))[0] == 200  # unchanged: no notice

    answers = await asyncio.gather(*[
        log_in(workers[i % len(workers)], mobile, f"wrong-{i:02d}") for i in range(50)])
    assert {status for status, _ in answers} == {401}
    for w in workers:
        assert (await log_in(w, mobile, password))[0] == 401
    await asyncio.sleep(3)
    for w in workers:
        assert (await log_in(w, mobile, password))[0] == 401

    await asyncio.sleep(1)
    records = await raw_topic(workers[0], PASSWORD_CHANGED)
    mine = [r for r in records if r.key == str(acc.account_id).encode()]
    assert len(mine) == 1
    raw = mine[0].value or b""
    assert mobile.encode() not in raw and b"owner@example.org" not in raw
    body = json.loads(raw)
    assert body["locale"] == "en"
    opened = {c["channel"]: KEYRING.decrypt(c["destination_enc"], aad=notice_aad(
        body["event_id"], Channel(c["channel"]))) for c in body["contacts"]}
    assert opened == {"sms": mobile, "email": "owner@example.org"}
