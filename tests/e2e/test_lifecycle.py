"""The subscriber's lifecycle through real workers, the real broker, SQLite databases, a real SMS
gateway: a new holder loses the old password; far-future events are refused; an erasure leaves
no personal data in any database row nor in the latest state of the account topic.

What the erasure scan allows (docs/registration.md, "Erasure"): ids (contract number, account
id, event and code ids) and keyed hashes. ``selfcare.code.issued.v1``, ``selfcare.password.changed.v1``
(keyed by the account id) and ``selfcare.notification.status.v1`` (keyed by the code id) hold
sealed / masked destinations; they are compacted as well as deleted, and the test reads the
latest record of each key (what compaction keeps): the erased account's keys end in tombstones.
Of our other topics only recovery's re-keyed copy of the inbound requests may keep something
(the login as typed), until its 24 h retention ends.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.local_stack import LocalStack
from schemas.events import AccountChanged, CodeIssued
from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REJECTED,
    CODE_REQUESTED,
    CONTRACT_ERASED,
    CONTRACT_LINKED,
    CONTRACT_REJECTED,
    NOTIFICATION_STATUS,
    PASSWORD_CHANGED,
    topic_specs,
)
from services.common.masking import mask_email, mask_phone
from tests.support.kafka import Consumed, create_topics, new_prefix, produce, read_all
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS, free_port

pytestmark = pytest.mark.kafka
PASSWORD = re.compile(r":\s*([A-Za-z0-9]{8,})")
INBOUND = {"crm.contract.linked.v1", "crm.contract.terminated.v1", "crm.contract.erased.v1",
           "selfcare.code.requested.v1"}
# ours, holding sealed / masked destinations: compacted as well as deleted, and an erasure
# tombstones their keys (the account id; each code id)
SEALED_OR_MASKED = {"selfcare.code.issued.v1", "selfcare.notification.status.v1",
                    "selfcare.password.changed.v1"}
# recovery's re-keyed copy of the portal's CodeRequested: the login as typed, like its inbound
# original, until the retention ends (24 h); DESIGN allows it for topics derived from inbound ones
INBOUND_COPY = {"selfcare.recovery.requests-by-login.v1"}


def stamp(minutes: int) -> str:
    return f"2026-11-25T{10 + minutes // 60:02d}:{minutes % 60:02d}:00Z"


def linked(contract: str, mobile: str, *, email: str | None = None, minutes: int = 0,
           name: str = "Сидоров Семён Семёнович", passport: str = "4512 777888",
           occurred_at: str | None = None) -> bytes:
    series, number = passport.split()
    subscriber: dict[str, Any] = {"full_name": name, "mobile": mobile,
                                  "passport": {"series": series, "number": number}}
    if email:
        subscriber["email"] = email
    return json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": occurred_at or stamp(minutes),
        "contract_number": contract, "personal_account": "3300" + mobile[-8:].replace("-", "0"),
        "tv_product": "interactive", "subscriber": subscriber, "mobile_active": True,
    }, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    s = LocalStack(
        bootstrap=kafka_bootstrap, var_dir=tmp_path_factory.mktemp("lifecycle"), topic_prefix=prefix,
        ports={"registration": free_port(), "recovery": free_port(), "notifier": free_port()},
        extra_env={"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
                   "LIMIT_LOGIN_COOLDOWN_S": "1"},
    )
    s.start()
    yield s
    s.stop()


async def post(stack: LocalStack, path: str, body: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.post(stack.url("recovery") + path, json=body,
                                                          headers=stack.api_headers()) as r:
        return r.status, await r.read()


async def wait_for(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise TimeoutError("condition not met")


def sms_to(stack: LocalStack, e164: str) -> list[str]:
    """The codes' texts sent to ``e164`` (not the notices of a password change)."""
    return list(code_sms_to(stack, e164).values())


def code_sms_to(stack: LocalStack, e164: str) -> dict[str, str]:
    """client_ref (the code id) -> text of the codes' SMS to ``e164``, in the order accepted."""
    assert stack.sms_gateway is not None
    sent = stack.sms_gateway.call(lambda s: [(m.client_ref, m.text) for m in s.accepted.values() if m.to == e164])
    return {ref: text for ref, text in sent if PASSWORD.search(text)}


ASK_WAIT_S = 6.0  # after an ask, how long its SMS may take before the code is asked for again


async def new_code(stack: LocalStack, login: str, e164: str) -> str:
    """Ask for a code until one more SMS arrives (the first ask may precede the projection).

    After each ask its SMS is awaited (up to ``ASK_WAIT_S``) before asking again: an ask voids
    the code before it, so asking while an SMS is on its way would make that SMS's code void.
    After more than one ask, the code returned is the newest one these asks got (see
    ``newest_code``), whichever SMS came first."""
    since = time.time()
    before = set(code_sms_to(stack, e164))
    deadline = time.monotonic() + 60
    asks = 0
    new: dict[str, str] = {}
    while not new:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no code reached {e164} after {asks} asks")
        assert (await post(stack, "/api/v1/code-requests", {"login": login, "channel": "sms"}))[0] == 202
        asks += 1
        wait_until = min(deadline, time.monotonic() + ASK_WAIT_S)  # longer than the cool-down (1 s)
        while True:
            new = {ref: t for ref, t in code_sms_to(stack, e164).items() if ref not in before}
            if new or time.monotonic() > wait_until:
                break
            await asyncio.sleep(0.2)
    if asks == 1 and len(new) == 1:
        (text,) = new.values()  # one ask, one code
    else:
        code_id = await newest_code(stack, login, since=since, asks=asks)
        text = await wait_for(lambda: code_sms_to(stack, e164).get(code_id), timeout_s=30)
    return PASSWORD.search(text).group(1)  # type: ignore[no-any-return,union-attr]


async def newest_code(stack: LocalStack, login: str, *, since: float, asks: int) -> str:
    """The code id of the newest code issued for the last ``asks`` requests of ``login``: their
    ``CodeRequested`` (the login as typed, stamped after ``since``), once each has its outcome;
    of their ``CodeIssued`` (keyed by the account: one partition, in the order issued) the last.
    The SMS's client_ref is the code id."""
    def ours(got: list[Consumed]) -> set[str]:
        ids = set()
        for r in got:
            try:  # the topic may hold a hostile test's garbage too
                body = json.loads(r.value or b"")
                if body.get("login") == login and datetime.fromisoformat(body["occurred_at"]).timestamp() >= since:
                    ids.add(str(body["event_id"]))
            except (ValueError, TypeError, KeyError, AttributeError):
                continue
        return ids

    prefix = stack.topic_prefix
    ids = ours(await read_all(stack.bootstrap, prefix + CODE_REQUESTED, timeout_s=30,
                              until=lambda got: len(ours(got)) >= asks))
    deadline = time.monotonic() + 30
    while True:
        issued = [r for r in await read_all(stack.bootstrap, prefix + CODE_ISSUED, idle_s=0.3)
                  if r.value and json.loads(r.value)["request_event_id"] in ids]
        rejected = [r for r in await read_all(stack.bootstrap, prefix + CODE_REJECTED, idle_s=0.3)
                    if r.value and json.loads(r.value)["request_event_id"] in ids]
        if {json.loads(r.value or b"{}")["request_event_id"] for r in issued + rejected} >= ids:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every ask for {login} has an outcome")
        await asyncio.sleep(0.3)
    assert issued, f"none of {asks} asks for {login} was issued a code"
    return str(json.loads(max(issued, key=lambda r: r.offset).value or b"{}")["code_id"])


async def login_status(stack: LocalStack, login: str, password: str) -> int:
    return (await post(stack, "/api/v1/login", {"login": login, "password": password}))[0]


def account_records(stack: LocalStack, contract: str) -> list[Consumed]:
    records = asyncio.run(read_all(stack.bootstrap, stack.topic_prefix + ACCOUNT_CHANGED, idle_s=0.5))
    ids = {r.key for r in records if r.value and json.loads(r.value)["contract_number"] == contract}
    return [r for r in records if r.key in ids]


async def test_a_new_holder_loses_the_old_password_and_a_new_code_works(stack: LocalStack) -> None:
    mobile, e164 = "+7 916 300-00-01", "+79163000001"
    await produce(stack.bootstrap, stack.topic_prefix + CONTRACT_LINKED,
                  [(b"LC-1", linked("LC-1", mobile, minutes=0))])
    old = await new_code(stack, mobile, e164)
    assert await login_status(stack, mobile, old) == 200
    # the CRM re-links the contract to another person, same mobile
    await produce(stack.bootstrap, stack.topic_prefix + CONTRACT_LINKED, [(b"LC-1", linked(
        "LC-1", mobile, minutes=10, name="Козлова Мария Петровна", passport="4600 111222"))])
    deadline = time.monotonic() + 30
    while await login_status(stack, mobile, old) != 401:
        assert time.monotonic() < deadline, "the old password still works after a holder change"
        await asyncio.sleep(0.3)
    fresh = await new_code(stack, mobile, e164)
    assert await login_status(stack, mobile, fresh) == 200
    assert await login_status(stack, mobile, old) == 401


async def test_far_future_events_are_refused_and_a_later_real_relink_still_works(
    stack: LocalStack,
) -> None:
    mobile = "+7 916 300-00-02"
    future = linked("LC-2", "+7 916 300-00-09", occurred_at="9999-12-31T23:59:59Z")
    future_id = json.loads(future)["event_id"]
    await produce(stack.bootstrap, stack.topic_prefix + CONTRACT_LINKED, [
        (b"LC-2", linked("LC-2", mobile, minutes=0)), (b"LC-2", future)])
    rejected = await read_all(stack.bootstrap, stack.topic_prefix + CONTRACT_REJECTED, timeout_s=30,
                              until=lambda got: any(future_id.encode() in (r.value or b"") for r in got))
    [refusal] = [json.loads(r.value or b"") for r in rejected if future_id.encode() in (r.value or b"")]
    assert refusal["reason"] == "invalid_event_time"
    # a real re-link, later than the first link, is applied (the future one did not win)
    await produce(stack.bootstrap, stack.topic_prefix + CONTRACT_LINKED,
                  [(b"LC-2", linked("LC-2", "+7 916 300-00-03", minutes=30))])
    await new_code(stack, "+7 916 300-00-03", "+79163000003")
    assert sms_to(stack, "+79163000009") == []
    # a code request dated far ahead goes to recovery's DLQ with the reason
    request = json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "9999-12-31T23:59:59Z",
                          "login": "+79163000003", "channel": "sms"}).encode()
    await produce(stack.bootstrap, stack.topic_prefix + CODE_REQUESTED, [(None, request)])
    dead = await read_all(stack.bootstrap, stack.topic_prefix + CODE_REQUESTED + ".dlq", timeout_s=30,
                          until=lambda got: any(r.value == request for r in got))
    [letter] = [r for r in dead if r.value == request]
    assert letter.headers["dlq_error_class"] == "invalid_event_time"


def db_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}


def flat(row: tuple[Any, ...]) -> str:
    return " ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row)


def test_erasure_leaves_nothing_of_the_subscriber_in_any_database_or_latest_account_state(
    stack: LocalStack,
) -> None:
    mobile, e164, email = "+7 916 300-00-04", "+79163000004", "semyon.sidorov@example.ru"
    name, passport = "Сидоров Семён Семёнович", "4512 777888"
    asyncio.run(produce(stack.bootstrap, stack.topic_prefix + CONTRACT_LINKED,
                        [(b"LC-4", linked("LC-4", mobile, email=email, minutes=0))]))
    password = asyncio.run(new_code(stack, mobile, e164))
    assert asyncio.run(login_status(stack, mobile, password)) == 200
    assert asyncio.run(login_status(stack, mobile, "wrong-password")) == 401  # a failure row

    [changed] = [AccountChanged.model_validate_json(r.value) for r in account_records(stack, "LC-4")
                 if r.value]
    account_id = str(changed.account_id)
    issued = [CodeIssued.model_validate_json(r.value or b"") for r in asyncio.run(read_all(
        stack.bootstrap, stack.topic_prefix + CODE_ISSUED, idle_s=0.5))]
    ours = [i for i in issued if str(i.account_id) == account_id]
    assert ours
    markers = [e164, "79163000004", "300-00-04", email, "semyon.sidorov", mask_phone(e164),
               mask_email(email), name, "Сидоров", passport, passport.replace(" ", ""),
               changed.contacts.mobile_enc, changed.contacts.email_enc or email, password]
    markers += [i.destination_enc for i in ours] + [i.password_enc for i in ours]

    asyncio.run(produce(stack.bootstrap, stack.topic_prefix + CONTRACT_ERASED, [(b"LC-4", json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": stamp(60), "contract_number": "LC-4"}).encode())]))
    deadline = time.monotonic() + 30
    while asyncio.run(login_status(stack, mobile, password)) != 401:
        assert time.monotonic() < deadline, "the erased account still logs in"
        time.sleep(0.3)
    # a late link, older than the erasure, brings nothing back
    asyncio.run(produce(stack.bootstrap, stack.topic_prefix + CONTRACT_LINKED,
                        [(b"LC-4", linked("LC-4", mobile, email=email, minutes=30))]))

    def scan() -> list[str]:
        found: list[str] = []
        for service in ("registration", "recovery", "notifier"):
            for table, rows in db_rows(Path(stack.var_dir) / f"{service}.db").items():
                for row in rows:
                    text = flat(row)
                    found += [f"{service}.{table}: {m[:16]}" for m in markers if m in text]
                    if (account_id in text or account_id.replace("-", "") in text) \
                            and (service, table) != ("registration", "erasures"):
                        found.append(f"{service}.{table}: the account id")
        return found

    deadline = time.monotonic() + 30
    while scan():  # recovery and the notifier act on the tombstone asynchronously
        assert time.monotonic() < deadline, scan()
        time.sleep(0.5)
    time.sleep(3)  # the late link has been consumed by now
    assert scan() == []
    erasures = db_rows(Path(stack.var_dir) / "registration.db")["erasures"]
    assert [(r[0], uuid.UUID(str(r[1]))) for r in erasures] == [("LC-4", changed.account_id)]

    # the account topic: the latest record of the key is a tombstone, and no later record of
    # the contract (the late link created nothing)
    records = account_records(stack, "LC-4")
    mine = [r for r in records if r.key == account_id.encode()]
    assert mine[-1].value is None
    assert {r.key for r in records} == {account_id.encode()}

    # the topics that hold codes and statuses are compacted too: the latest record of the
    # account's key, and of each of its code ids, is a tombstone, so compaction leaves nothing
    codes = {str(i.code_id).encode() for i in ours}
    tombstoned = {CODE_ISSUED: {account_id.encode()}, PASSWORD_CHANGED: {account_id.encode()},
                  NOTIFICATION_STATUS: codes}

    def latest(topic: str) -> dict[bytes | None, Consumed]:
        records = asyncio.run(read_all(stack.bootstrap, stack.topic_prefix + topic, idle_s=0.5))
        return {r.key: r for r in records}  # in offset order per key: the last one stays

    deadline = time.monotonic() + 30
    def not_yet() -> list[str]:
        return [f"{t}: {k!r}" for t, keys in tombstoned.items() for k in keys
                if (got := latest(t).get(k)) is None or got.value is not None]

    while not_yet():
        assert time.monotonic() < deadline, not_yet()
        time.sleep(0.5)
    specs = {s.name: s for s in topic_specs()}
    assert {name for name, s in specs.items() if "compact" in s.cleanup_policy.split(",")} \
        == set(tombstoned) | {ACCOUNT_CHANGED}
    for topic in SEALED_OR_MASKED:
        kept = b"".join((r.key or b"") + r.value + json.dumps(r.headers).encode()
                        for r in latest(topic).values() if r.value is not None)
        assert [m for m in markers if m.encode() in kept] == [], topic

    # every other topic we publish: nothing of the subscriber, except recovery's re-keyed copy
    # of the inbound requests, which ages out by retention
    left: set[str] = set()
    for spec in specs.values():
        if spec.name in INBOUND | SEALED_OR_MASKED or spec.name.endswith(".dlq") \
                or spec.name == ACCOUNT_CHANGED:
            continue
        raw = b"".join((r.key or b"") + (r.value or b"") + json.dumps(r.headers).encode()
                       for r in asyncio.run(read_all(stack.bootstrap, stack.topic_prefix + spec.name,
                                                     idle_s=0.5)))
        if any(m.encode() in raw for m in markers):
            left.add(spec.name)
    assert left <= INBOUND_COPY, left
    assert all(0 < specs[name].retention_ms <= 86_400_000 for name in INBOUND_COPY)
