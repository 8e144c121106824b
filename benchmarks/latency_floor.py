"""The floor under the workflow's latency: three chained no-op faust agents, one argon2id hash.

    python -m benchmarks.latency_floor worker   (started by ``benchmarks.latency``)

The records take the workflow's three hops over the workflow's own topics (same partitions and
configs, under the benchmark's floor prefix): ``code-requested`` → agent → ``requests-by-login``
→ agent that hashes one password with recovery's argon2id parameters (OWASP) in recovery's
thread pool → ``code-issued`` → agent that notes, per record, the time since the benchmark
sent it (wall clock; same machine) in ``$SELFCARE_VAR_DIR/floor.txt``. The app is the
services' own (``make_app``, recovery's settings), so the broker settings are the workers'.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from schemas.topics import CODE_ISSUED, CODE_REQUESTED, REQUESTS_BY_LOGIN
from services.common.app import make_app
from services.common.crypto import ThreadPoolHasher
from services.common.metrics import ServiceMetrics
from services.common.process import tune_gc_for_workers
from services.recovery.settings import RecoverySettings

RESULTS = "floor.txt"


def main() -> None:
    env = dict(os.environ)
    env["RECOVERY_WEB_PORT"] = env.get("LATENCY_FLOOR_WEB_PORT", "6109")
    settings = RecoverySettings.from_env(env)
    app = make_app(settings=settings, metrics=ServiceMetrics("latency_floor"),
                   app_id=f"{settings.topic_prefix}latency-floor")
    hasher = ThreadPoolHasher(params=(settings.argon2.time_cost, settings.argon2.memory_kib,
                                      settings.argon2.parallelism),
                              workers=settings.hash_workers, nice=settings.hash_nice)

    def topic(name: str) -> Any:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes, internal=False)

    requested, by_login, issued = topic(CODE_REQUESTED), topic(REQUESTS_BY_LOGIN), topic(CODE_ISSUED)
    results = Path(settings.var_dir) / RESULTS

    @app.agent(requested, name="floor.first")
    async def first(stream: Any) -> None:
        async for event in stream.events():
            await by_login.send(key=event.key, value=event.value)

    # as many hashes at once as recovery's pool has threads
    @app.agent(by_login, name="floor.middle", concurrency=settings.hash_workers)
    async def middle(stream: Any) -> None:
        async for event in stream.events():
            await hasher.hash_many([secrets.token_urlsafe(9)])
            await issued.send(key=event.key, value=event.value)

    @app.agent(issued, name="floor.last")
    async def last(stream: Any) -> None:
        with results.open("a") as out:
            async for event in stream.events():
                sent = json.loads(event.value)
                out.write(f"{sent['i']} {(time.time() - sent['at']) * 1000:.3f}\n")
                out.flush()

    tune_gc_for_workers()  # as the services' workers do
    app.main()


if __name__ == "__main__":
    main()
