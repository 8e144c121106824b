"""What the ops CLI's tests share."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.kafka import create_topics, new_prefix


@pytest.fixture
def prefix(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh set of topics, and the CLI's environment pointed at them."""
    value = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, value))
    monkeypatch.setenv("TOPIC_PREFIX", value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return value
