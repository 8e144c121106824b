"""The shared consumer loop on the real broker: bad records go to the DLQ, nothing else is lost."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.events import ContractRejected
from schemas.topics import CONTRACT_REJECTED, CONTRACT_TERMINATED, dlq_of
from services.common.publish import DLQ_VALUE_MAX_BYTES
from tests.support.kafka import produce, read_all
from tests.support.workers import Worker, free_port, service_env

pytestmark = pytest.mark.kafka


def good(contract: str) -> bytes:
    return json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
        "contract_number": contract,
    }).encode()


BAD: dict[str, tuple[bytes | None, str]] = {
    "not_utf8": (b"\xff\xfe\xfa{}", "invalid_utf8"),
    "not_json": (b"contract 77-1 terminated", "invalid_json"),
    "truncated_json": (b'{"event_id": "7b0c1f0e-5a53-4a43-9a59-2b0d7f0c9a11", "occ', "invalid_json"),
    "json_array": (b"[1, 2, 3]", "invalid_event"),
    "json_null": (b"null", "invalid_event"),
    "empty_object": (b"{}", "invalid_event"),
    "missing_contract": (json.dumps({"event_id": str(uuid.uuid4()),
                                     "occurred_at": "2026-11-24T09:30:00Z"}).encode(), "invalid_event"),
    "wrong_type": (json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
                               "contract_number": 771234567}).encode(), "invalid_event"),
    "bad_uuid": (json.dumps({"event_id": "not-a-uuid", "occurred_at": "2026-11-24T09:30:00Z",
                             "contract_number": "77-1"}).encode(), "invalid_event"),
    "naive_time": (json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00",
                               "contract_number": "77-1"}).encode(), "invalid_event"),
    "empty_value": (b"", "invalid_json"),
    "tombstone": (None, "empty_record"),
    "oversized": (json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
                              "contract_number": "77-1", "pad": "x" * 100_000}).encode(), "oversized_record"),
    "poison": (good("POISON-1"), "processing_error"),
}


async def test_bad_records_go_to_dlq_and_good_ones_are_all_processed(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    records: list[tuple[bytes | None, bytes | None]] = []
    good_contracts: list[str] = []
    for index, (name, (value, _)) in enumerate(BAD.items()):
        contract = f"77-{index:07d}"
        good_contracts.append(contract)
        records.append((contract.encode(), good(contract)))
        records.append((name.encode(), value))
    records.append((b"last", good("77-LAST")))
    good_contracts.append("77-LAST")
    await produce(kafka_bootstrap, topic_prefix + CONTRACT_TERMINATED, records)

    worker = Worker(
        module="tests.support.probe_service",
        env=service_env(bootstrap=kafka_bootstrap, prefix=topic_prefix, var_dir=tmp_path,
                        extra={"PROBE_FAIL_ON_CONTRACT": "POISON-1", "BATCH_SIZE": "7"}),
        log_path=tmp_path / "probe.log", web_port=free_port(),
    ).start()
    try:
        outputs = await read_all(
            kafka_bootstrap, topic_prefix + CONTRACT_REJECTED,
            until=lambda got: len(got) >= len(good_contracts), timeout_s=60,
        )
        dead = await read_all(
            kafka_bootstrap, topic_prefix + dlq_of(CONTRACT_TERMINATED),
            until=lambda got: len(got) >= len(BAD), timeout_s=30,
        )
    finally:
        worker.stop()

    processed = sorted(ContractRejected.model_validate_json(o.value or b"").contract_number for o in outputs)
    assert processed == sorted(good_contracts)
    assert len(dead) == len(BAD)
    by_key = {d.key.decode(): d for d in dead if d.key}
    assert set(by_key) == set(BAD)
    for name, (value, error_class) in BAD.items():
        record = by_key[name]
        assert record.headers["dlq_error_class"] == error_class, name
        assert record.headers["dlq_original_topic"] == topic_prefix + CONTRACT_TERMINATED
        assert record.headers["dlq_original_offset"].isdigit()
        assert record.headers["dlq_service"] == "probe"
        assert record.value == value, f"{name}: DLQ must carry the original bytes (a tombstone as one)"
        assert "x" * 50 not in record.headers["dlq_error_message"]
    # the original payloads never leak into headers
    assert all("POISON" not in d.headers["dlq_error_message"] for d in dead)


async def test_restart_does_not_reprocess_or_lose(kafka_bootstrap: str, topic_prefix: str,
                                                  tmp_path: Path) -> None:
    env = service_env(bootstrap=kafka_bootstrap, prefix=topic_prefix, var_dir=tmp_path)
    first = [(f"A{i}".encode(), good(f"A{i}")) for i in range(50)]
    await produce(kafka_bootstrap, topic_prefix + CONTRACT_TERMINATED, first)
    worker = Worker(module="tests.support.probe_service", env=env, log_path=tmp_path / "p1.log",
                    web_port=free_port()).start()
    try:
        await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED,
                       until=lambda got: len(got) >= 50, timeout_s=60)
    finally:
        worker.stop()
    second = [(f"B{i}".encode(), good(f"B{i}")) for i in range(50)]
    await produce(kafka_bootstrap, topic_prefix + CONTRACT_TERMINATED, second + first[:5])
    worker = Worker(module="tests.support.probe_service", env=env, log_path=tmp_path / "p2.log",
                    web_port=free_port()).start()
    try:
        got = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED,
                             until=lambda got: len(got) >= 100, timeout_s=60)
        # let a late duplicate show up if there were one
        got = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED, idle_s=2)
    finally:
        worker.stop()
    contracts = [ContractRejected.model_validate_json(o.value or b"").contract_number for o in got]
    assert sorted(contracts) == sorted([f"A{i}" for i in range(50)] + [f"B{i}" for i in range(50)])


async def test_a_batch_the_loop_cannot_settle_stops_the_worker_and_is_redone_after_a_restart(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    """The broker refuses the batch's dead-letter record: nothing the runner can retry or
    dead-letter. The worker must stop (exit 1, for its supervisor to start it again) with the
    batch unacked, not go on with the agent restarted on a stream where that batch is never
    handled nor acked; started again, it handles the batch in full."""
    env = service_env(bootstrap=kafka_bootstrap, prefix=topic_prefix, var_dir=tmp_path)
    records = [(b"C1", good("C1")), (b"bad", b"contract C2 terminated"), (b"C3", good("C3"))]
    await produce(kafka_bootstrap, topic_prefix + CONTRACT_TERMINATED, records)
    # spawned, not started: it may crash on the batch before its /readyz ever answers
    refusing = Worker(module="tests.support.probe_service",
                      env={**env, "PROBE_DEAD_LETTERS_FAIL": "1"}, log_path=tmp_path / "p1.log",
                      web_port=free_port()).spawn()
    try:
        assert refusing.proc is not None
        code = await asyncio.to_thread(refusing.proc.wait, 60)
        assert code == 1, refusing.log_tail()
    finally:
        refusing.stop()
    assert "the broker refused a dead-letter record" in refusing.log_text()
    worker = Worker(module="tests.support.probe_service", env=env, log_path=tmp_path / "p2.log",
                    web_port=free_port()).start()
    try:
        dead = await read_all(kafka_bootstrap, topic_prefix + dlq_of(CONTRACT_TERMINATED),
                              until=lambda got: len(got) >= 1, timeout_s=60)
        got = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED,
                             until=lambda got: len(got) >= 2, timeout_s=60)
        got = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED, idle_s=2)
    finally:
        worker.stop()
    assert [d.value for d in dead] == [b"contract C2 terminated"]
    contracts = [ContractRejected.model_validate_json(o.value or b"").contract_number for o in got]
    assert sorted(contracts) == ["C1", "C3"]


async def test_a_record_too_large_for_any_dlq_is_dead_lettered_cut_and_its_length_told(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    """A 3 MiB record the CRM sent compressed (a few KB on the broker): oversized here, and too
    large to be sent on whole and uncompressed to the .dlq (the broker refuses it). It goes to
    the .dlq cut to ``DLQ_VALUE_MAX_BYTES``, with its length in a header; the records around it
    are handled."""
    huge = json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
                       "contract_number": "77-2", "pad": "x" * (3 * 1024 * 1024)}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                compression_type="gzip", max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in ((b"C1", good("C1")), (b"huge", huge), (b"C3", good("C3"))):
            await (await producer.send(topic_prefix + CONTRACT_TERMINATED, value=value, key=key))
    finally:
        await producer.stop()
    worker = Worker(module="tests.support.probe_service",
                    env=service_env(bootstrap=kafka_bootstrap, prefix=topic_prefix,
                                    var_dir=tmp_path),
                    log_path=tmp_path / "probe.log", web_port=free_port()).start()
    try:
        dead = await read_all(kafka_bootstrap, topic_prefix + dlq_of(CONTRACT_TERMINATED),
                              until=lambda got: len(got) >= 1, timeout_s=60)
        got = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED,
                             until=lambda got: len(got) >= 2, timeout_s=60)
    finally:
        worker.stop()
    [record] = dead
    assert record.headers["dlq_error_class"] == "oversized_record"
    assert record.headers["dlq_value_truncated"] == str(len(huge))
    assert record.value == huge[:DLQ_VALUE_MAX_BYTES]
    contracts = [ContractRejected.model_validate_json(o.value or b"").contract_number for o in got]
    assert sorted(contracts) == ["C1", "C3"]
