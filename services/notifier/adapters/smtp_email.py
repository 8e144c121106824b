"""``SmtpEmailGateway``: one message per code over SMTP (aiosmtplib), STARTTLS and login when set."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import SendResult

QUIT_S = 1.0  # the QUIT after an accepted message: best effort, never past the session's bound


def message_id_for(code_id: str, mail_from: str) -> str:
    """Derived from the code: a re-sent message has the same Message-ID as the first."""
    domain = mail_from.rpartition("@")[2].strip(">") or "selfcare.local"
    return f"<{code_id}@{domain}>"


def envelope_address(address: str) -> str:
    """``address`` with its domain in ASCII (IDNA) form, so that a relay without SMTPUTF8 takes
    ``ivan@пример.рф`` as ``ivan@xn--e1afmkfd.xn--p1ai``. The local part is kept as given: a
    non-ASCII one still needs SMTPUTF8."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    return f"{local}@{_ascii_domain(domain)}"


@functools.lru_cache(maxsize=1024)
def _ascii_domain(domain: str) -> str:
    """The same IDNA (UTS-46) form as registration's check of the address."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).ascii_domain
    except EmailNotValidError:
        return domain  # not a domain registration accepts: left for the relay to refuse


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

    def build(self, message: OutgoingMessage, *, to: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.mail_from
        mail["To"] = to
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = message_id_for(message.code_id, self.mail_from)
        mail.set_content(message.text)
        return mail

    async def send(self, message: OutgoingMessage) -> SendResult:
        to = envelope_address(message.to)
        mail = self.build(message, to=to)
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, username=self.username, password=self._password,
            start_tls=self.starttls, use_tls=False, timeout=self.timeout_s, cert_bundle=self.ca_file,
        )
        loop = asyncio.get_running_loop()
        # aiosmtplib's ``timeout`` bounds each reply; a session waits for ten or so (greeting,
        # EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, the message), so the whole of it is
        # bounded here, QUIT included: the delivery's lease must outlast the call
        deadline = loop.time() + self.timeout_s
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await client.connect()  # STARTTLS (verified with ca_file) and login when set
                    try:
                        # sender and recipient given: never read back from the parsed headers,
                        # which decode encoded words (=?utf-8?q?a=40b?=@c is another mailbox)
                        await client.send_message(mail, sender=self.mail_from, recipients=[to])
                    except aiosmtplib.SMTPNotSupported:
                        if to.isascii():
                            raise
                        # a non-ASCII local part, and the relay offers no SMTPUTF8: it never will
                        return SendResult.permanent("smtp_utf8_unsupported")
            except aiosmtplib.SMTPAuthenticationError as exc:  # the relay's login: a set-up to fix
                return SendResult.transient(f"smtp_auth_{exc.code}")
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [e.code for e in exc.recipients]
                return _by_code(min(codes) if codes else 550)
            except aiosmtplib.SMTPResponseException as exc:
                return _by_code(exc.code)
            except (aiosmtplib.SMTPException, TimeoutError, OSError) as exc:
                # a connection lost (or a time-out) after the message's last line and before the
                # relay's answer lands here too: the relay may have taken it, and it is sent again
                # (docs/notifier.md, "Never twice")
                return SendResult.transient(f"smtp_{type(exc).__name__}"[:64])
            # the relay accepted the message: nothing QUIT does (no answer, a drop) changes that
            with contextlib.suppress(aiosmtplib.SMTPException, TimeoutError, OSError):
                async with asyncio.timeout_at(min(deadline, loop.time() + QUIT_S)):
                    await client.quit()
        finally:
            client.close()
        return SendResult.accepted(mail["Message-ID"].strip("<>")[:64])


def _by_code(code: int) -> SendResult:
    """Only a 5xx refuses the message for good. A 4xx, a reply aiosmtplib could not read (code
    -1: malformed, over-long) or one out of place (354 to MAIL) is worth another try."""
    if 500 <= code < 600:
        return SendResult.permanent(f"smtp_{code}")
    return SendResult.transient(f"smtp_{code}")
