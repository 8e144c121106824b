"""Integration helpers: a real recovery worker on the real broker, and ways to talk to it."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from schemas.events import AccountChanged, CodeRequested
from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, CODE_REJECTED, CODE_REQUESTED
from services.common.codec import encode
from services.common.crypto import Keyring, code_aad
from tests.recovery.conftest import wire
from tests.support.kafka import Consumed, create_topics, new_prefix, produce, read_all
from tests.support.workers import TEST_RECOVERY_API_TOKEN, Worker, free_port, service_env

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")


def start_worker(tmp: Path, extra: dict[str, str], prefix: str | None = None) -> Worker:
    """Start a worker; without ``prefix``, on a fresh set of topics (``prefix`` reuses them)."""
    if not BOOTSTRAP:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is unset: run through deploy/test.sh")
    if prefix is None:
        prefix = new_prefix()
        asyncio.run(create_topics(BOOTSTRAP, prefix))
    port = free_port()
    env = service_env(bootstrap=BOOTSTRAP, prefix=prefix, var_dir=tmp,
                      extra={"RECOVERY_WEB_PORT": str(port), **extra})
    return Worker(module="services.recovery", env=env, log_path=tmp / "recovery.log",
                  web_port=port).start()


def prefix_of(worker: Worker) -> str:
    return worker.env["TOPIC_PREFIX"]


async def feed_accounts(worker: Worker, events: Iterable[AccountChanged]) -> None:
    records = [(w.key, w.value, w.headers) for w in map(wire, events)]
    await produce(BOOTSTRAP, prefix_of(worker) + ACCOUNT_CHANGED, records)


async def feed_requests(worker: Worker, events: Iterable[CodeRequested],
                        key: str | None = None) -> list[str]:
    wires = [encode(e, key=key, source="/test/portal") for e in events]
    await produce(BOOTSTRAP, prefix_of(worker) + CODE_REQUESTED,
                  [(w.key, w.value, w.headers) for w in wires])
    return [json.loads(w.value)["event_id"] for w in wires]


async def wait_projected(db_url: str, account_ids: Iterable[object],
                         timeout_s: float = 30.0) -> None:
    """Wait until the worker's projection holds every account (read from its database)."""
    wanted = {str(a) for a in account_ids}
    engine = create_engine(db_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with engine.connect() as conn:
                    rows = conn.execute(text("SELECT account_id FROM accounts")).all()
                if wanted <= {r[0] for r in rows}:
                    return
            except OperationalError:
                pass  # not migrated yet, or the database is being replaced
            if time.monotonic() > deadline:
                raise TimeoutError("accounts not projected")
            await asyncio.sleep(0.2)
    finally:
        engine.dispose()


def requested(login: str, channel: str = "sms", **extra: Any) -> CodeRequested:
    return CodeRequested.model_validate_json(json.dumps({"login": login, "channel": channel,
                                                         **extra}))


async def outcomes(worker: Worker, ids: Iterable[str], timeout_s: float = 40.0
                   ) -> dict[str, tuple[str, dict[str, Any]]]:
    """request event id → (public topic, CodeIssued/CodeRejected as JSON) for every id."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout_s
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    while True:
        for topic in (CODE_ISSUED, CODE_REJECTED):
            for rec in await read_all(BOOTSTRAP, prefix_of(worker) + topic, idle_s=0.3):
                body = json.loads(rec.value or b"{}")
                if body.get("request_event_id") in wanted:
                    found[body["request_event_id"]] = (topic, body)
        if wanted <= set(found):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no outcome for {len(wanted - set(found))} requests")
        await asyncio.sleep(0.3)


def password_of(keyring: Keyring, issued: dict[str, Any]) -> str:
    return keyring.decrypt(issued["password_enc"], aad=code_aad(issued["code_id"], "password"))


async def raw_topic(worker: Worker, topic: str) -> list[Consumed]:
    return await read_all(BOOTSTRAP, prefix_of(worker) + topic, idle_s=0.5)


async def post(worker: Worker, path: str, body: bytes | dict[str, Any],
               content_type: str = "application/json",
               token: str | None = TEST_RECOVERY_API_TOKEN,
               headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.post(
        worker.base_url + path, data=data, headers=sent
    ) as resp:
        return resp.status, await resp.read()


async def log_in(worker: Worker, login: str, password: str) -> tuple[int, bytes]:
    return await post(worker, "/api/v1/login", {"login": login, "password": password})


def new_request_id() -> str:
    return str(uuid.uuid4())
