"""The whole workflow on this machine: the three services as worker processes, plus — unless
real gateways are configured — a local SMS gateway and an SMTP sink that show what they receive.

Used by the run command (deploy/demo.py), the end-to-end tests and the latency benchmark.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from deploy.devgateway import DevGateway
from deploy.launch import free_port, ready
from schemas.topics import SERVICES
from services.common.crypto import load_or_create_local_keys
from services.common.kafka_config import KafkaSettings
from services.common.tokens import LOCAL_TOKENS, load_or_create_local_tokens

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PORTS = {"registration": 6101, "recovery": 6102, "notifier": 6103}


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str
    raw: Message


class SmtpSink:
    """aiosmtpd on loopback keeping every message (and calling ``on_mail`` for each)."""

    def __init__(self, *, port: int = 0, on_mail: Callable[[Mail], None] | None = None) -> None:
        self.messages: list[Mail] = []
        self.on_mail = on_mail
        self.controller = Controller(self, hostname="127.0.0.1", port=port or free_port())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        part = msg.get_body(("plain",)) if hasattr(msg, "get_body") else None  # type: ignore[attr-defined]
        payload = (part or msg).get_payload(decode=True)
        charset = (part or msg).get_content_charset() or "utf-8"
        body = payload.decode(charset, "replace") if isinstance(payload, bytes) else ""
        mail = Mail(to=list(envelope.rcpt_tos), subject=str(msg.get("Subject", "")), body=body, raw=msg)
        self.messages.append(mail)
        if self.on_mail is not None:
            self.on_mail(mail)
        return "250 Message accepted for delivery"

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LocalStack:
    """Starts and stops everything; ``env`` is what the services see."""

    bootstrap: str = "127.0.0.1:9092"
    var_dir: Path = ROOT / "var"
    topic_prefix: str = ""
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    extra_env: dict[str, str] = field(default_factory=dict)
    local_gateways: bool = True
    sms_gateway: DevGateway | None = None
    smtp: SmtpSink | None = None
    replicas: dict[str, int] = field(default_factory=dict)  # worker processes per service (1)
    processes: list[ServiceProcess] = field(default_factory=list)
    on_mail: Callable[[Mail], None] | None = None
    # the KAFKA_* settings of each principal (a service, "crm", "ops") on a secured cluster
    kafka_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def kafka(self, principal: str) -> KafkaSettings:
        """How ``principal`` connects to the stack's cluster (PLAINTEXT unless ``kafka_env``)."""
        return KafkaSettings.from_env(
            {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, **self.kafka_env.get(principal, {})}
        )
    tokens: dict[str, str] = field(default_factory=dict)  # RECOVERY_API_TOKEN, SMS_STATUS_TOKEN

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SELFCARE_VAR_DIR": str(self.var_dir),
            "TOPIC_PREFIX": self.topic_prefix,
            "PYTHONUNBUFFERED": "1",
        })
        keys = env.get("SECRET_KEYS") or (env.get("CONTACT_KEYS") and env.get("DELIVERY_KEYS"))
        if not (keys and env.get("HASH_PEPPER")):
            env["SELFCARE_ENV"] = "local"
            # create the local keys once, before three processes race to do it
            load_or_create_local_keys(self.var_dir / "local-keys.json")
            local_tokens = load_or_create_local_tokens(self.var_dir / "local-keys.json")
        else:
            local_tokens = {name: secrets.token_urlsafe(32) for name in LOCAL_TOKENS}
        # the HTTP calls' tokens: given, else the local ones (a fresh pair for a keyed run)
        for name in LOCAL_TOKENS:
            env[name] = self.tokens.get(name) or env.get(name) or local_tokens[name]
            self.tokens[name] = env[name]
        if self.sms_gateway is not None:
            env["SMS_GATEWAY_URL"] = self.sms_gateway.url
            env["SMS_GATEWAY_TOKEN"] = self.sms_gateway.state.token
        if self.smtp is not None:
            env.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp.port),
                        "SMTP_STARTTLS": "false", "MAIL_FROM": env.get("MAIL_FROM", "selfcare@localhost")})
        for name, port in self.ports.items():
            env[f"{name.upper()}_WEB_PORT"] = str(port)
        env.update(self.extra_env)
        self.tokens.update({name: env[name] for name in LOCAL_TOKENS})
        return env

    def api_headers(self) -> dict[str, str]:
        """What the login page's backend sends with every call to recovery's API."""
        return {"Authorization": f"Bearer {self.tokens['RECOVERY_API_TOKEN']}"}

    def start(self, ready_timeout_s: float = 90.0) -> LocalStack:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self.local_gateways:
            if not os.environ.get("SMS_GATEWAY_URL"):
                self.sms_gateway = DevGateway(token=secrets.token_urlsafe(16)).start()
            if not os.environ.get("SMTP_HOST"):
                self.smtp = SmtpSink(on_mail=self.on_mail).start()
        env = self.env()
        logs = self.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            for copy in range(self.replicas.get(name, 1)):
                # extra copies join the same consumer group, each with a web port of its own
                port = self.ports[name] if copy == 0 else free_port()
                log_path = logs / (f"{name}.log" if copy == 0 else f"{name}-{copy + 1}.log")
                log = open(log_path, "ab")  # the child keeps it
                proc = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}", "worker", "--loglevel", "info"],
                    cwd=ROOT, stdout=log,
                    env={**env, **self.kafka_env.get(name, {}), f"{name.upper()}_WEB_PORT": str(port)},
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
                self.processes.append(ServiceProcess(name, port, log_path, proc))
        deadline = time.monotonic() + ready_timeout_s
        for service in self.processes:
            while not ready(service.url):
                if service.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{service.name} exited; see {service.log_path}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{service.name} not ready in {ready_timeout_s}s; see {service.log_path}"
                    )
                time.sleep(0.3)
        return self

    def stop(self) -> None:
        for service in self.processes:
            if service.proc.poll() is None:
                os.killpg(service.proc.pid, signal.SIGTERM)
        for service in self.processes:
            try:
                service.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(service.proc.pid, signal.SIGKILL)
                service.proc.wait(5)
        self.processes.clear()
        if self.sms_gateway is not None:
            self.sms_gateway.stop()
            self.sms_gateway = None
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

