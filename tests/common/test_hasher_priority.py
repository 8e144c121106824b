"""The argon2 pool's threads run at a lower CPU priority (``RECOVERY_HASH_NICE``): only they do,
by as much as asked, never past 19; the hashes they make are unchanged."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from argon2 import PasswordHasher

from services.common.crypto import ThreadPoolHasher, lower_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="a nice value per thread is Linux's")
PARAMS = (2, 19456, 1)


def nice_of(thread: threading.Thread) -> int:
    assert thread.native_id is not None
    return os.getpriority(os.PRIO_PROCESS, thread.native_id)


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("argon2")]


@pytest.mark.parametrize("nice", [0, 3, 10])
async def test_only_the_hashing_threads_are_reniced_by_the_setting(nice: int) -> None:
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hasher = ThreadPoolHasher(params=PARAMS, workers=2, nice=nice)
    try:
        await hasher.warm_up()  # starts every thread of the pool
        (hash_,) = await hasher.hash_many(["correct horse"])
        threads = pool_threads()
        assert len(threads) == 2
        assert [nice_of(t) for t in threads] == [min(19, main + nice)] * 2
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main
        assert PasswordHasher().verify(hash_, "correct horse")
    finally:
        hasher.close()
        for thread in pool_threads():
            thread.join(timeout=10)


def test_the_nice_value_stops_at_19_and_a_thread_at_19_stays_there() -> None:
    seen: list[int] = []

    def lowered(times: int) -> None:
        for _ in range(times):
            lower_priority(15)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    for times in (1, 2):
        thread = threading.Thread(target=lowered, args=(times,))
        thread.start()
        thread.join()
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(19, main + 15), 19]


async def test_a_refused_priority_is_logged_once_and_the_pool_still_hashes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*args: object) -> None:
        raise PermissionError("setpriority")

    monkeypatch.setattr(os, "setpriority", refused)
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hasher = ThreadPoolHasher(params=PARAMS, workers=2, nice=10)
    try:
        with caplog.at_level("WARNING", logger="services.common.crypto"):
            await hasher.warm_up()  # starts every thread of the pool: each is refused
            hashes = await hasher.hash_many(["correct horse", "battery staple"])
        assert PasswordHasher().verify(hashes[0], "correct horse")
        assert PasswordHasher().verify(hashes[1], "battery staple")
        assert len(pool_threads()) == 2
        assert [nice_of(t) for t in pool_threads()] == [main] * 2
        assert [r.getMessage() for r in caplog.records if r.name == "services.common.crypto"] == [
            "the hashing threads keep their CPU priority: lowering it was refused "
            "(PermissionError)"]
    finally:
        hasher.close()
        for thread in pool_threads():
            thread.join(timeout=10)
