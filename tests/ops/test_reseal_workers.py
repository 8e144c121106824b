"""``selfcare-ops keys reseal`` end to end: real workers on the real broker.

Accounts are linked under contact key A; registration and recovery rotate to ``CONTACT_KEYS=B,A``;
the reseal re-publishes every account sealed with B; then a recovery worker that holds only B,
on a fresh database (it rebuilds its projection from the account topic), still serves every
account: "Get code" gives a ``CodeIssued`` for each.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.events import AccountChanged, CodeIssued
from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, CODE_REQUESTED, CONTRACT_LINKED
from services.common.crypto import DecryptError, Keyring, code_aad, contact_aad, generate_key, key_id
from services.ops.cli import app as ops_cli
from tests.support.kafka import create_topics, new_prefix, produce, read_all
from tests.support.workers import TEST_HASH_PEPPER, Worker, free_port, service_env

pytestmark = pytest.mark.kafka

KEY_A, KEY_B, DELIVERY = generate_key(), generate_key(), generate_key()
TOKEN = "ops-token-" + uuid.uuid4().hex
SUBSCRIBERS = [  # contract, personal account, product, mobile, email
    ("RS-1", "300000000001", "interactive", "+7 916 300-00-01", "one@example.ru"),
    ("RS-2", "300000000002", "linear", "+7 916 300-00-02", None),
    ("RS-3", "300000000003", "satellite", "+7 916 300-00-03", "three@example.ru"),
    ("RS-4", "300000000004", "interactive", "+7 916 300-00-04", None),
    ("RS-5", "300000000005", "linear", "+7 916 300-00-05", "five@example.ru"),
]


def link(contract: str, account: str, product: str, mobile: str, email: str | None) -> bytes:
    subscriber: dict[str, object] = {"full_name": "Петров Пётр Петрович", "mobile": mobile,
                                     "passport": {"series": "4510", "number": "555111"}}
    if email:
        subscriber["email"] = email
    return json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
        "contract_number": contract, "personal_account": account, "tv_product": product,
        "subscriber": subscriber, "mobile_active": True, "operator_id": "crm-op-1",
    }, ensure_ascii=False).encode()


def login_of(product: str, account: str, mobile: str) -> str:
    return mobile if product == "interactive" else account


class Stack:
    def __init__(self, bootstrap: str, prefix: str, var_dir: Path) -> None:
        self.bootstrap, self.prefix, self.var_dir = bootstrap, prefix, var_dir
        self.workers: list[Worker] = []
        self.registration_db = f"sqlite:///{var_dir / 'registration.db'}"

    def start(self, module: str, name: str, **extra: str) -> Worker:
        env = service_env(bootstrap=self.bootstrap, prefix=self.prefix, var_dir=self.var_dir,
                          extra={"HASH_PEPPER": TEST_HASH_PEPPER, "OPS_API_TOKEN": TOKEN,
                                 "REGISTRATION_LINK_PROCESS": "false", **extra})
        env.pop("SECRET_KEYS")  # each service gets its keys by purpose only
        worker = Worker(module=module, env=env, log_path=self.var_dir / "logs" / f"{name}.log",
                        web_port=free_port()).start(ready_timeout_s=90)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    s = Stack(kafka_bootstrap, prefix, tmp_path)
    try:
        yield s
    finally:
        s.stop_all()


def latest_accounts(records: list[object]) -> dict[str, AccountChanged]:
    latest: dict[str, AccountChanged] = {}
    for r in records:
        value = getattr(r, "value", None)
        if value:
            event = AccountChanged.model_validate_json(value)
            if event.contract_number.startswith("RS-"):
                latest[event.contract_number] = event
    return latest


async def test_after_a_reseal_a_recovery_holding_only_the_new_key_serves_every_account(
    stack: Stack,
) -> None:
    boot, prefix = stack.bootstrap, stack.prefix
    registration = stack.start("services.registration", "registration-a",
                               CONTACT_KEYS=KEY_A, REGISTRATION_DATABASE_URL=stack.registration_db)
    await produce(boot, prefix + CONTRACT_LINKED,
                  [(s[0].encode(), link(*s)) for s in SUBSCRIBERS])
    await read_all(boot, prefix + ACCOUNT_CHANGED, timeout_s=60,
                   until=lambda got: len(latest_accounts(got)) == len(SUBSCRIBERS))
    registration.stop()

    # rotation: B is the newest contact key, A still held
    registration = stack.start("services.registration", "registration-ba",
                               CONTACT_KEYS=f"{KEY_B},{KEY_A}",
                               REGISTRATION_DATABASE_URL=stack.registration_db)
    env = {"OPS_API_TOKEN": TOKEN, "REGISTRATION_OPS_URL": registration.base_url}
    result = CliRunner().invoke(ops_cli, ["keys", "reseal"], env=env)
    assert result.exit_code == 0, result.output
    assert f"accounts: {len(SUBSCRIBERS)}, resealed and re-published: {len(SUBSCRIBERS)}" \
        in result.output and key_id(Keyring.from_config(
            secret_keys=KEY_B, hash_pepper=TEST_HASH_PEPPER).keys[0]) in result.output
    again = CliRunner().invoke(ops_cli, ["keys", "reseal"], env=env)  # idempotent
    assert "resealed and re-published: 0" in again.output, again.output
    wrong = CliRunner().invoke(ops_cli, ["keys", "reseal"], env={**env, "OPS_API_TOKEN": "x" * 20})
    assert wrong.exit_code == 2 and "unauthorized" in wrong.output

    only_b = Keyring.from_config(secret_keys=KEY_B, hash_pepper=TEST_HASH_PEPPER)
    only_a = Keyring.from_config(secret_keys=KEY_A, hash_pepper=TEST_HASH_PEPPER)
    records = await read_all(boot, prefix + ACCOUNT_CHANGED, timeout_s=60, until=lambda got: all(
        e.version == 2 for e in latest_accounts(got).values()))
    for event in latest_accounts(records).values():  # what compaction keeps: the newest per key
        aad = contact_aad(str(event.account_id), "mobile")
        assert only_b.decrypt(event.contacts.mobile_enc, aad=aad).startswith("+7916300000")
        with pytest.raises(DecryptError):
            only_a.decrypt(event.contacts.mobile_enc, aad=aad)
    registration.stop()

    # a recovery worker that holds only B, on a fresh database, rebuilds from the topic
    recovery = stack.start("services.recovery", "recovery-b", CONTACT_KEYS=KEY_B,
                           DELIVERY_KEYS=DELIVERY, LIMIT_IP_MAX="1000",
                           RECOVERY_DATABASE_URL=f"sqlite:///{stack.var_dir / 'recovery-b.db'}")
    requests = {str(uuid.uuid4()): s for s in SUBSCRIBERS}
    await produce(boot, prefix + CODE_REQUESTED, [
        (None, json.dumps({"event_id": rid, "occurred_at": "2026-12-01T10:00:00Z",
                           "login": login_of(s[2], s[1], s[3]), "channel": "sms"}).encode())
        for rid, s in requests.items()])
    issued = await read_all(boot, prefix + CODE_ISSUED, timeout_s=90, until=lambda got: {
        str(CodeIssued.model_validate_json(r.value or b"").request_event_id) for r in got
    } >= set(requests))
    delivery = Keyring.from_config(secret_keys=DELIVERY, hash_pepper=TEST_HASH_PEPPER)
    by_request = {str(e.request_event_id): e for e in
                  (CodeIssued.model_validate_json(r.value or b"") for r in issued)}
    for rid, (_, _, _, mobile, _) in requests.items():
        event = by_request[rid]
        destination = delivery.decrypt(event.destination_enc, aad=code_aad(str(event.code_id),
                                                                           "destination"))
        assert destination == "+7" + "".join(ch for ch in mobile if ch.isdigit())[1:]
    assert "DecryptError" not in recovery.log_text()
