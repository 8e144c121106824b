"""Start a service as a real faust worker process (``python -m services.<name> worker``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy.local_stack import free_port as free_port  # re-exported for tests

ROOT = Path(__file__).resolve().parents[2]

TEST_SECRET_KEYS = "m9d4mNNbQnMmJrO0PjzIuR6Z4gk0Szz0yFSsmy9sX9A"
TEST_HASH_PEPPER = "test-pepper-0123456789abcdef"
TEST_RECOVERY_API_TOKEN = "test-recovery-api-token-0123456789"
TEST_SMS_STATUS_TOKEN = "test-sms-status-token-0123456789"


class Worker:
    """A running service process; logs go to ``log_path``; ``stop()`` ends it (SIGTERM)."""

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
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.module} not ready in {ready_timeout_s}s: {self.log_tail()}")

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
