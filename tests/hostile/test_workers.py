"""The hostile corpus against the three services as real worker processes on the real broker.

Every malformed record is produced to its topic between good records; afterwards the ``.dlq``
and outcome topics are read raw: each bad record is on its ``.dlq`` unchanged (a tombstone as a
tombstone) with its error class, each record the contract answers has its answer, every good
record around them was processed (its code delivered), no worker died, and no payload value
is in a DLQ header or a log line.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.local_stack import LocalStack
from schemas.events import CodeIssued, CodeRejected, ContractRejected, NotificationStatus
from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REJECTED,
    CODE_REQUESTED,
    CONTRACT_ERASED,
    CONTRACT_LINKED,
    CONTRACT_REJECTED,
    CONTRACT_TERMINATED,
    NOTIFICATION_STATUS,
    PASSWORD_CHANGED,
    REQUESTS_BY_LOGIN,
    dlq_of,
)
from tests.hostile.corpus import INBOUND_TOPICS, MARKER, SECRET_DIGITS, TOMBSTONED_AT_ERASURE, Case, corpus
from tests.support.kafka import Consumed, create_topics, new_prefix, produce, read_all
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS, free_port

pytestmark = pytest.mark.kafka

CASES = corpus()


def good_link(i: int) -> tuple[bytes, bytes, str]:
    """(key, value, E.164 mobile) of the i-th good link (an interactive product: mobile login)."""
    mobile = f"+7916{5500000 + i:07d}"
    contract = f"HG-{i:05d}"
    value = json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
        "contract_number": contract, "personal_account": f"{880000000000 + i}",
        "tv_product": "interactive", "mobile_active": True,
        "subscriber": {"full_name": "Петров Пётр", "mobile": f"8 ({mobile[2:5]}) {mobile[5:8]}-{mobile[8:10]}-{mobile[10:]}",
                       "passport": {"series": "4510", "number": f"{100000 + i}"}},
    }, ensure_ascii=False).encode()
    return contract.encode(), value, mobile


def good_termination(i: int) -> tuple[bytes, bytes]:
    contract = f"HT-{i:05d}"  # never linked: answered unknown_contract
    return contract.encode(), json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z", "contract_number": contract,
    }).encode()


def good_request(login: str) -> tuple[str, bytes]:
    event_id = str(uuid.uuid4())
    return event_id, json.dumps({"event_id": event_id, "occurred_at": "2026-11-24T09:31:00Z",
                                 "login": login, "channel": "sms"}).encode()


def interleave(good: list[tuple[bytes, bytes | None]], bad: list[Case]) -> list[tuple[bytes, bytes | None]]:
    out: list[tuple[bytes, bytes | None]] = []
    for index in range(max(len(good), len(bad))):
        if index < len(good):
            out.append(good[index])
        if index < len(bad):
            out.append((bad[index].record_key, bad[index].value))
    return out


@dataclass
class Run:
    stack: LocalStack
    prefix: str
    dead: dict[str, list[Consumed]]
    contract_rejected: list[ContractRejected]
    code_rejected: list[CodeRejected]
    issued: list[CodeIssued]
    statuses: list[NotificationStatus]
    good_requests: dict[str, str]  # request event_id -> E.164 mobile
    good_terminations: set[str]
    alive: dict[str, bool]
    logs: bytes


def by_topic(topic: str, fate: str = "") -> list[Case]:
    return [case for case in CASES if case.topic == topic and case.fate.startswith(fate)]


def processed_accounts(stack: LocalStack) -> float:
    with urllib.request.urlopen(stack.url("recovery") + "/metrics", timeout=5) as r:
        text = r.read().decode()
    pattern = r'events_consumed_total\{[^}]*(?=[^}]*account\.changed)(?=[^}]*"processed")[^}]*\} (\S+)'
    return sum(float(m) for m in re.findall(pattern, text))


async def wait_until(check, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.3)


async def drive(stack: LocalStack, bootstrap: str, prefix: str) -> Run:
    links = [good_link(i) for i in range(len(by_topic(CONTRACT_LINKED)) + 4)]
    terminations = [good_termination(i) for i in range(len(by_topic(CONTRACT_TERMINATED)) + 2)]
    # phase 1: links and terminations from "the CRM", bad account records among registration's
    await asyncio.gather(
        produce(bootstrap, prefix + CONTRACT_LINKED,
                interleave([(k, v) for k, v, _ in links], by_topic(CONTRACT_LINKED))),
        produce(bootstrap, prefix + CONTRACT_TERMINATED, interleave(terminations, by_topic(CONTRACT_TERMINATED))),
        produce(bootstrap, prefix + CONTRACT_ERASED, interleave([], by_topic(CONTRACT_ERASED))),
        produce(bootstrap, prefix + ACCOUNT_CHANGED, interleave([], by_topic(ACCOUNT_CHANGED))),
    )
    n_accounts = len(links)  # the far-future link is refused (MAX_CLOCK_SKEW_S)
    await wait_until(lambda: processed_accounts(stack) >= n_accounts, 90, "recovery's projection")
    # phase 2: code requests, straight and to the internal topic, bad code records for the notifier
    mobiles = [mobile for _, _, mobile in links]
    half = len(mobiles) // 2
    straight = {eid: (value, mobile) for mobile in mobiles[:half]
                for eid, value in [good_request(f"8 {mobile[2:5]} {mobile[5:]}")]}
    internal = {eid: (value, mobile) for mobile in mobiles[half:]
                for eid, value in [good_request(mobile)]}
    await asyncio.gather(
        produce(bootstrap, prefix + CODE_REQUESTED,
                interleave([(f"good-{e}".encode(), v) for e, (v, _) in straight.items()], by_topic(CODE_REQUESTED))),
        produce(bootstrap, prefix + REQUESTS_BY_LOGIN,
                interleave([(f"good-{e}".encode(), v) for e, (v, _) in internal.items()], by_topic(REQUESTS_BY_LOGIN))),
        produce(bootstrap, prefix + CODE_ISSUED, interleave([], by_topic(CODE_ISSUED))),
        produce(bootstrap, prefix + PASSWORD_CHANGED, interleave([], by_topic(PASSWORD_CHANGED))),
    )
    good_requests = {e: m for e, (_, m) in {**straight, **internal}.items()}

    def values(records: list[Consumed]) -> list[bytes]:
        return [r.value for r in records if r.value is not None and not (r.key or b"").startswith(b"hostile/")]

    issued_raw = await read_all(bootstrap, prefix + CODE_ISSUED, timeout_s=120, until=lambda got: {
        CodeIssued.model_validate_json(v).request_event_id for v in values(got)} >= set(map(uuid.UUID, good_requests)))
    issued = [CodeIssued.model_validate_json(v) for v in values(issued_raw)]
    codes = {i.code_id for i in issued}
    statuses_raw = await read_all(bootstrap, prefix + NOTIFICATION_STATUS, timeout_s=120, until=lambda got: {
        NotificationStatus.model_validate_json(v).code_id for v in values(got)} >= codes)
    answers_code = len(by_topic(CODE_REQUESTED, "answer")) + len(by_topic(REQUESTS_BY_LOGIN, "answer"))
    code_rejected_raw = await read_all(bootstrap, prefix + CODE_REJECTED, timeout_s=60,
                                       until=lambda got: len(got) >= answers_code)
    answers_contract = len(by_topic(CONTRACT_LINKED, "answer")) \
        + len(by_topic(CONTRACT_TERMINATED, "answer")) + len(terminations)
    contract_rejected_raw = await read_all(bootstrap, prefix + CONTRACT_REJECTED, timeout_s=60,
                                           until=lambda got: len(got) >= answers_contract)
    dead: dict[str, list[Consumed]] = {}
    for topic in INBOUND_TOPICS:
        expected = len(by_topic(topic, "dlq"))
        dead[topic] = await read_all(bootstrap, prefix + dlq_of(topic), timeout_s=90,
                                     until=lambda got, n=expected: len(got) >= n)  # type: ignore[misc]
    await asyncio.sleep(2)  # anything late (a duplicate, a wrong answer) shows up now
    dead = {topic: await read_all(bootstrap, prefix + dlq_of(topic), idle_s=0.5) for topic in INBOUND_TOPICS}
    code_rejected_raw = await read_all(bootstrap, prefix + CODE_REJECTED, idle_s=0.5)
    contract_rejected_raw = await read_all(bootstrap, prefix + CONTRACT_REJECTED, idle_s=0.5)
    return Run(
        stack=stack, prefix=prefix, dead=dead,
        contract_rejected=[ContractRejected.model_validate_json(v) for v in values(contract_rejected_raw)],
        code_rejected=[CodeRejected.model_validate_json(v) for v in values(code_rejected_raw)],
        issued=issued,
        statuses=[NotificationStatus.model_validate_json(v) for v in values(statuses_raw)],
        good_requests=good_requests,
        good_terminations={k.decode() for k, _ in terminations},
        alive={p.name: p.proc.poll() is None for p in stack.processes},
        logs=b"".join(path.read_bytes() for path in Path(stack.var_dir, "logs").glob("*.log")),
    )


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    stack = LocalStack(
        bootstrap=kafka_bootstrap, var_dir=tmp_path_factory.mktemp("hostile"), topic_prefix=prefix,
        ports={"registration": free_port(), "recovery": free_port(), "notifier": free_port()},
        extra_env={"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER, "BATCH_SIZE": "50"},
    )
    stack.start()
    try:
        yield asyncio.run(drive(stack, kafka_bootstrap, prefix))
    finally:
        stack.stop()


def test_every_bad_record_is_on_its_dlq_unchanged_with_its_error_class(run: Run) -> None:
    wrong: list[str] = []
    for topic in INBOUND_TOPICS:
        got = {record.key: record for record in run.dead[topic]}
        expected = by_topic(topic, "dlq")
        assert len(run.dead[topic]) == len(expected), f"{topic}: {len(run.dead[topic])} dead letters"
        for case in expected:
            record = got.get(case.record_key)
            if record is None:
                wrong.append(f"{case.name}: not on the dlq")
                continue
            if record.headers.get("dlq_error_class") != case.fate.removeprefix("dlq:"):
                wrong.append(f"{case.name}: {record.headers.get('dlq_error_class')} "
                             f"({record.headers.get('dlq_error_message')})")
            if record.value != case.value:
                wrong.append(f"{case.name}: value changed ({record.value!r:.40})")
            if record.headers.get("dlq_original_topic") != run.prefix + topic \
                    or not record.headers.get("dlq_original_offset", "").isdigit() \
                    or not record.headers.get("dlq_error_message"):
                wrong.append(f"{case.name}: headers {record.headers}")
    assert wrong == []


def test_tombstones_stay_tombstones_on_every_dlq(run: Run) -> None:
    tombstones = [r for records in run.dead.values() for r in records if r.key and r.key.endswith(b"/tombstone")]
    # the account topic's is an erasure; on the topics an erasure tombstones, one is ignored
    assert len(tombstones) == len(INBOUND_TOPICS) - 1 - len(TOMBSTONED_AT_ERASURE)
    assert all(r.value is None for r in tombstones)


def test_records_the_contract_answers_get_their_answer(run: Run) -> None:
    contract = {str(r.rejected_event_id): r.reason.value for r in run.contract_rejected}
    code = {str(r.request_event_id): r.reason.value for r in run.code_rejected}
    for case in CASES:
        if case.fate.startswith("answer:"):
            answers = contract if case.topic in (CONTRACT_LINKED, CONTRACT_TERMINATED) else code
            assert answers.get(str(case.event_id)) == case.fate.removeprefix("answer:"), case.name


def test_every_good_record_around_them_is_processed(run: Run) -> None:
    unknown = {r.contract_number for r in run.contract_rejected if r.reason.value == "unknown_contract"}
    assert run.good_terminations <= unknown
    issued = {str(i.request_event_id): i for i in run.issued}
    assert set(issued) >= set(run.good_requests)
    assert len(run.issued) == len(set(issued))  # one code per request
    sent = {s.code_id for s in run.statuses if s.status.value == "sent"}
    assert {i.code_id for i in run.issued} <= sent
    assert run.stack.sms_gateway is not None
    to = run.stack.sms_gateway.call(lambda s: sorted(m.to for m in s.accepted.values()))
    assert to == sorted(run.good_requests.values())  # one SMS per good request, nothing else


def test_no_worker_died(run: Run) -> None:
    assert run.alive == {"registration": True, "recovery": True, "notifier": True}


def test_no_payload_value_in_dlq_headers_or_logs(run: Run) -> None:
    headers = json.dumps([r.headers for records in run.dead.values() for r in records], ensure_ascii=False)
    for secret in (MARKER, SECRET_DIGITS, "Петров", *(m[2:] for m in run.good_requests.values())):
        assert secret not in headers, f"{secret} in a DLQ header"
        assert secret.encode() not in run.logs, f"{secret} in a log"
    assert b"dead-lettered" in run.logs  # the logs were read, and they do tell of the dead letters
