"""A real recovery worker and a real notifier worker (with its gateways), shared by a module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notifier.integration.stack import Stack, start_stack, stop_stack
from tests.recovery.integration.support import start_worker
from tests.support.workers import Worker

# short, so that a body or head that never completes is answered within the 2 s of issue 16
READ_TIMEOUT_S = "1"
OPS_TOKEN = "edge-ops-token-0123456789abcdef"


@pytest.fixture(scope="module")
def recovery(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Worker]:
    tmp: Path = tmp_path_factory.mktemp("recovery")
    worker = start_worker(tmp, {"HTTP_READ_TIMEOUT_S": READ_TIMEOUT_S, "LOG_LEVEL": "INFO",
                                "SUPPORT_PHONE": "8 800 555-35-35", "OPS_API_TOKEN": OPS_TOKEN})
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def notifier(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Stack]:
    stack = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path_factory.mktemp("notifier"),
                        extra={"HTTP_READ_TIMEOUT_S": READ_TIMEOUT_S})
    yield stack
    stop_stack(stack)
