"""The gateway adapters against a real HTTP server (the devgateway) and a real SMTP server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from deploy.devgateway import DevGateway
from services.notifier.adapters.sms_http import HttpSmsGateway, retry_after_seconds
from services.notifier.adapters.smtp_email import SmtpEmailGateway
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import Verdict
from tests.notifier.smtp import RawSmtpRelay, SlowSmtpHandler, SmtpServer
from tests.support.workers import free_port

TOKEN = "gw-test-token"


@pytest.fixture(scope="module")
def devgateway() -> Iterator[DevGateway]:
    gateway = DevGateway(token=TOKEN).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def sms(to: str, ref: str) -> OutgoingMessage:
    return OutgoingMessage(code_id=ref, channel="sms", to=to, text="Пароль: X")


# the answers that must not time out get this long (a loaded machine answers a local call well
# within it); the slow and hanging answers below take SLOW_S, far beyond it
TIMEOUT_S = 2.0
SLOW_S = 5


async def send(url: str, message: OutgoingMessage,
               token: str = TOKEN) -> tuple[Verdict, object, object, bool]:
    """The verdict, error, Retry-After and whether the failure is definite (the gateway surely
    did not take the message: only then may it go to the other gateway)."""
    gateway = HttpSmsGateway(url=url, token=token, timeout_s=TIMEOUT_S)
    await gateway.start()
    try:
        result = await gateway.send(message)
    finally:
        await gateway.close()
    return result.verdict, result.error, result.retry_after_s, result.definite


async def test_accepted_with_message_id_and_client_ref(devgateway: DevGateway) -> None:
    gateway = HttpSmsGateway(url=devgateway.url, token=TOKEN, timeout_s=1)
    await gateway.start()
    result = await gateway.send(sms("+79160000100", "ref-100"))
    again = await gateway.send(sms("+79160000100", "ref-100"))
    await gateway.close()
    assert result.verdict == Verdict.ACCEPTED and result.message_id
    assert again.message_id == result.message_id  # the gateway dropped the duplicate
    received = devgateway.call(lambda s: s.accepted["ref-100"])
    assert received.to == "+79160000100" and received.text == "Пароль: X"
    assert devgateway.call(lambda s: s.calls["ref-100"]) == 2
    assert devgateway.call(lambda s: s.duplicates) >= 1


@pytest.mark.parametrize(("step", "verdict", "error", "retry_after", "definite"), [
    ("500", Verdict.TRANSIENT, "http_500", None, True),
    ("503", Verdict.TRANSIENT, "http_503", None, True),
    ("429:7", Verdict.TRANSIENT, "http_429", 7.0, True),
    ("400", Verdict.PERMANENT, "http_400", None, False),
    # a time-out is not definite: the gateway may have accepted (DESIGN.md "SMS gateways: failover")
    (f"slow:{SLOW_S}", Verdict.TRANSIENT, "timeout", None, False),
    (f"hang:{SLOW_S}", Verdict.TRANSIENT, "timeout", None, False),
])
async def test_answers_are_classified(devgateway: DevGateway, step: str, verdict: Verdict,
                                      error: str, retry_after: float | None, definite: bool) -> None:
    to = f"+7916{abs(hash(step)) % 10**7:07d}"
    devgateway.script(to, [step])
    assert await send(devgateway.url, sms(to, f"ref-{step}")) == (verdict, error, retry_after, definite)


async def test_wrong_token_is_permanent_and_connection_refused_is_transient(devgateway: DevGateway) -> None:
    assert (await send(devgateway.url, sms("+79160000101", "r1"), token="wrong"))[:2] == (
        Verdict.PERMANENT, "http_401")
    verdict, error, _, definite = await send(f"http://127.0.0.1:{free_port()}/sms", sms("+79160000102", "r2"))
    assert verdict == Verdict.TRANSIENT and str(error).startswith("connection_")
    assert definite  # nothing was sent: the other gateway may take it


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(" 0.5 ") == 0.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after_seconds(None) is None
    # no wait beyond a day, and none that cannot be scheduled (an overflow was a crash)
    assert retry_after_seconds("1e12") == retry_after_seconds("inf") == 86_400.0
    assert retry_after_seconds("nan") is None


def replying(response: web.StreamResponse) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(_: web.Request) -> web.StreamResponse:
        return response
    return answer


@asynccontextmanager
async def answering(answer: Callable[[web.Request], Awaitable[web.StreamResponse]],
                    seen: list[str]) -> AsyncIterator[str]:
    """A gateway on loopback that records each request's body and gives ``answer``; its URL."""
    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(await request.text())
        return await answer(request)

    app = web.Application()
    app.router.add_post("/sms", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/sms"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed(status: int) -> None:
    """The body holds the number and the password: it goes to the configured URL only. A redirect
    is a definite failure (the gateway did not take it), so the other gateway may."""
    elsewhere: list[str] = []
    async with answering(replying(web.json_response({"message_id": "m-1"})), elsewhere) as target:
        redirect = web.Response(status=status, headers={"Location": target})
        seen: list[str] = []
        async with answering(replying(redirect), seen) as url:
            assert await send(url, sms("+79160000103", "r3")) == (
                Verdict.TRANSIENT, f"http_{status}", None, True)
    assert len(seen) == 1 and elsewhere == []


@pytest.mark.parametrize("message_id", ["m\x00-1", "m-\n1", "m" * 65, 42, ["m-1"]])
async def test_a_message_id_that_cannot_be_kept_is_not_taken_as_accepted(
        message_id: object, caplog: pytest.LogCaptureFixture) -> None:
    """A NUL would make every later write of the recorder's batch fail on PostgreSQL, and a
    report could never meet an id cut to 64 characters: like an answer with no id, it is not a
    definite failure (the gateway may have the message) and is retried under the same
    ``Idempotency-Key``."""
    seen: list[str] = []
    async with answering(replying(web.json_response({"message_id": message_id})), seen) as url:
        assert await send(url, sms("+79160000104", "r4")) == (
            Verdict.TRANSIENT, "bad_message_id", None, False)
    assert len(seen) == 1
    assert "message id that cannot be kept" in caplog.text


def email(to: str, code_id: str = "0b7a0c1e-0000-4000-8000-000000000001") -> OutgoingMessage:
    return OutgoingMessage(code_id=code_id, channel="email", to=to, text="Пароль: Z9\n", subject="Пароль")


async def test_smtp_accepted_message_has_headers_and_text(smtp: SmtpServer) -> None:
    gateway = SmtpEmailGateway(host="127.0.0.1", port=smtp.port, mail_from="selfcare@tv.example",
                               timeout_s=5)
    result = await gateway.send(email("one@example.ru"))
    assert result.verdict == Verdict.ACCEPTED
    [mail] = smtp.handler.to("one@example.ru")
    assert mail["From"] == "selfcare@tv.example" and mail["Subject"] == "Пароль"
    assert mail["Message-ID"] == "<0b7a0c1e-0000-4000-8000-000000000001@tv.example>"
    assert mail.get_content().replace("\r\n", "\n") == "Пароль: Z9\n"


@pytest.mark.parametrize(("answer", "verdict", "error"), [
    ("451 4.3.0 try later", Verdict.TRANSIENT, "smtp_451"),
    ("550 5.1.1 no such user", Verdict.PERMANENT, "smtp_550"),
])
async def test_smtp_replies_are_classified(smtp: SmtpServer, answer: str, verdict: Verdict, error: str) -> None:
    address = f"{answer[:3]}@example.ru"
    smtp.handler.scripts[address] = [answer]
    gateway = SmtpEmailGateway(host="127.0.0.1", port=smtp.port, mail_from="selfcare@tv.example",
                               timeout_s=5)
    result = await gateway.send(email(address))
    assert (result.verdict, result.error) == (verdict, error)
    assert smtp.handler.to(address) == []


async def test_smtp_server_away_is_transient() -> None:
    gateway = SmtpEmailGateway(host="127.0.0.1", port=free_port(), mail_from="s@tv.example", timeout_s=2)
    assert (await gateway.send(email("x@example.ru"))).verdict == Verdict.TRANSIENT


async def test_smtp_time_out_bounds_the_whole_session_not_each_reply() -> None:
    """``SMTP_TIMEOUT_S`` must stay below the delivery's lease: a relay answering each command
    in 1.2 s under a time-out of 2 s takes longer than that over a session (MAIL, RCPT and
    DATA: 3.6 s and more), and is given up at the time-out."""
    delay_s, timeout_s = 1.2, 2.0
    session_s = 3 * delay_s
    server = SmtpServer(handler=SlowSmtpHandler(delay_s=delay_s)).start()
    try:
        gateway = SmtpEmailGateway(host="127.0.0.1", port=server.port, mail_from="s@tv.example",
                                   timeout_s=timeout_s)
        started = time.monotonic()
        result = await gateway.send(email("slow@example.ru"))
        took = time.monotonic() - started
        assert (result.verdict, result.error) == (Verdict.TRANSIENT, "smtp_TimeoutError")
        # given up at the time-out (with room for a loaded machine), not after the session
        assert took < session_s - 0.4, took
        assert server.handler.to("slow@example.ru") == []
        # the same relay within a time-out that covers the session takes the message
        patient = SmtpEmailGateway(host="127.0.0.1", port=server.port, mail_from="s@tv.example",
                                   timeout_s=15.0)
        assert (await patient.send(email("slow@example.ru"))).verdict == Verdict.ACCEPTED
        assert len(server.handler.to("slow@example.ru")) == 1
    finally:
        server.stop()


@pytest.mark.parametrize("quit_answer", ["hang", "drop"])
async def test_smtp_message_accepted_by_the_relay_is_sent_whatever_quit_does(quit_answer: str) -> None:
    """250 to the message is the relay's acceptance: a QUIT that is never answered or a
    connection dropped on QUIT must not make it a failure (it would be emailed again)."""
    async with RawSmtpRelay(quit=quit_answer).running() as relay:
        gateway = SmtpEmailGateway(host="127.0.0.1", port=relay.port, mail_from="s@tv.example",
                                   timeout_s=TIMEOUT_S)
        started = time.monotonic()
        result = await gateway.send(email("one@example.ru"))
        took = time.monotonic() - started
    assert (result.verdict, result.message_id) == (
        Verdict.ACCEPTED, "0b7a0c1e-0000-4000-8000-000000000001@tv.example")
    assert len(relay.messages) == 1 and relay.quits == 1
    assert took < TIMEOUT_S + 0.5, took  # QUIT's wait stays within the session's bound


@pytest.mark.parametrize(("relay", "error"), [
    (RawSmtpRelay(greeting=b"HTTP/1.1 400 Bad Request\r\n"), "smtp_-1"),  # not SMTP: code -1
    (RawSmtpRelay(greeting=b"220 " + b"x" * 9000 + b"\r\n"), "smtp_-1"),  # over-long reply
    (RawSmtpRelay(mail_reply=b"354 go ahead\r\n"), "smtp_354"),  # a code out of place
], ids=["not_smtp", "over_long", "354_to_mail"])
async def test_smtp_reply_that_is_no_5xx_is_transient(relay: RawSmtpRelay, error: str) -> None:
    """Only a 5xx refuses the message for good (docs/notifier.md)."""
    async with relay.running():
        gateway = SmtpEmailGateway(host="127.0.0.1", port=relay.port, mail_from="s@tv.example",
                                   timeout_s=TIMEOUT_S)
        result = await gateway.send(email("one@example.ru"))
    assert (result.verdict, result.error) == (Verdict.TRANSIENT, error)
    assert relay.messages == []


async def test_smtp_envelope_recipient_is_the_destination_as_given() -> None:
    """A valid local part that looks like an RFC 2047 encoded word is sent as it is: the header
    parser would decode it into another mailbox (RCPT TO:<"boss@corp.example"@example.ru>).
    aiosmtpd decodes it on its side too, hence the raw relay."""
    address = "=?utf-8?q?boss=40corp.example?=@example.ru"
    async with RawSmtpRelay().running() as relay:
        gateway = SmtpEmailGateway(host="127.0.0.1", port=relay.port, mail_from="s@tv.example",
                                   timeout_s=TIMEOUT_S)
        result = await gateway.send(email(address))
    assert result.verdict == Verdict.ACCEPTED
    assert relay.rcpts == [f"<{address}>"]


@pytest.mark.parametrize("smtputf8", [False, True])
async def test_smtp_idn_domain_is_sent_in_its_ascii_form(smtputf8: bool) -> None:
    """``ivan@пример.рф`` (registration accepts it) goes out as ``ivan@xn--e1afmkfd.xn--p1ai``,
    in the envelope and the To header: a relay without SMTPUTF8 takes it too."""
    server = SmtpServer(smtputf8=smtputf8).start()
    try:
        gateway = SmtpEmailGateway(host="127.0.0.1", port=server.port, mail_from="s@tv.example",
                                   timeout_s=5)
        result = await gateway.send(email("ivan@пример.рф"))
        assert result.verdict == Verdict.ACCEPTED, result.error
        assert server.handler.rcpt_calls == {"ivan@xn--e1afmkfd.xn--p1ai": 1}
        [mail] = server.handler.to("ivan@xn--e1afmkfd.xn--p1ai")
        assert mail.get_content().replace("\r\n", "\n") == "Пароль: Z9\n"
    finally:
        server.stop()


async def test_smtp_non_ascii_local_part_needs_smtputf8() -> None:
    """``иван@пример.рф``: with SMTPUTF8 offered the local part goes as UTF-8 (the domain in
    ASCII form); a relay without it can never take the address, a permanent failure rather
    than retries until the code expires."""
    address, sent_as = "иван@пример.рф", "иван@xn--e1afmkfd.xn--p1ai"
    server = SmtpServer(smtputf8=True).start()
    try:
        gateway = SmtpEmailGateway(host="127.0.0.1", port=server.port, mail_from="s@tv.example",
                                   timeout_s=5)
        assert (await gateway.send(email(address))).verdict == Verdict.ACCEPTED
        assert server.handler.rcpt_calls == {sent_as: 1}
        assert len(server.handler.to(sent_as)) == 1
    finally:
        server.stop()
    plain = SmtpServer(smtputf8=False).start()
    try:
        gateway = SmtpEmailGateway(host="127.0.0.1", port=plain.port, mail_from="s@tv.example",
                                   timeout_s=5)
        result = await gateway.send(email(address))
        assert (result.verdict, result.error) == (Verdict.PERMANENT, "smtp_utf8_unsupported")
        assert plain.handler.rcpt_calls == {} and plain.handler.messages == []
    finally:
        plain.stop()
