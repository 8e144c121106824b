"""Launching services for tests and benchmarks: a worker process, its environment, free
loopback ports, a fresh topic namespace and raw records produced onto it.

The keys below are fixed and public: they serve local tests and benchmarks only, never a real
deployment (which reads its own ``SECRET_KEYS`` and ``HASH_PEPPER``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from deploy import topics as topic_admin
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs

ROOT = Path(__file__).resolve().parents[1]

TEST_SECRET_KEYS = "m9d4mNNbQnMmJrO0PjzIuR6Z4gk0Szz0yFSsmy9sX9A"  # noqa: S105 - public, local only
TEST_HASH_PEPPER = "test-pepper-0123456789abcdef"
TEST_RECOVERY_API_TOKEN = "test-recovery-api-token-0123456789"  # noqa: S105 - public, local only
TEST_SMS_STATUS_TOKEN = "test-sms-status-token-0123456789"  # noqa: S105 - public, local only


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(base_url: str, path: str = "/readyz") -> bool:
    """Whether the service at ``base_url`` answers ``path`` (``/readyz``) with 200."""
    try:
        with urllib.request.urlopen(base_url + path, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


def new_prefix() -> str:
    """A fresh namespace: every topic and consumer group of one run gets it."""
    return f"t{uuid.uuid4().hex[:10]}."


async def create_topics(bootstrap: KafkaSettings | str, prefix: str) -> None:
    """Every declared topic under ``prefix``, one replica each."""
    await topic_admin.apply(bootstrap, prefix=prefix, replication_factor=1)


async def produce(
    bootstrap: KafkaSettings | str,
    topic: str,
    records: Sequence[tuple[Any, ...]],
) -> None:
    """Send raw (key, value[, headers]) records in order and wait for the broker's acks."""
    producer = AIOKafkaProducer(
        **aiokafka_kwargs(bootstrap), acks="all", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = []
        for rec in records:
            key, value = rec[0], rec[1]
            headers = rec[2] if len(rec) > 2 else None  # type: ignore[misc]
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class Worker:
    """A running service process (``python -m <module> worker``); logs go to ``log_path``;
    ``stop()`` ends it (SIGTERM)."""

    def __init__(self, *, module: str, env: dict[str, str], log_path: Path, web_port: int) -> None:
        self.module = module
        self.env = env
        self.log_path = log_path
        self.web_port = web_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, ready_timeout_s: float = 60.0, path: str = "/readyz") -> Worker:
        """Start the process and wait until ``path`` answers 200 (``/livez`` for a worker that
        may get no partition: one more worker than a topic's partitions can feed)."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited: {self.log_tail()}")
            if ready(self.base_url, path):
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.module} not ready in {ready_timeout_s}s: {self.log_tail()}")

    def spawn(self) -> Worker:
        """Start the process without waiting for it to be ready (for a worker expected to
        exit, possibly before it ever answers)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # services.recovery -> RECOVERY_WEB_PORT; tests.support.probe_service -> PROBE_WEB_PORT
        service = self.module.split(".")[-1].removesuffix("_service").upper()
        self.env = {**self.env, f"{service}_WEB_PORT": str(self.web_port)}
        log = open(self.log_path, "ab")  # handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", "--loglevel", "info"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def service_env(
    *, bootstrap: str, prefix: str, var_dir: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """A worker's environment: this broker and prefix, the fixed keys and tokens, no
    inherited ``*_DATABASE_URL`` (each worker keeps its SQLite file under ``var_dir``)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOPIC_PREFIX": prefix,
        "SELFCARE_VAR_DIR": str(var_dir),
        "SECRET_KEYS": TEST_SECRET_KEYS,
        "HASH_PEPPER": TEST_HASH_PEPPER,
        "RECOVERY_API_TOKEN": TEST_RECOVERY_API_TOKEN,
        "SMS_STATUS_TOKEN": TEST_SMS_STATUS_TOKEN,
        "BATCH_SIZE": "200",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env
