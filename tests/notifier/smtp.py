"""A real SMTP server for tests (aiosmtpd in its own thread) with scripted answers per recipient."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.workers import free_port


@dataclass
class ScriptedSmtpHandler:
    """``scripts[address]`` lists the RCPT answers, e.g. ``["451 4.3.0 busy", "250 OK"]``."""

    scripts: dict[str, list[str]] = field(default_factory=dict)
    messages: list[EmailMessage] = field(default_factory=list)
    rcpt_calls: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            self.rcpt_calls[address] = self.rcpt_calls.get(address, 0) + 1
            steps = self.scripts.get(address)
            answer = (steps.pop(0) if len(steps) > 1 else steps[0]) if steps else "250 OK"
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(mail)  # type: ignore[arg-type]
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


class SmtpServer:
    def __init__(self) -> None:
        self.handler = ScriptedSmtpHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
