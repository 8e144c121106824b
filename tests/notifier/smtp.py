"""A real SMTP server for tests (aiosmtpd in its own thread) with scripted answers per recipient,
and a raw one in the test's loop for what aiosmtpd will not do (misbehave, keep RCPT as sent)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

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


@dataclass
class SlowSmtpHandler(ScriptedSmtpHandler):
    """Answers MAIL, RCPT and DATA each after ``delay_s``: every reply within a per-reply
    time-out, the session as a whole beyond it (an overloaded or tarpitting relay)."""

    delay_s: float = 0.0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        await asyncio.sleep(self.delay_s)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        await asyncio.sleep(self.delay_s)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay_s)
        return await super().handle_DATA(server, session, envelope)


@dataclass
class PasswordCheck:
    """An aiosmtpd authenticator accepting one login; records who logged in, and over TLS or not."""

    username: str
    password: str
    logins: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.username.encode()
              and auth_data.password == self.password.encode())
        if ok:
            self.logins.append((self.username, session.ssl is not None))
        return AuthResult(success=ok, handled=False)


class SmtpServer:
    """Plain by default; with ``tls_context`` and ``auth`` it requires STARTTLS, then a login;
    ``smtputf8=False``: a relay that does not offer SMTPUTF8."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, auth: PasswordCheck | None = None,
                 handler: ScriptedSmtpHandler | None = None, smtputf8: bool = True) -> None:
        self.handler = handler or ScriptedSmtpHandler()
        self.port = free_port()
        options: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=True)
        if auth is not None:
            options.update(authenticator=auth, auth_required=True, auth_require_tls=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **options)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class RawSmtpRelay:
    """A minimal SMTP relay in the test's loop, answering line by line as scripted: ``greeting``
    as sent; ``mail_reply`` to MAIL; ``after_data`` "250" (accept) or "drop" (close without a
    reply); ``quit`` "221", "hang" (never answer) or "drop". ``rcpts`` keeps each RCPT argument
    as it came on the wire (aiosmtpd decodes encoded words in it)."""

    greeting: bytes = b"220 relay ESMTP\r\n"
    mail_reply: bytes = b"250 OK\r\n"
    after_data: str = "250"
    quit: str = "221"
    messages: list[bytes] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    quits: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.greeting)
            await writer.drain()
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-relay\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    writer.write(self.mail_reply)
                elif verb == b"RCPT":
                    self.rcpts.append(line[8:].decode().strip())  # after "RCPT TO:"
                    writer.write(b"250 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    body = bytearray()
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        body += chunk
                    self.messages.append(bytes(body))
                    if self.after_data == "drop":
                        return
                    writer.write(b"250 2.0.0 queued as 1\r\n")
                elif verb == b"QUIT":
                    self.quits += 1
                    if self.quit == "hang":
                        await reader.read()  # no answer: wait for the client to hang up
                    if self.quit == "221":
                        writer.write(b"221 bye\r\n")
                        await writer.drain()
                    return
                else:
                    writer.write(b"250 OK\r\n" if verb == b"RSET" else b"502 no\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RawSmtpRelay]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
