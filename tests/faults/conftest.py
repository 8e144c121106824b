"""The fault suite's own broker and PostgreSQL: scenarios stop and start them, so they are not
the shared servers of the other tests. One of each per session, on free ports, under a tmp dir."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import PrivateBroker, PrivatePostgres, Stack


def _free_pair() -> int:
    """A port P with P + 1 free too (the broker's client and controller ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture(scope="session")
def fault_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path_factory.mktemp("fault-broker"), _free_pair())
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def fault_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    pg = PrivatePostgres(tmp_path_factory.mktemp("fault-postgres"), port)
    try:
        pg.start()
        yield pg
    finally:
        pg._cli("reset")


@pytest.fixture
def make_stack(fault_broker: PrivateBroker, fault_postgres: PrivatePostgres,
               tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """``make_stack(extra_env=..., replicas=...)`` starts a fresh stack, stopped afterwards."""
    stacks: list[Stack] = []

    def make(extra_env: dict[str, str] | None = None, replicas: dict[str, int] | None = None) -> Stack:
        stack = Stack(broker=fault_broker, postgres=fault_postgres, var_dir=tmp_path,
                      extra_env=extra_env or {})
        stacks.append(stack)
        return stack.start(replicas)

    yield make
    for stack in stacks:
        stack.stop()
