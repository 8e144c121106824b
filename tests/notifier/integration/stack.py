"""A running notifier worker with its real gateways: the devgateway (SMS) and aiosmtpd (email)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.devgateway import DevGateway
from schemas.events import CodeIssued
from schemas.topics import CODE_ISSUED, NOTIFICATION_STATUS
from tests.notifier.smtp import SmtpServer
from tests.notifier.support import wire
from tests.support.kafka import Consumed, create_topics, new_prefix, produce, read_all
from tests.support.workers import TEST_SMS_STATUS_TOKEN, Worker, free_port, service_env

TOKEN = "stack-gateway-token"
FALLBACK_TOKEN = "stack-fallback-token"
FINAL = {"sent", "failed"}


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    gateway: DevGateway
    smtp: SmtpServer
    worker: Worker
    secrets: set[str] = field(default_factory=set)  # every password and contact used
    fallback: DevGateway | None = None
    env: dict[str, str] = field(default_factory=dict)
    tmp: Path | None = None
    extra_workers: list[Worker] = field(default_factory=list)

    def add_worker(self) -> Worker:
        """Another worker of the same group, database and gateways."""
        assert self.tmp is not None
        port = free_port()
        n = len(self.extra_workers) + 2
        worker = Worker(module="services.notifier", env={**self.env, "NOTIFIER_WEB_PORT": str(port)},
                        log_path=self.tmp / f"notifier-{n}.log", web_port=port)
        self.extra_workers.append(worker)
        return worker.start()

    def accepted_by_ref(self) -> dict[str, int]:
        """How many gateways accepted each client_ref (must be 1: never two gateways)."""
        out: dict[str, int] = {}
        for gateway in (self.gateway, self.fallback):
            if gateway is not None:
                for ref in gateway.call(lambda s: list(s.accepted)):
                    out[ref] = out.get(ref, 0) + 1
        return out

    async def send_codes(self, *events: CodeIssued | tuple[bytes, bytes], secret: Iterable[str] = ()) -> None:
        records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        for event in events:
            if isinstance(event, tuple):
                records.append((event[0], event[1], []))
                continue
            record = wire(event)
            records.append((record.key, record.value, record.headers))
        self.secrets.update(secret)
        await produce(self.bootstrap, self.prefix + CODE_ISSUED, records)

    async def statuses(
        self, code_ids: Iterable[object], want: set[str] = FINAL, timeout_s: float = 40
    ) -> dict[str, list[dict[str, object]]]:
        """Statuses by code id, once every code has one in ``want``."""
        wanted = {str(c) for c in code_ids}

        def by_code(records: list[Consumed]) -> dict[str, list[dict[str, object]]]:
            out: dict[str, list[dict[str, object]]] = {}
            for r in records:
                data = json.loads(r.value or b"{}")
                out.setdefault(str(data.get("code_id")), []).append(data)
            return out

        def done(records: list[Consumed]) -> bool:
            found = by_code(records)
            return all(any(s["status"] in want for s in found.get(c, [])) for c in wanted)

        records = await read_all(self.bootstrap, self.prefix + NOTIFICATION_STATUS, until=done,
                                 timeout_s=timeout_s)
        return {c: s for c, s in by_code(records).items() if c in wanted}

    def post_report(self, body: bytes, token: str | None = TEST_SMS_STATUS_TOKEN) -> int:
        request = urllib.request.Request(self.worker.base_url + "/api/v1/sms-status", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


def start_stack(*, bootstrap: str, tmp: Path, database_url: str | None = None,
                extra: dict[str, str] | None = None, fallback: bool = False) -> Stack:
    prefix = new_prefix()
    asyncio.run(create_topics(bootstrap, prefix))
    gateway = DevGateway(token=TOKEN).start()
    second = DevGateway(token=FALLBACK_TOKEN).start() if fallback else None
    smtp = SmtpServer().start()
    port = free_port()
    env_extra = {
        "SMS_GATEWAY_URL": gateway.url, "SMS_GATEWAY_TOKEN": TOKEN, "SMS_GATEWAY_TIMEOUT_S": "2",  # a loaded 2-core machine answers a local call within it
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_TIMEOUT_S": "2",
        "MAIL_FROM": "selfcare@tv.example", "NOTIFIER_WEB_PORT": str(port),
        "NOTIFIER_RETRY_INITIAL_S": "0.3", "NOTIFIER_RETRY_MAX_S": "1", "NOTIFIER_LEASE_S": "4",
        "LOG_LEVEL": "INFO", "KAFKA_SESSION_TIMEOUT_S": "10",
    }
    if database_url:
        env_extra["NOTIFIER_DATABASE_URL"] = database_url
    if second is not None:
        env_extra.update(SMS_FALLBACK_URL=second.url, SMS_FALLBACK_TOKEN=FALLBACK_TOKEN)
    env_extra.update(extra or {})
    env = service_env(bootstrap=bootstrap, prefix=prefix, var_dir=tmp / "var", extra=env_extra)
    worker = Worker(module="services.notifier", env=env, log_path=tmp / "notifier.log", web_port=port)
    try:
        worker.start()
    except Exception:
        gateway.stop()
        smtp.stop()
        if second is not None:
            second.stop()
        raise
    return Stack(bootstrap=bootstrap, prefix=prefix, gateway=gateway, smtp=smtp, worker=worker,
                 fallback=second, env=env, tmp=tmp)


def stop_stack(stack: Stack) -> None:
    for extra in stack.extra_workers:
        extra.stop()
    stack.worker.stop()
    stack.gateway.stop()
    stack.smtp.stop()
    if stack.fallback is not None:
        stack.fallback.stop()

