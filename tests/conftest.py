"""Shared fixtures: the real Kafka broker and PostgreSQL server started by deploy/test.sh.

``KAFKA_BOOTSTRAP_SERVERS`` and ``TEST_POSTGRES_URL`` name them. Tests that need one and find
it unset fail with a message (run them through ``bash deploy/test.sh``), they are not skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from deploy.topics import remove as remove_topics
from tests.support.kafka import CREATED, create_topics, new_prefix


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    value = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not value:
        pytest.fail("KAFKA_BOOTSTRAP_SERVERS is unset: run the tests with `bash deploy/test.sh`")
    return value


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    value = os.environ.get("TEST_POSTGRES_URL")
    if not value:
        pytest.fail("TEST_POSTGRES_URL is unset: run the tests with `bash deploy/test.sh`")
    return value


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a storage test on SQLite and on PostgreSQL, changing only the URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def topic_prefix(kafka_bootstrap: str) -> str:
    """Every topic of DESIGN.md, created under a fresh prefix for this test only."""
    prefix = new_prefix()
    await create_topics(kafka_bootstrap, prefix)
    return prefix


@pytest.fixture(scope="module", autouse=True)
def _delete_the_module_topics() -> Iterator[None]:
    """After a test module (its stacks stopped first: this fixture is set up first, so it ends
    last), delete the topics it created on the shared broker."""
    start = len(CREATED)
    yield
    created, CREATED[start:] = CREATED[start:], []
    shared = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    for bootstrap, prefix in created:
        if bootstrap == shared:
            with contextlib.suppress(Exception):  # a broker a test stopped: nothing to keep clean
                asyncio.run(remove_topics(bootstrap, prefix=prefix))
