"""``SmtpEmailGateway``: one message per code over SMTP (aiosmtplib), STARTTLS and login when set."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import SendResult


def message_id_for(code_id: str, mail_from: str) -> str:
    """Derived from the code: a re-sent message has the same Message-ID as the first."""
    domain = mail_from.rpartition("@")[2].strip(">") or "selfcare.local"
    return f"<{code_id}@{domain}>"


class SmtpEmailGateway:
    def __init__(
        self, *, host: str, port: int, mail_from: str, username: str | None = None,
        password: str | None = None, starttls: bool = False, timeout_s: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        self.host, self.port, self.mail_from = host, port, mail_from
        self.username, self._password = username or None, password or None
        self.starttls, self.timeout_s = starttls, timeout_s
        self.ca_file = ca_file or None  # the relay's CA (PEM) for STARTTLS; None: system store

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def build(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.mail_from
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = message_id_for(message.code_id, self.mail_from)
        mail.set_content(message.text)
        return mail

    async def send(self, message: OutgoingMessage) -> SendResult:
        mail = self.build(message)
        try:
            # aiosmtplib's ``timeout`` bounds each reply; a session waits for ten or so (greeting,
            # EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, the message, QUIT), so the whole of it
            # is bounded here: the delivery's lease must outlast the call
            async with asyncio.timeout(self.timeout_s):
                await aiosmtplib.send(
                    mail, hostname=self.host, port=self.port, username=self.username,
                    password=self._password, start_tls=self.starttls, use_tls=False,
                    timeout=self.timeout_s, cert_bundle=self.ca_file,
                )
        except aiosmtplib.SMTPAuthenticationError as exc:  # the relay's login: a set-up to fix
            return SendResult.transient(f"smtp_auth_{exc.code}")
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [e.code for e in exc.recipients]
            return _by_code(min(codes) if codes else 550)
        except aiosmtplib.SMTPResponseException as exc:
            return _by_code(exc.code)
        except (aiosmtplib.SMTPException, TimeoutError, OSError) as exc:
            return SendResult.transient(f"smtp_{type(exc).__name__}"[:64])
        return SendResult.accepted(mail["Message-ID"].strip("<>")[:64])


def _by_code(code: int) -> SendResult:
    if 400 <= code < 500:
        return SendResult.transient(f"smtp_{code}")
    return SendResult.permanent(f"smtp_{code}")
