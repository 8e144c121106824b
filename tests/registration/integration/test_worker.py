"""The registration worker as a real process on the real broker: bad input, re-link, termination,
schema and privacy of everything it writes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select

from schemas.events import AccountChanged
from schemas.topics import (
    ACCOUNT_CHANGED,
    CONTRACT_LINKED,
    CONTRACT_REJECTED,
    CONTRACT_TERMINATED,
    dlq_of,
)
from services.common.db import make_engine
from services.registration.adapters.tables import backfills
from tests.registration.events import linked, raw, terminated
from tests.support.kafka import Consumed, create_topics, new_prefix, produce, read_all
from tests.support.workers import Worker, free_port, service_env

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One worker for the module, on topics of its own."""
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    var = tmp_path_factory.mktemp("registration")
    port = free_port()
    worker = Worker(
        module="services.registration",
        env=service_env(bootstrap=kafka_bootstrap, prefix=prefix, var_dir=var,
                        extra={"REGISTRATION_WEB_PORT": str(port)}),
        log_path=var / "worker.log", web_port=port,
    ).start()
    yield {"prefix": prefix, "bootstrap": kafka_bootstrap, "worker": worker, "var": var}
    worker.stop()


async def send(env: dict[str, Any], topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    await produce(env["bootstrap"], env["prefix"] + topic, records)


async def read(env: dict[str, Any], topic: str, until: Any = None, timeout_s: float = 60) -> list[Consumed]:
    return await read_all(env["bootstrap"], env["prefix"] + topic, until=until, timeout_s=timeout_s)


def values(records: list[Consumed]) -> list[dict[str, Any]]:
    return [json.loads(r.value or b"") for r in records]


def key(contract: str) -> bytes:
    return contract.encode()


def good(n: int, **kw: Any) -> dict[str, Any]:
    """A distinct valid subscriber (mobile, personal account, passport) for contract G-<n>."""
    fields: dict[str, Any] = {
        "mobile": f"+7 (916) 200-{n // 100:02d}-{n % 100:02d}", "email": f"user{n}@example.ru",
        "account": f"5000{n:08d}", "name": f"Петров Пётр {n}", "passport": ("4600", f"{700000 + n}"),
    }
    return linked(f"G-{n:04d}", **{**fields, **kw})


def bad_inputs() -> list[tuple[str, bytes | None, str, str]]:
    """(contract key, value, where it must land, why) — the malformed and the invalid kinds."""
    valid = raw(good(9999))
    missing_contract = good(9001)
    del missing_contract["contract_number"]
    empty_subscriber = {**good(9002), "subscriber": {}}
    naive_time = {**good(9003), "occurred_at": "2026-11-24T09:30:00"}
    dlq = "dlq"
    rej = "rejected"
    return [
        ("B-01", b"hello, this is not json", dlq, "invalid_json"),
        ("B-02", valid[: len(valid) // 2], dlq, "invalid_json"),
        ("B-03", b'{"event_id": "\xff\xfe\xfd"}', dlq, "invalid_utf8"),
        ("B-04", raw(missing_contract), dlq, "invalid_event"),
        ("B-05", raw(empty_subscriber), dlq, "invalid_event"),
        ("B-06", raw({**good(9004), "tv_product": "cable"}), dlq, "invalid_event"),
        ("B-07", raw({**good(9005), "mobile_active": "true"}), dlq, "invalid_event"),
        ("B-08", raw({**good(9006), "personal_account": -123456}), dlq, "invalid_event"),
        ("B-09", raw({**good(9007), "personal_account": 10**30}), dlq, "invalid_event"),
        ("B-10", raw({**good(9008), "padding": "x" * 1_000_000}), dlq, "oversized_record"),
        ("B-11", None, dlq, "empty_record"),
        ("B-12", b"[1, 2, 3]", dlq, "invalid_event"),
        ("B-13", raw(naive_time), dlq, "invalid_event"),
        ("B-14", raw({**good(9009), "event_id": "not-a-uuid"}), dlq, "invalid_event"),
        ("B-15", raw({**good(9010), "contract_number": "   "}), dlq, "invalid_event"),
        ("B-16", raw(linked("B-16", mobile="+7 916 ABC-45-67")), rej, "invalid_mobile"),
        ("B-17", raw(linked("B-17", mobile="+44 20 7946 0958")), rej, "invalid_mobile"),
        ("B-18", raw(linked("B-18", mobile="+7 916 12")), rej, "invalid_mobile"),
        ("B-19", raw(linked("B-19", mobile="+7 495 123-45-67")), rej, "invalid_mobile"),
        ("B-20", raw(linked("B-20", email="ivanov@")), rej, "invalid_email"),
        ("B-21", raw(linked("B-21", email="two@@example.ru")), rej, "invalid_email"),
        ("B-22", raw(linked("B-22", account="12AB5678")), rej, "invalid_personal_account"),
        ("B-23", raw(linked("B-23", account="-123456789")), rej, "invalid_personal_account"),
        ("B-24", raw(linked("B-24", account="1" * 25)), rej, "invalid_personal_account"),
    ]


async def test_bad_input_each_meets_its_fate_and_good_events_all_become_accounts(
    env: dict[str, Any],
) -> None:
    bads = bad_inputs()
    goods = [good(n) for n in range(1, 41)]
    records: list[tuple[bytes | None, bytes | None]] = []
    for i, event in enumerate(goods):  # interleave: a good one, a bad one, …
        records.append((key(event["contract_number"]), raw(event)))
        if i < len(bads):
            records.append((key(bads[i][0]), bads[i][1]))
    await send(env, CONTRACT_LINKED, records)
    unknown = terminated("B-25")
    await send(env, CONTRACT_TERMINATED, [(b"B-25", raw(unknown)), (b"B-26", b"{not json")])

    expected_dlq = Counter(why for _, _, where, why in bads if where == "dlq")
    expected_rejected = {(k, why) for k, _, where, why in bads if where == "rejected"}
    expected_rejected.add(("B-25", "unknown_contract"))
    good_contracts = {e["contract_number"] for e in goods}

    changed = await read(env, ACCOUNT_CHANGED, until=lambda rs: {
        json.loads(r.value or b"")["contract_number"] for r in rs} >= good_contracts)
    dlq = await read(env, dlq_of(CONTRACT_LINKED), until=lambda rs: len(rs) >= sum(expected_dlq.values()))
    dlq_terminated = await read(env, dlq_of(CONTRACT_TERMINATED), until=lambda rs: len(rs) >= 1)
    rejected = await read(env, CONTRACT_REJECTED, until=lambda rs: len(rs) >= len(expected_rejected))

    # nothing else arrives once all of that is there
    await asyncio.sleep(2)
    def mine(contract: str) -> bool:  # this test's contracts (the module's worker is shared)
        return contract in good_contracts or contract.startswith("B-")

    changed = await read(env, ACCOUNT_CHANGED)
    assert sorted(e["contract_number"] for e in values(changed) if mine(e["contract_number"])) == sorted(
        good_contracts
    )
    dlq = [r for r in await read(env, dlq_of(CONTRACT_LINKED)) if (r.key or b"").startswith(b"B-")]
    assert Counter(r.headers["dlq_error_class"] for r in dlq) == expected_dlq
    by_key = {(r.key or b"").decode(): r.headers["dlq_error_class"] for r in dlq if r.key}
    assert by_key == {k: why for k, _, where, why in bads if where == "dlq"}
    assert [r.value for r in dlq if r.key == b"B-03"] == [bads[2][1]]  # the original, unchanged
    for record in dlq:
        assert record.headers["dlq_original_topic"] == env["prefix"] + CONTRACT_LINKED
        assert {"dlq_original_partition", "dlq_original_offset", "dlq_error_message"} <= set(record.headers)
    dlq_terminated = await read(env, dlq_of(CONTRACT_TERMINATED))
    assert [r.headers["dlq_error_class"] for r in dlq_terminated] == ["invalid_json"]
    rejected = [e for e in values(await read(env, CONTRACT_REJECTED)) if mine(e["contract_number"])]
    assert {(e["contract_number"], e["reason"]) for e in rejected} == expected_rejected
    assert len(rejected) == len(expected_rejected)
    assert {e["rejected_event_id"] for e in rejected if e["contract_number"] == "B-25"} == {
        unknown["event_id"]
    }


async def test_relink_duplicate_stale_conflict_and_termination(env: dict[str, Any]) -> None:
    first = {n: good(n, minutes=10) for n in range(101, 106)}
    first[105] = good(105, minutes=10, product="linear", email=None, mobile_active=False)
    await send(env, CONTRACT_LINKED, [(key(e["contract_number"]), raw(e)) for e in first.values()])
    await read(env, ACCOUNT_CHANGED, until=lambda rs: {
        json.loads(r.value or b"")["contract_number"] for r in rs} >= {f"G-{n:04d}" for n in first})

    relink = good(101, minutes=20)
    relink["subscriber"] = {**relink["subscriber"], "mobile": "8 903 777-66-55", "email": "new@example.org"}
    stale = good(102, minutes=5)  # older than what G-0102 has
    stale["subscriber"] = {**stale["subscriber"], "mobile": "+7 903 000-00-01"}
    conflict = linked("C-0001", mobile=first[103]["subscriber"]["mobile"].replace("+7", "8"),
                      account="600000000001", minutes=30)
    end = terminated("G-0104", minutes=40)
    await send(env, CONTRACT_LINKED, [
        (b"G-0101", raw(relink)),
        (b"G-0102", raw(first[102])),  # the same event again
        (b"G-0102", raw(stale)),
        (b"C-0001", raw(conflict)),
    ])
    await send(env, CONTRACT_TERMINATED, [(b"G-0104", raw(end))])
    sentinel = good(106, minutes=50)
    await send(env, CONTRACT_LINKED, [(b"G-0106", raw(sentinel))])

    def done(rs: list[Consumed]) -> bool:
        seen = [(e["contract_number"], e["version"]) for e in values(rs)]
        return {("G-0101", 2), ("G-0104", 2), ("G-0106", 1)} <= set(seen)

    changed = await read(env, ACCOUNT_CHANGED, until=done)
    await asyncio.sleep(2)
    changed = [e for e in values(await read(env, ACCOUNT_CHANGED))
               if e["contract_number"] in {f"G-{n:04d}" for n in range(101, 107)}]
    history = Counter(e["contract_number"] for e in changed)
    assert history == {"G-0101": 2, "G-0102": 1, "G-0103": 1, "G-0104": 2, "G-0105": 1, "G-0106": 1}
    last = {e["contract_number"]: e for e in changed}
    assert last["G-0101"]["contacts"]["mobile_masked"] == "+7******6655"
    assert last["G-0101"]["contacts"]["email_masked"] == "n*****w@example.org"
    assert last["G-0101"]["linked_at"] == "2026-11-24T09:50:00Z"
    first_101 = next(e for e in changed if e["contract_number"] == "G-0101")
    assert last["G-0101"]["account_id"] == first_101["account_id"]
    assert last["G-0102"]["contacts"]["mobile_masked"] == "+7******0102"
    assert (last["G-0104"]["status"], last["G-0104"]["version"]) == ("closed", 2)
    assert last["G-0105"]["channels"] == {"sms": False, "email": False}
    assert last["G-0105"]["tv_product"] == "linear"
    rejected = [e for e in values(await read(env, CONTRACT_REJECTED)) if e["contract_number"] == "C-0001"]
    assert [(e["reason"], e["rejected_event_id"]) for e in rejected] == [
        ("login_conflict", conflict["event_id"])
    ]


async def test_every_account_changed_validates_and_nothing_personal_is_in_clear(env: dict[str, Any]) -> None:
    events = [good(n, minutes=1) for n in range(201, 206)]
    await send(env, CONTRACT_LINKED, [(key(e["contract_number"]), raw(e)) for e in events])
    malformed = {"contract_number": "P-98", "subscriber": {"mobile": "+7 916 555-44-33",
                                                           "email": "leak@example.ru"}}
    await send(env, CONTRACT_LINKED, [(b"P-99", raw(linked("P-99", mobile="+7 916 ABC-45-67"))),
                                      (b"P-98", raw(malformed))])
    await read(env, ACCOUNT_CHANGED, until=lambda rs: {
        json.loads(r.value or b"")["contract_number"] for r in rs} >= {e["contract_number"] for e in events})
    await read(env, CONTRACT_REJECTED, until=lambda rs: any(r.key == b"P-99" for r in rs))
    await read(env, dlq_of(CONTRACT_LINKED), until=lambda rs: any(r.key == b"P-98" for r in rs))

    schema = json.loads((ROOT / "schemas/json/AccountChanged.schema.json").read_text())
    changed = await read(env, ACCOUNT_CHANGED)
    assert changed
    for record in changed:
        jsonschema.validate(json.loads(record.value or b""), schema)
        AccountChanged.model_validate_json(record.value or b"")
        assert record.headers["ce_type"] == "selfcare.AccountChanged.v1"
        assert record.key == json.loads(record.value or b"")["account_id"].encode()

    secrets: set[str] = set()
    for n in [*range(1, 41), *range(101, 107), *range(201, 206)]:
        sub = good(n)["subscriber"]
        digits = "".join(ch for ch in sub["mobile"] if ch.isdigit())
        secrets |= {digits, "+" + digits, digits[1:], sub["email"], sub["full_name"],
                    sub["passport"]["series"] + sub["passport"]["number"],
                    sub["passport"]["series"] + " " + sub["passport"]["number"]}
    secrets |= {"79165554433", "leak@example.ru", "79037776655", "new@example.org", "Иванов Иван Иванович", "9161234567", "ivanov@example.ru"}
    blobs = {topic: b"".join((r.key or b"") + (r.value or b"") + json.dumps(r.headers).encode()
                             for r in await read(env, topic))
             for topic in (ACCOUNT_CHANGED, CONTRACT_REJECTED)}
    log = env["worker"].log_text()
    assert "dead-lettered" in log  # the log is the worker's, and it has seen the bad input
    for secret in secrets:
        for topic, blob in blobs.items():
            assert secret.encode() not in blob, (topic, secret[:3])
        assert secret not in log, secret[:3]


async def test_the_worker_fills_the_aliases_of_earlier_accounts_once_at_its_start(
        env: dict[str, Any]) -> None:
    """``service_layer.fill_aliases`` runs as a task of the worker and marks itself done."""
    engine = make_engine(f"sqlite:///{env['var'] / 'registration'}.db")
    try:
        for _ in range(100):
            with engine.connect() as conn:
                done = conn.execute(select(backfills.c.name)).scalars().all()
            if done:
                break
            await asyncio.sleep(0.1)
        assert done == ["accounts.alias_key"]
    finally:
        engine.dispose()
