"""The fault suite's machinery: its own broker and PostgreSQL (so that it can stop them), an SMS
gateway that can fail or go away, the services as worker processes, a paced load and the ledger
that checks every promise of the workflow once the dust settles.

Everything binds to loopback; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from sqlalchemy import create_engine, text

from deploy.local_stack import SmtpSink
from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REJECTED,
    CODE_REQUESTED,
    CONTRACT_LINKED,
    NOTIFICATION_STATUS,
)
from tests.support.kafka import Consumed, create_topics, new_prefix, read_all
from tests.support.workers import ROOT, Worker, free_port, service_env

SERVICES = ("registration", "recovery", "notifier")
PASSWORD = re.compile(r":\s*([A-Za-z0-9]{8,})")
API_TOKEN = "fault-suite-api-token"
STATUS_TOKEN = "fault-suite-status-token"
GATEWAY_TOKEN = "fault-suite-gateway-token"


def subscribers() -> int:
    """How many subscribers a scenario links and lets request a code: ``FAULT_SUBSCRIBERS``,
    300 by default, the issue's size (the whole suite takes about 12 minutes on two cores);
    a smaller figure gives a quicker run."""
    return int(os.environ.get("FAULT_SUBSCRIBERS", "300"))


def rate() -> float:
    """Code requests per second (``FAULT_RATE``, 20)."""
    return float(os.environ.get("FAULT_RATE", "20"))


# --------------------------------------------------------------------------- infrastructure


class PrivateBroker:
    """A one-node broker of the suite's own (``deploy.broker`` on other ports, a tmp var dir)."""

    def __init__(self, var_dir: Path, base_port: int) -> None:
        self.var_dir, self.base_port = var_dir, base_port
        self.bootstrap = f"127.0.0.1:{base_port}"

    def _cli(self, command: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "deploy.broker", command, "--base-port", str(self.base_port),
             "--var-dir", str(self.var_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"broker {command} failed: {proc.stderr[-2000:]}")
        return proc.stdout.strip()

    def start(self) -> None:
        self._cli("start")

    def stop(self) -> None:
        self._cli("stop")


class PrivatePostgres:
    """A PostgreSQL server of the suite's own (``deploy.postgres`` on another port)."""

    def __init__(self, var_dir: Path, port: int) -> None:
        self.var_dir, self.port = var_dir, port
        self.url = ""

    def _cli(self, command: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "deploy.postgres", command, "--port", str(self.port),
             "--var-dir", str(self.var_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"postgres {command} failed: {proc.stderr[-2000:]}")
        return proc.stdout.strip()

    def start(self) -> None:
        self.url = self._cli("start")

    def stop(self) -> None:
        self._cli("stop")

    def create_database(self) -> str:
        name = f"f_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name

    def drop_database(self, url: str) -> None:
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------- SMS gateway


@dataclass
class Sms:
    to: str
    text: str
    client_ref: str
    message_id: str
    at: float


@dataclass
class GatewayBook:
    """What the gateway saw. ``client_ref`` is an idempotency key: a repeat after acceptance is a
    replay, answered with the first ``message_id``; nothing is sent twice."""

    calls: Counter[str] = field(default_factory=Counter)
    sent: dict[str, Sms] = field(default_factory=dict)
    replays: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    with_idempotency_key: int = 0

    def summary(self) -> dict[str, int]:
        return {"calls": sum(self.calls.values()), "sent": len(self.sent),
                "replays": sum(self.replays.values()), "refused_500": self.refused}


class FaultGateway:
    """An aiohttp SMS gateway on loopback in a thread of its own. ``mode``: ``ok``, ``flaky``
    (500 to every other call), ``down()`` closes the listening socket, ``up()`` reopens it."""

    def __init__(self, token: str = GATEWAY_TOKEN) -> None:
        self.token = token
        self.book = GatewayBook()
        self.mode = "ok"
        self.port = free_port()
        self._parity = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-gateway", daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._counter = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)  # type: ignore[arg-type]

    def start(self) -> FaultGateway:
        self._thread.start()
        self._runner = web.AppRunner(self._app(), handle_signals=False)
        self._run(self._runner.setup())
        self.up()
        return self

    def up(self) -> None:
        async def _up() -> None:
            assert self._runner is not None
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()
        self._run(_up())

    def down(self) -> None:
        async def _down() -> None:
            if self._site is not None:
                await self._site.stop()
                self._site = None
        self._run(_down())

    def snapshot(self) -> GatewayBook:
        async def _copy() -> GatewayBook:
            b = self.book
            return GatewayBook(Counter(b.calls), dict(b.sent), Counter(b.replays), b.refused,
                               b.with_idempotency_key)
        return self._run(_copy())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self._runner is not None:
            self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _app(self) -> web.Application:
        async def sms(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return web.json_response({"error": "unauthorized"}, status=401)
            try:
                body = await request.json()
                to, msg, ref = str(body["to"]), str(body["text"]), str(body["client_ref"])
            except (ValueError, KeyError, TypeError):
                return web.json_response({"error": "bad request"}, status=400)
            book = self.book
            book.calls[ref] += 1
            if request.headers.get("Idempotency-Key") == ref:
                book.with_idempotency_key += 1
            if self.mode == "flaky":
                self._parity ^= 1
                if self._parity:
                    book.refused += 1
                    return web.json_response({"error": "unavailable"}, status=500)
            if ref in book.sent:
                book.replays[ref] += 1
                return web.json_response({"message_id": book.sent[ref].message_id})
            self._counter += 1
            book.sent[ref] = Sms(to, msg, ref, f"m-{self._counter}", time.monotonic())
            return web.json_response({"message_id": book.sent[ref].message_id})

        app = web.Application()
        app.router.add_post("/sms", sms)
        return app


# --------------------------------------------------------------------------- services


@dataclass
class Stack:
    """The three services as worker processes on the suite's broker and PostgreSQL, a fresh
    topic prefix and a fresh database per service."""

    broker: PrivateBroker
    postgres: PrivatePostgres
    var_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=new_prefix)
    gateway: FaultGateway = field(default_factory=FaultGateway)
    smtp: SmtpSink | None = None
    databases: dict[str, str] = field(default_factory=dict)
    workers: dict[str, list[Worker]] = field(default_factory=dict)
    killed: list[Worker] = field(default_factory=list)
    _copies: Counter[str] = field(default_factory=Counter)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def env(self, service: str) -> dict[str, str]:
        assert self.smtp is not None
        extra = {
            f"{s.upper()}_DATABASE_URL": url for s, url in self.databases.items()
        } | {
            "SMS_GATEWAY_URL": self.gateway.url, "SMS_GATEWAY_TOKEN": self.gateway.token,
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp.port), "SMTP_STARTTLS": "false",
            "MAIL_FROM": "selfcare@localhost",
            "RECOVERY_API_TOKEN": API_TOKEN, "SMS_STATUS_TOKEN": STATUS_TOKEN,
            # the load comes from one address and one test: the per-address limits stay out of it
            "LIMIT_IP_MAX": "1000000", "LOGIN_IP_MAX": "1000000",
            "LOG_LEVEL": "INFO",
        } | self.extra_env
        env = service_env(bootstrap=self.bootstrap, prefix=self.prefix, var_dir=self.var_dir, extra=extra)
        return env

    def start(self, replicas: dict[str, int] | None = None) -> Stack:
        # callable from a test's running loop: the topics are created on a loop of their own
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, create_topics(self.bootstrap, self.prefix)).result(60)
        self.gateway.start()
        self.smtp = SmtpSink().start()
        for service in SERVICES:
            self.databases[service] = self.postgres.create_database()
        for service in SERVICES:
            for _ in range((replicas or {}).get(service, 1)):
                self.add_worker(service)
        return self

    def add_worker(self, service: str, path: str = "/readyz") -> Worker:
        self._copies[service] += 1
        # one static group member per worker slot: a restarted worker takes its partitions back
        env = self.env(service)
        if os.environ.get("FAULT_STATIC_MEMBERS", "1") == "1":
            env["KAFKA_GROUP_INSTANCE_ID"] = f"{service}-{self._copies[service]}"
        worker = Worker(module=f"services.{service}", env=env,
                        log_path=self.var_dir / "logs" / f"{service}-{self._copies[service]}.log",
                        web_port=free_port())
        self.workers.setdefault(service, []).append(worker)
        worker.start(ready_timeout_s=120, path=path)
        return worker

    def worker(self, service: str, index: int = 0) -> Worker:
        return self.workers[service][index]

    def kill(self, worker: Worker) -> None:
        worker.kill()
        self.killed.append(worker)

    def terminate(self, worker: Worker) -> None:
        """SIGTERM, as an orchestrator scaling down: the worker is not expected back."""
        self.killed.append(worker)
        worker.stop()

    def dead(self) -> list[str]:
        """Workers that exited although the scenario did not stop them."""
        return [w.log_path.name for ws in self.workers.values() for w in ws
                if w.proc is not None and w.proc.poll() is not None and w not in self.killed]

    def stop(self) -> None:
        for ws in self.workers.values():
            for w in ws:
                with contextlib.suppress(Exception):
                    w.stop()
        with contextlib.suppress(Exception):
            self.gateway.stop()
        if self.smtp is not None:
            with contextlib.suppress(Exception):
                self.smtp.stop()
        for url in self.databases.values():
            with contextlib.suppress(Exception):
                self.postgres.drop_database(url)

    def recovery_url(self, index: int = 0) -> str:
        return self.worker("recovery", index).base_url

    def metric(self, service: str, name: str, contains: str = "") -> float:
        """The sum of a metric's samples over the live workers of ``service``."""
        import urllib.request

        total = 0.0
        for w in self.workers.get(service, []):
            if w.proc is None or w.proc.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(w.base_url + "/metrics", timeout=3) as r:
                    body = r.read().decode()
            except OSError:
                continue
            for line in body.splitlines():
                if line.startswith((name + "{", name + " ")) and contains in line:
                    total += float(line.split()[-1])
        return total


# --------------------------------------------------------------------------- load


def mobile(i: int) -> str:
    return f"+7916{3000000 + i:07d}"


def linked(i: int) -> tuple[bytes, bytes]:
    contract = f"F-{i:06d}"
    return contract.encode(), json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
        "contract_number": contract, "personal_account": f"{100000000000 + i}",
        "tv_product": "interactive",
        "subscriber": {"full_name": "Петров Пётр Петрович", "mobile": mobile(i),
                       "passport": {"series": "4510", "number": f"{100000 + i}"}},
        "mobile_active": True, "operator_id": "crm-op-17",
    }, ensure_ascii=False).encode()


def requested(login: str, event_id: str) -> bytes:
    return json.dumps({"event_id": event_id, "occurred_at": _now(), "login": login,
                       "channel": "sms"}).encode()


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Producer:
    """Sends records at a pace; a send that fails is retried (same record, same event id) until
    the broker acknowledges it or ``give_up_s`` passes."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer: AIOKafkaProducer | None = None
        self.acked: dict[str, float] = {}
        self.retried = 0
        self.lost: list[str] = []
        self.errors: Counter[str] = Counter()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Producer:
        self.producer = await self._new()
        return self

    async def _new(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    enable_idempotence=True, request_timeout_ms=15000,
                                    retry_backoff_ms=500)
        await producer.start()
        return producer

    async def __aexit__(self, *exc: object) -> None:
        assert self.producer is not None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.producer.stop(), 30)

    async def _renew(self, failed: AIOKafkaProducer) -> None:
        """A producer that failed after the broker came back is replaced (once per failure)."""
        async with self._lock:
            if self.producer is not failed:
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(failed.stop(), 10)
            try:
                self.producer = await self._new()
            except Exception as exc:
                self.errors[type(exc).__name__] += 1

    async def _send(self, topic: str, key: bytes, value: bytes, ident: str, give_up_s: float) -> None:
        deadline = time.monotonic() + give_up_s
        while True:
            producer = self.producer
            assert producer is not None
            try:
                await producer.send_and_wait(topic, value=value, key=key)
                self.acked[ident] = time.monotonic()
                return
            except Exception as exc:
                self.errors[type(exc).__name__] += 1
                if time.monotonic() > deadline:
                    self.lost.append(ident)
                    return
                self.retried += 1
                await asyncio.sleep(1)
                await self._renew(producer)

    async def paced(self, topic: str, records: Iterable[tuple[bytes, bytes, str]], per_s: float,
                    give_up_s: float = 120.0) -> None:
        """Send ``(key, value, ident)`` records ``per_s`` a second; returns when all are settled."""
        tasks = []
        start = time.monotonic()
        for n, (key, value, ident) in enumerate(records):
            delay = start + n / per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._send(topic, key, value, ident, give_up_s)))
        await asyncio.gather(*tasks)


async def link_all(stack: Stack, count: int, *, per_s: float = 0.0,
                   during: Callable[[], Awaitable[None]] | None = None) -> None:
    """Link ``count`` subscribers (a burst unless ``per_s``) and wait until recovery knows them."""
    records = [(*linked(i), f"link-{i}") for i in range(count)]
    async with Producer(stack.bootstrap) as p:
        send = p.paced(stack.prefix + CONTRACT_LINKED, records, per_s or 10_000.0)
        if during is None:
            await send
        else:
            await asyncio.gather(send, during())
    assert not p.lost, f"links not accepted by the broker: {len(p.lost)}"
    await wait_until(lambda: stack.metric("recovery", "recovery_events_consumed_total",
                                          ACCOUNT_CHANGED) >= count, timeout_s=180,
                     what=f"recovery's projection of {count} accounts")


async def wait_until(predicate: Callable[[], Any], *, timeout_s: float, what: str,
                     every_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(every_s)


@dataclass
class Request:
    event_id: str
    login: str


def code_requests(count: int, *, offset: int = 0) -> list[Request]:
    return [Request(str(uuid.uuid4()), mobile(offset + i)) for i in range(count)]


async def request_codes(stack: Stack, requests: list[Request], *, per_s: float | None = None,
                        during: Callable[[], Awaitable[None]] | None = None) -> Producer:
    """Play the portal: one ``CodeRequested`` per request, ``per_s`` a second, while ``during``
    (the fault) runs alongside."""
    records = [(r.login.encode(), requested(r.login, r.event_id), r.event_id) for r in requests]
    async with Producer(stack.bootstrap) as p:
        send = p.paced(stack.prefix + CODE_REQUESTED, records, per_s or rate())
        if during is None:
            await send
        else:
            await asyncio.gather(send, during())
    return p


# --------------------------------------------------------------------------- the ledger


@dataclass
class Ledger:
    """Every request's outcomes on the topics and every code's fate at the gateway."""

    issued: dict[str, list[dict[str, Any]]]  # request event id -> CodeIssued records
    rejected: dict[str, list[dict[str, Any]]]
    statuses: dict[str, list[dict[str, Any]]]  # code id -> NotificationStatus records
    book: GatewayBook
    raw_outcomes: int

    @staticmethod
    def _by(records: list[Consumed], key: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            if r.value is None:
                continue
            body = json.loads(r.value)
            out.setdefault(str(body[key]), []).append(body)
        return out

    @classmethod
    async def read(cls, stack: Stack) -> Ledger:
        issued = await read_all(stack.bootstrap, stack.prefix + CODE_ISSUED, idle_s=0.5)
        rejected = await read_all(stack.bootstrap, stack.prefix + CODE_REJECTED, idle_s=0.5)
        statuses = await read_all(stack.bootstrap, stack.prefix + NOTIFICATION_STATUS, idle_s=0.5)
        return cls(cls._by(issued, "request_event_id"), cls._by(rejected, "request_event_id"),
                   cls._by(statuses, "code_id"), await asyncio.to_thread(stack.gateway.snapshot),
                   len(issued) + len(rejected))

    def outcomes(self, request_id: str) -> set[str]:
        """Distinct outcome events of a request (a record published again keeps its event id)."""
        return {e["event_id"] for e in self.issued.get(request_id, []) + self.rejected.get(request_id, [])}

    def codes(self) -> dict[str, dict[str, Any]]:
        return {e["code_id"]: e for es in self.issued.values() for e in es}

    def settled(self, requests: list[Request]) -> bool:
        """Every request has an outcome and every issued SMS code went out or finally failed."""
        if any(not self.outcomes(r.event_id) for r in requests):
            return False
        return all(code in self.book.sent or self._failed(code) for code in self.codes())

    def _failed(self, code: str) -> bool:
        return any(s["status"] == "failed" for s in self.statuses.get(code, []))

    def figures(self, requests: list[Request]) -> dict[str, Any]:
        ids = {r.event_id for r in requests}
        codes = self.codes()
        reasons = Counter(e["reason"] for rid in ids for e in self.rejected.get(rid, []))
        return {
            "requests": len(requests),
            "issued": sum(1 for rid in ids if self.issued.get(rid)),
            "rejected": dict(reasons),
            "lost": sum(1 for rid in ids if not self.outcomes(rid)),
            "double_outcome": sum(1 for rid in ids if len(self.outcomes(rid)) > 1),
            "republished_outcomes": self.raw_outcomes - sum(len(self.outcomes(r)) for r in ids),
            "sms_sent": sum(1 for c in codes if c in self.book.sent),
            "sms_missing": sum(1 for c in codes if c not in self.book.sent and not self._failed(c)),
            "failed": sum(1 for c in codes if self._failed(c)),
            "gateway_calls": sum(self.book.calls.values()),
            "gateway_replays": sum(self.book.replays.values()),
            "gateway_500": self.book.refused,
        }


async def settle(stack: Stack, requests: list[Request], *, timeout_s: float) -> tuple[Ledger, float]:
    """Wait until every request is settled; returns the ledger and how long it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while True:
        ledger = await Ledger.read(stack)
        if ledger.settled(requests) or time.monotonic() > deadline:
            drain = time.monotonic() - t0
            await asyncio.sleep(3)  # anything late (a second outcome, a re-send) shows up too
            return await Ledger.read(stack), drain
        await asyncio.sleep(1)


async def log_in_all(stack: Stack, ledger: Ledger, *, ports: int = 1,
                     skip: frozenset[str] = frozenset()) -> dict[str, int]:
    """Log in with every password that reached the gateway (but for the logins in ``skip``),
    spread over ``ports`` recovery workers; answers by status."""
    sem = asyncio.Semaphore(8)
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    codes = ledger.codes()
    live = [w for w in stack.workers["recovery"] if w.proc is not None and w.proc.poll() is None]

    async def one(n: int, sms: Sms, http: aiohttp.ClientSession) -> None:
        match = PASSWORD.search(sms.text)
        if match is None or sms.client_ref not in codes:
            statuses[0] += 1
            return
        base = live[n % min(ports, len(live))].base_url
        async with sem, http.post(base + "/api/v1/login", headers=headers,
                                  json={"login": sms.to, "password": match.group(1)}) as r:
            statuses[r.status] += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(one(n, s, http) for n, s in enumerate(ledger.book.sent.values())
                               if s.to not in skip))
    return dict(statuses)


def record(tmp_path: Path, name: str, figures: dict[str, Any]) -> None:
    """One line per scenario on stdout (``-s``) and in ``FAULT_REPORT`` (JSON lines) if set."""
    line = json.dumps({"scenario": name, "subscribers": subscribers(), **figures}, ensure_ascii=False)
    print(f"\n[fault] {line}", flush=True)
    (tmp_path / "figures.json").write_text(line + "\n")
    target = os.environ.get("FAULT_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")


def check(figures: dict[str, Any], stack: Stack, logins: dict[str, int], not_logged_in: int = 0) -> None:
    """The promises of every scenario (``not_logged_in``: delivered passwords left unused)."""
    assert figures["lost"] == 0, figures
    assert figures["double_outcome"] == 0, figures
    assert figures["sms_missing"] == 0, figures
    assert figures["sms_sent"] + figures["failed"] == figures["issued"], figures
    assert set(logins) == {200} and logins[200] == figures["sms_sent"] - not_logged_in, logins
    assert stack.dead() == [], f"service processes died: {stack.dead()}"
