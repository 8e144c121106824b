"""Support's commands against the three services as real workers on the real broker.

``selfcare-ops login`` for each "call support" situation (no email linked, mobile out of service,
no channel at all) shows the reason, the last requests with outcome and delivery, and the
lock-out state, with no full contact. ``selfcare-ops identify`` answers only on a full match,
and registration's log names the operator but never the passport nor the name.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from deploy.local_stack import LocalStack
from schemas.topics import CODE_REQUESTED, CONTRACT_LINKED
from services.common.crypto import generate_key
from services.ops.cli import app as ops_cli
from services.ops.ops_api import OpsApiError, call
from tests.support.kafka import create_topics, new_prefix, produce
from tests.support.workers import TEST_HASH_PEPPER, Worker, free_port, service_env

pytestmark = pytest.mark.kafka
TOKEN = "ops-" + uuid.uuid4().hex
NAME, PASSPORT = "Ёлкина Алёна Сергеевна", ("4510", "765432")


def link(contract: str, account: str, product: str, mobile: str, email: str | None,
         mobile_active: bool) -> bytes:
    subscriber: dict[str, object] = {"full_name": NAME, "mobile": mobile,
                                     "passport": {"series": PASSPORT[0], "number": PASSPORT[1]}}
    if email:
        subscriber["email"] = email
    return json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
        "contract_number": contract, "personal_account": account, "tv_product": product,
        "subscriber": subscriber, "mobile_active": mobile_active, "operator_id": "crm-op-3",
    }, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    s = LocalStack(
        bootstrap=kafka_bootstrap, var_dir=tmp_path_factory.mktemp("support"), topic_prefix=prefix,
        ports={"registration": free_port(), "recovery": free_port(), "notifier": free_port()},
        extra_env={"CONTACT_KEYS": generate_key(), "DELIVERY_KEYS": generate_key(),
                   "HASH_PEPPER": TEST_HASH_PEPPER, "OPS_API_TOKEN": TOKEN,
                   "LIMIT_LOGIN_COOLDOWN_S": "1", "REGISTRATION_LINK_PROCESS": "false"},
    )
    s.start()
    try:
        asyncio.run(produce(kafka_bootstrap, prefix + CONTRACT_LINKED, [
            (b"SP-1", link("SP-1", "600000000001", "interactive", "+7 916 500-00-01", None, True)),
            (b"SP-2", link("SP-2", "600000000002", "linear", "+7 916 500-00-02",
                           "alena@example.ru", False)),
            (b"SP-3", link("SP-3", "600000000003", "satellite", "+7 916 500-00-03", None, False)),
        ]))
        yield s
    finally:
        s.stop()


def ops_env(stack: LocalStack, token: str) -> dict[str, str]:
    return {"OPS_API_TOKEN": token, "REGISTRATION_OPS_URL": stack.url("registration"),
            "RECOVERY_OPS_URL": stack.url("recovery"), "NOTIFIER_OPS_URL": stack.url("notifier")}


def ops(stack: LocalStack, *args: str, token: str = TOKEN, answers: str | None = None) -> Result:
    return CliRunner().invoke(ops_cli, list(args), env=ops_env(stack, token), input=answers)


def eventually(stack: LocalStack, login: str, *wanted: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        out = ops(stack, "login", login).output
        if all(w in out for w in wanted):
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{wanted} not in:\n{out}")
        time.sleep(0.5)


def request(stack: LocalStack, login: str, channel: str) -> None:
    body = {"event_id": str(uuid.uuid4()), "occurred_at": "2026-12-01T10:00:00Z",
            "login": login, "channel": channel}
    asyncio.run(produce(stack.bootstrap, stack.topic_prefix + CODE_REQUESTED,
                        [(None, json.dumps(body).encode())]))


def test_no_email_linked_shows_its_reason_requests_and_delivery(stack: LocalStack) -> None:
    eventually(stack, "8 916 500-00-01", "logs in by")
    request(stack, "+7 916 500-00-01", "email")
    time.sleep(1.2)  # the per-login cool-down applies to issued codes only, but keep them apart
    request(stack, "89165000001", "sms")
    out = eventually(stack, "8 (916) 500-00-01", "rejected channel_unavailable", "delivery: sent")
    assert "interactive TV, active), logs in by mobile" in out
    assert "email  NOT usable: no email linked" in out
    assert "sms    usable" in out
    assert "lock-out: open (0 failed logins in a row)" in out
    assert "to +7******0001" in out and "1 attempt(s)" in out
    assert "9165000001" not in out  # masked only
    lines = out.splitlines()
    newest = [i for i, line in enumerate(lines) if "issued" in line]
    older = [i for i, line in enumerate(lines) if "rejected channel_unavailable" in line]
    assert newest and older and newest[0] < older[0]  # newest first
    as_json = json.loads(ops(stack, "login", "+79165000001", "--json").output)
    assert [r["outcome"] for r in as_json["requests"]] == ["issued", "rejected"]
    assert as_json["channels"]["email"] == {"usable": False, "reason": "no_email_linked"}


def test_mobile_out_of_service_shows_its_reason(stack: LocalStack) -> None:
    eventually(stack, "6000 0000 0002", "logs in by")
    request(stack, "600000000002", "sms")
    out = eventually(stack, "600000000002", "rejected channel_unavailable")
    assert "linear TV, active), logs in by personal account" in out
    assert "sms    NOT usable: mobile out of service" in out
    assert "email  usable" in out and "a*****a@example.ru" in out
    assert "alena@" not in out and "9165000002" not in out


def test_no_channel_at_all_says_call_support(stack: LocalStack) -> None:
    out = eventually(stack, "600000000003", "logs in by")
    assert "sms    NOT usable: mobile out of service" in out
    assert "email  NOT usable: no email linked" in out
    assert "no channel works: the subscriber must call support" in out
    unknown = ops(stack, "login", "+7 999 000-00-00").output
    assert "no account uses it as its login" in unknown


def test_ops_routes_need_the_token(stack: LocalStack) -> None:
    wrong = ops_env(stack, "wrong-token-0123456789")
    routes = {  # each service's routes, called directly
        ("registration", "/ops/v1/keys/reseal"): {},
        ("registration", "/ops/v1/identify"): {"operator": "op-42", "contract": "SP-2",
                                               "passport": "4510 765432", "full_name": NAME},
        ("recovery", "/ops/v1/login"): {"login": "600000000003"},
        ("notifier", "/ops/v1/deliveries"): {"code_ids": [str(uuid.uuid4())]},
    }
    for (service, path), body in routes.items():
        with pytest.raises(OpsApiError, match=f"^{service}: unauthorized"):
            call(service, path, body, env=wrong)
    # the same read-only routes answer the right token
    assert call("recovery", "/ops/v1/login", {"login": "600000000003"}, env=ops_env(stack, TOKEN))[0] == 200
    assert call("notifier", "/ops/v1/deliveries", {"code_ids": []}, env=ops_env(stack, TOKEN)) == (
        200, {"deliveries": {}})
    # and the CLI says so
    result = ops(stack, "login", "600000000003", token="wrong-token-0123456789")
    assert result.exit_code == 2 and "recovery: unauthorized" in result.output
    refused = ops(stack, "identify", "--contract", "SP-2", "--passport", "4510 765432",
                  "--name", NAME, "--operator", "op-42", token="wrong-token-0123456789")
    assert refused.exit_code == 2 and "registration: unauthorized" in refused.output


def test_identify_confirms_only_a_full_match_and_logs_no_identity(stack: LocalStack) -> None:
    eventually(stack, "600000000002", "logs in by")
    ok = ops(stack, "identify", "--contract", "SP-2", "--passport", "4510 765432",
             "--name", "ЕЛКИНА  алена сергеевна", "--operator", "op-42")
    assert ok.exit_code == 0, ok.output
    assert "confirmed" in ok.output and "personal account number: 600000000002" in ok.output
    assert "login to use: 600000000002" in ok.output
    by_mobile = ops(stack, "identify", "--mobile", "8 916 500-00-01", "--passport", "4510765432",
                    "--name", NAME, "--operator", "op-42")
    assert "login to use: +7******0001" in by_mobile.output, by_mobile.output
    # passport and name left out of the command line (ps, shell history): asked for, the
    # passport not echoed
    asked = ops(stack, "identify", "--contract", "SP-1", "--operator", "op-42",
                answers=f"4510 765432\n{NAME}\n")
    assert asked.exit_code == 0 and "login to use: +7******0001" in asked.output, asked.output
    assert "765432" not in asked.output
    wrong = [
        ops(stack, "identify", "--contract", "SP-2", "--passport", "4510 765433", "--name", NAME,
            "--operator", "op-42"),
        ops(stack, "identify", "--contract", "SP-2", "--passport", "4510 765432",
            "--name", "Ёлкина Алла Сергеевна", "--operator", "op-42"),
        ops(stack, "identify", "--contract", "SP-404", "--passport", "4510 765432", "--name", NAME,
            "--operator", "op-42"),
    ]
    assert [(r.exit_code, r.output) for r in wrong] == [(1, "not confirmed\n")] * 3
    missing = ops(stack, "identify", "--contract", "SP-2", "--passport", "4510 765432",
                  "--name", NAME)
    assert missing.exit_code == 2 and "--operator" in missing.output
    log = (stack.var_dir / "logs" / "registration.log").read_text().lower()
    assert log.count('"operator": "op-42"') == 6
    for secret in ("765432", "ёлкин", "елкин", "алёна", "алена", "алла"):
        assert secret not in log, secret


def test_without_a_token_outside_local_mode_there_are_no_ops_routes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    env = service_env(bootstrap=kafka_bootstrap, prefix=prefix, var_dir=tmp_path,
                      extra={"REGISTRATION_LINK_PROCESS": "false"})
    env.pop("OPS_API_TOKEN", None)
    env.pop("SELFCARE_ENV", None)
    worker = Worker(module="services.registration", env=env, log_path=tmp_path / "reg.log",
                    web_port=free_port()).start(ready_timeout_s=90)
    try:
        result = CliRunner().invoke(ops_cli, ["keys", "reseal"], env={
            "OPS_API_TOKEN": TOKEN, "REGISTRATION_OPS_URL": worker.base_url})
        assert result.exit_code == 2 and "no ops route" in result.output
    finally:
        worker.stop()
