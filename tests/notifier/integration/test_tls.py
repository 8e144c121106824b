"""Transport security to the gateways: an ``https`` SMS gateway checked against a configured CA
file, and SMTP with STARTTLS and login, against real servers with a generated CA."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.devgateway import DevGateway
from services.common.settings import ConfigError
from services.notifier.adapters.sms_http import HttpSmsGateway
from services.notifier.adapters.smtp_email import SmtpEmailGateway
from services.notifier.bootstrap import warn_plaintext
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import Verdict
from services.notifier.settings import NotifierSettings
from tests.notifier.smtp import PasswordCheck, SmtpServer
from tests.notifier.tls import Pki, make_pki

SMS = OutgoingMessage(code_id="0f5c3c0a-0b8e-4c5f-8a55-5b0c1b1d7a21", channel="sms", to="+79161234567",
                      text="Пароль для личного кабинета: K7M3P9Q2WX. Никому его не сообщайте.")
MAIL = OutgoingMessage(code_id="7b0c1f0e-5a53-4a43-9a59-2b0d7f0c9a11", channel="email",
                       to="ivanov@example.ru", text="Your password: K7M3P9Q2WX", subject="Password")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def https_gateway(pki: Pki) -> Iterator[DevGateway]:
    gateway = DevGateway(token="t", ssl_context=pki.server_context()).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def smtps(pki: Pki) -> Iterator[tuple[SmtpServer, PasswordCheck]]:
    auth = PasswordCheck(username="selfcare", password="s3cret-relay")
    server = SmtpServer(tls_context=pki.server_context(), auth=auth).start()
    yield server, auth
    server.stop()


async def test_https_gateway_with_the_configured_ca_file(https_gateway: DevGateway, pki: Pki) -> None:
    assert https_gateway.url.startswith("https://")
    gateway = HttpSmsGateway(url=https_gateway.url, token="t", ca_file=str(pki.ca_file))
    try:
        result = await gateway.send(SMS)
    finally:
        await gateway.close()
    assert result.verdict == Verdict.ACCEPTED
    assert https_gateway.call(lambda s: s.calls[SMS.code_id]) == 1


async def test_https_gateway_not_trusted_without_the_ca_file(https_gateway: DevGateway) -> None:
    gateway = HttpSmsGateway(url=https_gateway.url, token="t")  # the system store: unknown CA
    try:
        result = await gateway.send(SMS)
    finally:
        await gateway.close()
    assert result.verdict == Verdict.TRANSIENT and result.definite and (result.error or "").startswith("tls_")
    assert https_gateway.call(lambda s: len(s.calls)) == 0  # nothing reached the gateway


async def test_smtp_with_starttls_and_login(smtps: tuple[SmtpServer, PasswordCheck], pki: Pki) -> None:
    server, auth = smtps
    gateway = SmtpEmailGateway(host="127.0.0.1", port=server.port, mail_from="selfcare@tv.example",
                               username="selfcare", password="s3cret-relay", starttls=True,
                               ca_file=str(pki.ca_file), timeout_s=5)
    result = await gateway.send(MAIL)
    assert result.verdict == Verdict.ACCEPTED
    assert auth.logins == [("selfcare", True)]  # logged in, over TLS
    [mail] = server.handler.to("ivanov@example.ru")
    assert "K7M3P9Q2WX" in mail.get_content()


@pytest.mark.parametrize("change", ["no_starttls", "no_ca_file", "wrong_password"])
async def test_smtp_refuses_what_is_not_secured_or_not_authenticated(
        smtps: tuple[SmtpServer, PasswordCheck], pki: Pki, change: str) -> None:
    server, auth = smtps
    gateway = SmtpEmailGateway(
        host="127.0.0.1", port=server.port, mail_from="selfcare@tv.example", username="selfcare",
        password="wrong" if change == "wrong_password" else "s3cret-relay",
        starttls=change != "no_starttls", ca_file=None if change == "no_ca_file" else str(pki.ca_file),
        timeout_s=5,
    )
    result = await gateway.send(MAIL)
    assert result.verdict == Verdict.TRANSIENT  # a set-up to fix, not a reason to drop the code
    assert server.handler.messages == [] and auth.logins == []


def test_plaintext_transports_are_warned_about_outside_local_mode(
        tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    base = {"SECRET_KEYS": "", "SELFCARE_ENV": "local", "SELFCARE_VAR_DIR": str(tmp_path)}
    local = NotifierSettings.from_env({**base, "SMS_GATEWAY_URL": "http://127.0.0.1:1/sms"})
    secure = NotifierSettings.from_env({**base, "SMS_GATEWAY_URL": "https://gw.example/sms",
                                        "SMTP_STARTTLS": "true", "SMS_GATEWAY_CA_FILE": str(pki.ca_file)})
    assert local.plaintext_transports() == ["SMS_GATEWAY_URL", "SMTP (SMTP_STARTTLS off)"]
    assert secure.plaintext_transports() == []
    with caplog.at_level(logging.WARNING, logger="services.notifier.bootstrap"):
        warn_plaintext(local)  # local mode: quiet
        assert caplog.records == []
        warn_plaintext(NotifierSettings(**{**local.__dict__, "local_mode": False}))
    assert len(caplog.records) == 2 and "plaintext" in caplog.records[0].getMessage()
    with pytest.raises(ConfigError):
        NotifierSettings.from_env({**base, "SMS_GATEWAY_CA_FILE": str(tmp_path / "missing.pem")})
