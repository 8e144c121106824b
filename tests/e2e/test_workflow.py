"""The whole chain through the public contract only: a Kafka producer acting as the CRM, the
recovery HTTP API acting as the portal, a real SMS gateway (aiohttp) and SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from deploy.local_stack import LocalStack
from schemas.events import CodeRejected, CodeRequested
from schemas.topics import ACCOUNT_CHANGED, CODE_REJECTED, CODE_REQUESTED, CONTRACT_LINKED, topic_specs
from services.ops.cli import app as ops_cli
from tests.support.kafka import create_topics, new_prefix, produce, read_all
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS, free_port

pytestmark = pytest.mark.kafka
PASSWORD = re.compile(r":\s*([A-Za-z0-9]{8,})")


def linked(contract: str, account: str, product: str, mobile: str, email: str | None,
           mobile_active: bool = True) -> bytes:
    subscriber: dict[str, object] = {"full_name": "Иванов Иван Иванович", "mobile": mobile,
                                     "passport": {"series": "4510", "number": "987123"}}
    if email:
        subscriber["email"] = email
    return json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
        "contract_number": contract, "personal_account": account, "tv_product": product,
        "subscriber": subscriber, "mobile_active": mobile_active, "operator_id": "crm-op-17",
    }, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    var_dir = tmp_path_factory.mktemp("e2e")
    s = LocalStack(
        bootstrap=kafka_bootstrap, var_dir=var_dir, topic_prefix=prefix,
        ports={"registration": free_port(), "recovery": free_port(), "notifier": free_port()},
        extra_env={"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
                   "LIMIT_LOGIN_COOLDOWN_S": "1", "SUPPORT_PHONE": "8 800 250-08-90"},
    )
    s.start()
    try:  # a failure below stops the services too
        asyncio.run(produce(kafka_bootstrap, prefix + CONTRACT_LINKED, [
            (b"E2E-1", linked("E2E-1", "100000000101", "interactive", "+7 916 200-00-01", "anna@example.ru")),
            (b"E2E-2", linked("E2E-2", "500000000202", "linear", "8 (903) 200-00-02", None)),
            (b"E2E-3", linked("E2E-3", "700000000303", "satellite", "+7 925 200 00 03", "sat@example.ru",
                              mobile_active=False)),
        ]))
        wait_for_projection(s, 3)  # registration → AccountChanged → recovery's projection
        yield s
    finally:
        s.stop()


def wait_for_projection(stack: LocalStack, accounts: int, timeout_s: float = 60.0) -> None:
    """Until recovery has projected ``accounts`` AccountChanged records (its own metric)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(stack.url("recovery") + "/metrics", timeout=5) as r:
            text = r.read().decode()
        done = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "recovery_events_consumed_total"
            and sample.labels.get("outcome") == "processed"
            and sample.labels.get("topic", "").endswith(ACCOUNT_CHANGED)
        )
        if done >= accounts:
            return
        time.sleep(0.2)
    raise TimeoutError(f"recovery did not project {accounts} accounts in {timeout_s} s")


async def post(stack: LocalStack, path: str, body: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.post(stack.url("recovery") + path, json=body,
                                                          headers=stack.api_headers()) as r:
        return r.status, await r.read()


def sms_to(stack: LocalStack, e164: str) -> list[str]:
    assert stack.sms_gateway is not None
    return list(stack.sms_gateway.call(lambda s: [m.text for m in s.accepted.values() if m.to == e164]))


async def wait_for(predicate, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError("condition not met")


async def test_sms_code_then_login_with_it(stack: LocalStack) -> None:
    status, body = await post(stack, "/api/v1/code-requests", {"login": "8 (916) 200-00-01", "channel": "sms"})
    assert status == 202
    texts = await wait_for(lambda: sms_to(stack, "+79162000001"))
    password = PASSWORD.search(texts[-1]).group(1)  # type: ignore[union-attr]
    assert "Пароль" in texts[-1]
    status, body = await post(stack, "/api/v1/login", {"login": "+7 916 200 00 01", "password": password})
    assert status == 200 and "account_id" in json.loads(body)
    status, _ = await post(stack, "/api/v1/login", {"login": "+7 916 200 00 01", "password": password + "x"})
    assert status == 401
    # the new password's first use is told to every linked contact: the mobile and the email
    notices = await wait_for(lambda: [t for t in sms_to(stack, "+79162000001") if "8 800 250-08-90" in t
                                      and not PASSWORD.search(t)])
    assert len(notices) == 1 and "изменён" in notices[0]
    assert stack.smtp is not None
    smtp = stack.smtp
    mails = await wait_for(lambda: [m for m in smtp.messages if "anna@example.ru" in m.to
                                    and "изменён" in m.subject])
    assert len(mails) == 1
    # logging in again with the same password is no change: no second notice
    assert (await post(stack, "/api/v1/login", {"login": "+7 916 200 00 01", "password": password}))[0] == 200
    await asyncio.sleep(2)
    assert len([t for t in sms_to(stack, "+79162000001") if "изменён" in t]) == 1


async def test_email_channel_for_a_linear_subscriber_is_unavailable_but_sms_works(stack: LocalStack) -> None:
    status, _ = await post(stack, "/api/v1/code-requests", {"login": "5000 0000 0202", "channel": "sms"})
    assert status == 202
    texts = await wait_for(lambda: sms_to(stack, "+79032000002"))
    password = PASSWORD.search(texts[-1]).group(1)  # type: ignore[union-attr]
    assert (await post(stack, "/api/v1/login", {"login": "500000000202", "password": password}))[0] == 200


async def test_email_delivery(stack: LocalStack) -> None:
    await asyncio.sleep(1.2)  # the per-login cool-down of the first test
    status, _ = await post(stack, "/api/v1/code-requests",
                           {"login": "+79162000001", "channel": "email", "locale": "en"})
    assert status == 202
    assert stack.smtp is not None
    mails = await wait_for(lambda: [m for m in stack.smtp.messages  # type: ignore[union-attr]
                                    if "anna@example.ru" in m.to and PASSWORD.search(m.body)])
    password = PASSWORD.search(mails[-1].body).group(1)  # type: ignore[union-attr]
    assert (await post(stack, "/api/v1/login", {"login": "89162000001", "password": password}))[0] == 200


async def test_channel_unavailable_says_call_support_and_sends_nothing(stack: LocalStack) -> None:
    before_sms = sms_to(stack, "+79252000003")
    status, _ = await post(stack, "/api/v1/code-requests", {"login": "7000 0000 0303", "channel": "sms"})
    assert status == 202
    prefix = stack.topic_prefix
    rejected = await read_all(stack.bootstrap, prefix + CODE_REJECTED, timeout_s=30, until=lambda got: any(
        CodeRejected.model_validate_json(r.value or b"").reason == "channel_unavailable" for r in got))
    reasons = [CodeRejected.model_validate_json(r.value or b"") for r in rejected]
    unavailable = [r for r in reasons if r.reason == "channel_unavailable"]
    assert unavailable[0].advice == "contact_support"
    assert unavailable[0].support_phone == "8 800 250-08-90"
    await asyncio.sleep(1)
    assert sms_to(stack, "+79252000003") == before_sms == []


async def test_unknown_login_gets_the_same_answer_and_no_message(stack: LocalStack) -> None:
    known = await post(stack, "/api/v1/code-requests", {"login": "7000 0000 0303", "channel": "email"})
    unknown = await post(stack, "/api/v1/code-requests", {"login": "+7 999 123-45-67", "channel": "sms"})
    assert known == unknown
    rejected = await read_all(stack.bootstrap, stack.topic_prefix + CODE_REJECTED, timeout_s=30,
                              until=lambda got: any(b"unknown_login" in (r.value or b"") for r in got))
    assert rejected
    await asyncio.sleep(1)
    assert sms_to(stack, "+79991234567") == []


async def test_trace_shows_the_timeline_of_a_request(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    await asyncio.sleep(1.2)
    await post(stack, "/api/v1/code-requests", {"login": "+7 916 200-00-01", "channel": "sms"})
    requests = await read_all(stack.bootstrap, stack.topic_prefix + CODE_REQUESTED, timeout_s=30,
                              until=lambda got: any(b"+7 916 200-00-01" in (r.value or b"") for r in got))
    ours = [CodeRequested.model_validate_json(r.value or b"") for r in requests
            if b"+7 916 200-00-01" in (r.value or b"")]
    monkeypatch.setenv("TOPIC_PREFIX", stack.topic_prefix)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap)
    runner = CliRunner()

    deadline = time.monotonic() + 30
    steps: list[str] = []
    while time.monotonic() < deadline and "sent" not in steps:
        # the CLI runs its own event loop: call it from a thread
        result = await asyncio.to_thread(runner.invoke, ops_cli, ["trace", str(ours[0].event_id)])
        steps = [line.split()[1] for line in result.output.strip().splitlines()] if result.exit_code == 0 else []
        await asyncio.sleep(0.3)
    assert steps[:3] == ["requested", "issued", "sent"], result.output
    assert "+79162000001" not in result.output and "200-00-01" not in result.output
    assert "+7******0001" in result.output


def test_nothing_personal_or_secret_in_clear_on_our_topics_or_in_logs(stack: LocalStack) -> None:
    secrets_ = [b"+79162000001", b"79162000001", b"anna@example.ru", b"+79032000002", b"sat@example.ru",
                "Иванов".encode(), b"4510987123", b"4510 987123", b"200-00-01", b"200 00 03"]
    assert stack.sms_gateway is not None
    texts = stack.sms_gateway.call(lambda s: [m.text for m in s.accepted.values()])
    passwords = [found.group(1).encode() for t in texts if (found := PASSWORD.search(t))]
    assert passwords
    inbound = {"crm.contract.linked.v1", "crm.contract.terminated.v1", "crm.contract.erased.v1",
               "selfcare.code.requested.v1",
               "selfcare.recovery.requests-by-login.v1"}
    ours = [s.name for s in topic_specs() if s.name not in inbound and not s.name.endswith(".dlq")]
    for topic in ours:
        records = asyncio.run(read_all(stack.bootstrap, stack.topic_prefix + topic, idle_s=0.5))
        raw = b"".join((r.key or b"") + (r.value or b"") + json.dumps(r.headers).encode() for r in records)
        for secret in secrets_ + passwords:
            assert secret not in raw, f"{secret!r} in clear on {topic}"
    for log in Path(stack.var_dir, "logs").glob("*.log"):
        text = log.read_bytes()
        for secret in secrets_ + passwords:
            assert secret not in text, f"{secret!r} in clear in {log.name}"


def test_health_and_metrics_of_every_service(stack: LocalStack) -> None:
    import urllib.request

    expected = {
        "registration": ["registration_events_consumed_total", "registration_commands_total",
                         "registration_dlq_records_total", "registration_processing_lag_seconds"],
        "recovery": ["recovery_codes_issued_total", "recovery_codes_rejected_total",
                     "recovery_events_consumed_total", "recovery_logins_total"],
        "notifier": ["notifier_deliveries_total", "notifier_gateway_request_seconds_bucket",
                     "notifier_events_consumed_total"],
    }
    for service, names in expected.items():
        base = stack.url(service)
        with urllib.request.urlopen(base + "/livez", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
            body = json.loads(r.read())
            assert r.status == 200 and body["ready"] is True and body["checks"]["kafka_assigned"]
        with urllib.request.urlopen(base + "/readyz/http", timeout=5) as r:
            body = json.loads(r.read())
            assert r.status == 200 and body == {"ready": True, "checks": {"database": True}}
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        for name in names:
            assert f"# HELP {name.removesuffix('_bucket')}" in text, f"{service}: {name} missing"
        for leaked in ["7916200", "anna@", "E2E-1", "@example.ru"]:
            assert leaked not in text
        assert not re.search(r'="[0-9a-f]{8}-[0-9a-f]{4}-', text), f"{service}: an id as a label"
        if service == "notifier":
            continue  # it consumes only once codes are requested (earlier tests of this module)
        # what the fixture's contract links did shows up as samples
        consumed = [line for line in text.splitlines() if line.startswith(f"{service}_events_consumed_total{{")]
        assert any('outcome="processed"' in line and float(line.split()[-1]) > 0 for line in consumed), consumed
