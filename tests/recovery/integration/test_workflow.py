"""One real recovery worker (PostgreSQL) on the real broker: outcomes, limits, idempotency,
bad input, the password lifecycle over HTTP, lock-out, and no clear secrets on topics or logs.

Limits are shortened for the test (cool-down 3 s, 3 codes per destination, 5 requests per IP,
lock-out after 3 failures for 4 s); argon2 runs with its production parameters.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas.events import AccountStatus, TvProduct
from schemas.topics import CODE_ISSUED, CODE_REJECTED, CODE_REQUESTED, dlq_of
from services.common.crypto import code_aad
from tests.recovery.conftest import account_changed, make_keyring, new_mobile
from tests.recovery.integration.support import (
    BOOTSTRAP,
    feed_accounts,
    feed_requests,
    log_in,
    outcomes,
    password_of,
    post,
    prefix_of,
    raw_topic,
    requested,
    start_worker,
    wait_projected,
)
from tests.support.kafka import produce, read_all
from tests.support.workers import Worker

KEYRING = make_keyring()
SECRETS: set[str] = set()  # every password, phone and email of this module, for the last test


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Worker]:
    tmp: Path = tmp_path_factory.mktemp("recovery")
    w = start_worker(tmp, {
        "RECOVERY_DATABASE_URL": pg_url, "LIMIT_LOGIN_COOLDOWN_S": "3",
        "LIMIT_DESTINATION_MAX": "3", "LIMIT_IP_MAX": "5", "LOGIN_LOCKOUT_FAILURES": "3",
        "LOGIN_LOCKOUT_S": "4",
    })
    yield w
    w.stop()


def account(**kw: Any) -> tuple[Any, str]:
    mobile = kw.pop("mobile", None) or new_mobile()
    SECRETS.add(mobile)
    if kw.get("email"):
        SECRETS.add(kw["email"])
    return account_changed(KEYRING, mobile=mobile, **kw), mobile


async def feed(worker: Worker, events: list[Any]) -> None:
    await feed_accounts(worker, events)
    await wait_projected(worker.env["RECOVERY_DATABASE_URL"], [e.account_id for e in events])


def national(mobile: str) -> str:
    return mobile[2:]  # +7 916 123 45 67 → 9161234567


async def issue_one(worker: Worker, login: str, channel: str = "sms") -> dict[str, Any]:
    (rid,) = await feed_requests(worker, [requested(login, channel)])
    topic, body = (await outcomes(worker, [rid]))[rid]
    assert topic == CODE_ISSUED, body
    SECRETS.add(password_of(KEYRING, body))
    return body


async def test_every_outcome(worker: Worker) -> None:
    iptv, iptv_mobile = account(email="anna.petrova@example.ru", personal_account="700000000033")
    no_email, no_email_mobile = account()
    dead, dead_mobile = account(mobile_active=False)
    closed, closed_mobile = account(status=AccountStatus.CLOSED)
    cable, cable_mobile = account(product=TvProduct.LINEAR, personal_account="700000000011")
    sat, _ = account(product=TvProduct.SATELLITE, personal_account="700000000022")
    await feed(worker, [iptv, no_email, dead, closed, cable, sat])
    cases = {
        "iptv_sms": (requested("8 (" + iptv_mobile[2:5] + ") " + iptv_mobile[5:], locale="en"),
                     "issued"),
        "cable_by_account": (requested("7000 0000 0011", "sms"), "issued"),
        "sat_by_account": (requested("700000000022", "sms"), "issued"),
        "iptv_by_account": (requested("700000000033"), "unknown_login"),
        "cable_by_mobile": (requested(cable_mobile), "unknown_login"),
        "unknown": (requested("+7 916 000 00 00"), "unknown_login"),
        "closed": (requested(closed_mobile), "account_closed"),
        "no_email": (requested(no_email_mobile, "email"), "channel_unavailable"),
        "dead_mobile": (requested(dead_mobile), "channel_unavailable"),
        "neither_kind": (requested("123"), "invalid_request"),
    }
    ids = await feed_requests(worker, [req for req, _ in cases.values()])
    got = await outcomes(worker, ids)
    for (name, (_, expected)), rid in zip(cases.items(), ids, strict=True):
        topic, body = got[rid]
        kind = "issued" if topic == CODE_ISSUED else body["reason"]
        assert kind == expected, name
    _, issued = got[ids[0]]
    assert issued["account_id"] == str(iptv.account_id) and issued["locale"] == "en"
    assert issued["destination_masked"] == iptv.contacts.mobile_masked
    dest = KEYRING.decrypt(issued["destination_enc"],
                           aad=code_aad(issued["code_id"], "destination"))
    assert dest == iptv_mobile
    expires = datetime.fromisoformat(issued["expires_at"])
    assert 3500 < (expires - datetime.now(UTC)).total_seconds() <= 3600
    _, unavailable = got[ids[list(cases).index("no_email")]]
    assert unavailable["advice"] == "contact_support"
    assert unavailable["support_phone"] == "8 800 250-08-90"
    keys = {json.loads(r.value)["request_event_id"]: r.key
            for r in await raw_topic(worker, CODE_REJECTED)}
    assert keys[ids[-1]] == ids[-1].encode()
    issued_keys = {json.loads(r.value)["request_event_id"]: r.key
                   for r in await raw_topic(worker, CODE_ISSUED)}
    assert issued_keys[ids[0]] == str(iptv.account_id).encode()
    for _, body in got.values():
        if "password_enc" in body:
            SECRETS.add(password_of(KEYRING, body))


async def test_same_request_twice_issues_one_code(worker: Worker) -> None:
    acc, mobile = account()
    await feed(worker, [acc])
    req = requested(mobile)
    # same login: same partition, decided after the duplicates (no email: a fixed outcome)
    marker = requested(mobile, "email")
    ids = await feed_requests(worker, [req, req, marker], key="one-partition")
    got = await outcomes(worker, ids)
    assert got[ids[0]][0] == CODE_ISSUED, got[ids[0]]
    assert got[ids[2]][1]["reason"] == "channel_unavailable"
    SECRETS.add(password_of(KEYRING, got[ids[0]][1]))
    issued = [r for r in await raw_topic(worker, CODE_ISSUED)
              if json.loads(r.value)["request_event_id"] == ids[0]]
    rejected = [r for r in await raw_topic(worker, CODE_REJECTED)
                if json.loads(r.value)["request_event_id"] == ids[0]]
    assert len(issued) == 1 and rejected == []


async def test_limits(worker: Worker) -> None:
    one, one_mobile = account()
    shared = f"family.{uuid.uuid4().hex[:6]}@example.ru"
    family = [account(email=shared) for _ in range(4)]
    await feed(worker, [one] + [a for a, _ in family])
    cooldown = await feed_requests(worker, [requested(one_mobile), requested(one_mobile)],
                                   key="in-order")
    by_email = await feed_requests(worker, [requested(m, "email") for _, m in family])
    by_ip = await feed_requests(worker, [requested(f"+7 916 000 11 {i:02d}",
                                                   client_ip="198.51.100.7") for i in range(6)])
    got = await outcomes(worker, cooldown + by_email + by_ip)
    first, second = (got[i] for i in cooldown)
    assert first[0] == CODE_ISSUED
    assert second[1]["reason"] == "rate_limited" and 1 <= second[1]["retry_after_s"] <= 3
    email_kinds = sorted(got[i][1].get("reason", "issued") for i in by_email)
    assert email_kinds == ["issued", "issued", "issued", "rate_limited"]
    ip_kinds = sorted(got[i][1]["reason"] for i in by_ip)
    assert ip_kinds == ["rate_limited"] + ["unknown_login"] * 5
    for topic, body in got.values():
        if topic == CODE_ISSUED:
            SECRETS.add(password_of(KEYRING, body))


BAD_RECORDS: dict[str, bytes] = {
    "non_utf8": b"\xff\xfe\x00garbage",
    "not_json": b"login=8916&channel=sms",
    "json_array": b'[{"login": "89161234567", "channel": "sms"}]',
    "missing_field": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at":
                                 "2026-11-24T09:31:00Z", "channel": "sms"}).encode(),
    "wrong_type": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:31:00Z",
                              "login": 89161234567, "channel": "sms"}).encode(),
    "unknown_enum": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at":
                                "2026-11-24T09:31:00Z", "login": "89161234567",
                                "channel": "pigeon"}).encode(),
    "oversized": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at":
                             "2026-11-24T09:31:00Z", "login": "89161234567", "channel": "sms",
                             "pad": "x" * 70000}).encode(),
    "empty_login": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at":
                               "2026-11-24T09:31:00Z", "login": "", "channel": "sms"}).encode(),
    "letters_login": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at":
                                 "2026-11-24T09:31:00Z", "login": "ivanov", "channel": "sms"}
                                ).encode(),
    "login_10kb": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at":
                              "2026-11-24T09:31:00Z", "login": "8" * 10240, "channel": "sms"}
                             ).encode(),
    "wrong_types": json.dumps({"event_id": 5, "occurred_at": True, "login": ["8916"],
                               "channel": 1, "locale": {}}).encode(),
    "bad_ip": json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:31:00Z",
                          "login": "89161234567", "channel": "sms", "client_ip": "nope"}
                         ).encode(),
}


async def test_malformed_requests_go_to_the_dlq_and_the_rest_goes_on(worker: Worker) -> None:
    topic = prefix_of(worker) + CODE_REQUESTED
    await produce(BOOTSTRAP, topic, [(name.encode(), value) for name, value in BAD_RECORDS.items()])
    (good,) = await feed_requests(worker, [requested("+7 916 000 22 33")])
    dead = await read_all(BOOTSTRAP, topic + ".dlq",
                          until=lambda recs: len(recs) >= len(BAD_RECORDS), timeout_s=40)
    assert sorted(r.key for r in dead) == sorted(n.encode() for n in BAD_RECORDS)
    for rec in dead:
        assert rec.value == BAD_RECORDS[rec.key.decode()]
        assert rec.headers["dlq_original_topic"] == topic
        assert rec.headers["dlq_error_class"] in {"invalid_utf8", "invalid_json", "invalid_event",
                                                  "oversized_record"}
        assert "89161234567" not in rec.headers["dlq_error_message"]
    assert (await outcomes(worker, [good]))[good][1]["reason"] == "unknown_login"
    assert await raw_topic(worker, dlq_of("selfcare.recovery.requests-by-login.v1")) == []


async def test_password_lifecycle_over_http(worker: Worker) -> None:
    # (3 codes per destination: the last two go by email)
    acc, mobile = account(email=f"lifecycle.{uuid.uuid4().hex[:6]}@example.ru")
    await feed(worker, [acc])
    login = "8 " + national(mobile)
    first = password_of(KEYRING, await issue_one(worker, login))
    status, body = await log_in(worker, mobile, first)
    assert (status, json.loads(body)) == (200, {"account_id": str(acc.account_id)})
    assert (await log_in(worker, mobile, first))[0] == 200  # now the current password
    await asyncio.sleep(3.2)  # per-login cool-down
    second = password_of(KEYRING, await issue_one(worker, mobile))
    assert (await log_in(worker, login, first))[0] == 200  # still works while the new is pending
    assert (await log_in(worker, login, second))[0] == 200  # first use: it becomes the password
    assert (await log_in(worker, login, first))[0] == 401  # the old one stops working
    await asyncio.sleep(3.2)
    third = password_of(KEYRING, await issue_one(worker, mobile, "email"))
    await asyncio.sleep(3.2)
    fourth = password_of(KEYRING, await issue_one(worker, mobile, "email"))
    assert (await log_in(worker, login, third))[0] == 401  # voided by the newer code
    assert (await log_in(worker, login, fourth))[0] == 200
    assert (await log_in(worker, login, second))[0] == 401


async def test_lockout_and_its_expiry(worker: Worker) -> None:
    acc, mobile = account()
    await feed(worker, [acc])
    password = password_of(KEYRING, await issue_one(worker, mobile))
    bodies = set()
    for _ in range(3):
        status, body = await log_in(worker, mobile, "wrong-password")
        assert status == 401
        bodies.add(body)
    status, body = await log_in(worker, mobile, password)
    assert status == 401  # locked, even with the right password
    bodies.add(body)
    assert len(bodies) == 1
    await asyncio.sleep(4.5)
    assert (await log_in(worker, mobile, password))[0] == 200


async def test_http_answers_do_not_tell_whether_an_account_exists(worker: Worker) -> None:
    acc, mobile = account()
    await feed(worker, [acc])
    known = await post(worker, "/api/v1/code-requests", {"login": mobile, "channel": "sms"})
    unknown = await post(worker, "/api/v1/code-requests",
                         {"login": "+7 916 000 33 44", "channel": "sms"})
    assert known == unknown
    assert known[0] == 202 and json.loads(known[1]) == {
        "status": "accepted", "support_phone": "8 800 250-08-90",
        "message": "If the login exists, a password is on its way. If nothing arrives, call the support phone."}
    failures = {
        await log_in(worker, mobile, "not-the-password"),
        await log_in(worker, "+7 916 000 33 44", "not-the-password"),
        await log_in(worker, "700000000099", "whatever-else"),
        await log_in(worker, "12", "x"),
    }
    assert len(failures) == 1 and next(iter(failures))[0] == 401
    # the HTTP request really went through the workflow: the code was issued from the topic
    raw = [r.value or b"" for r in await raw_topic(worker, CODE_REQUESTED)]
    mine = [json.loads(v) for v in raw if mobile.encode() in v]
    assert len(mine) == 1 and mine[0]["client_ip"] == "127.0.0.1"
    topic, body = (await outcomes(worker, [mine[0]["event_id"]]))[mine[0]["event_id"]]
    assert topic == CODE_ISSUED
    SECRETS.add(password_of(KEYRING, body))


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"{not json", "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    (b'["login"]', "application/json", 400),
    (b'{"channel": "sms"}', "application/json", 400),
    (b'{"login": "ivanov", "channel": "sms"}', "application/json", 400),
    (b'{"login": "89161234567", "channel": "fax"}', "application/json", 400),
    (b'{"login": 89161234567, "channel": "sms"}', "application/json", 400),
    (json.dumps({"login": "89161234567", "channel": "sms", "pad": "x" * 5000}).encode(),
     "application/json", 413),
    (b'{"login": "89161234567", "channel": "sms"}', "text/plain", 415),
])
async def test_malformed_http_bodies(worker: Worker, body: bytes, content_type: str,
                                     status: int) -> None:
    for path in ("/api/v1/code-requests", "/api/v1/login"):
        got_status, got = await post(worker, path, body, content_type)
        if path == "/api/v1/login" and status == 400 and body.startswith(b'{"login"'):
            assert got_status in (400, 401)  # a login request has other required fields
            continue
        assert got_status == status, (path, got)
        answer = json.loads(got)
        assert answer["error"] and answer["message"]
        assert b"Traceback" not in got and b"89161234567" not in got


async def test_metrics(worker: Worker) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            worker.base_url + "/metrics") as resp:
        text_ = (await resp.read()).decode()
    assert 'recovery_codes_issued_total{channel="sms"}' in text_
    assert 'recovery_codes_rejected_total{reason="unknown_login"}' in text_
    assert 'recovery_logins_total{outcome="failure"}' in text_
    assert "recovery_argon2_seconds_bucket" in text_


async def test_no_password_phone_or_email_in_clear(worker: Worker) -> None:
    """Runs last: everything this module issued, read back raw from topics and the log."""
    assert len(SECRETS) > 20
    records = []
    for topic in (CODE_ISSUED, CODE_REJECTED, dlq_of(CODE_ISSUED)):
        records += await raw_topic(worker, topic)
    blobs = [r.value or b"" for r in records] + [r.key or b"" for r in records]
    blobs += [json.dumps(r.headers).encode() for r in records]
    log = worker.log_text()
    for secret in SECRETS:
        forms = {secret}
        if secret.startswith("+7"):
            forms |= {secret[1:], national(secret)}
        for form in forms:
            assert all(form.encode() not in blob for blob in blobs), "secret on a topic"
            assert form not in log, "secret in the log"
    assert re.search(r"(?<![\d.])\+?[78]?9\d{9}(?!\d)", log) is None, "phone-shaped text in the log"
