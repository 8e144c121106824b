"""A dead letter is bounded in size whatever the original record: a key or headers the CRM sent
compressed (a 3 MiB key, a million empty headers: a few KB on the broker) would make a dead letter
the .dlq refuses, and the worker would then stop on the record at every start."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from schemas.events import ContractRejected
from schemas.topics import CONTRACT_REJECTED, CONTRACT_TERMINATED, dlq_of, topic_specs
from services.common.codec import WireRecord
from services.common.publish import DLQ_KEY_MAX_BYTES, DLQ_VALUE_MAX_BYTES, dead_letter_record
from tests.support.kafka import read_all
from tests.support.workers import Worker, free_port, service_env

HUGE_KEY = b"k" * (3 * 1024 * 1024)
MANY_EMPTY_HEADERS = [("", b"")] * 1_200_000


def dlq_limit() -> int:
    """The smallest ``max.message.bytes`` of any .dlq topic."""
    return min(spec.max_message_bytes for spec in topic_specs() if spec.name.endswith(".dlq"))


def encoded_size(record: WireRecord) -> int:
    """An upper bound on the record's size in a batch, as the producer counts it."""
    headers: list[tuple[str, bytes | None]] = list(record.headers)
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, headers))


def dead(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> WireRecord:
    # the largest of what we add ourselves: a long topic name, 500 four-byte characters of reason
    return dead_letter_record(topic="t" * 249, partition=15, offset=2**62, key=key, value=value,
                              error_class="invalid_json", reason="\U0001f600" * 600,
                              service="registration", original_headers=headers)


@pytest.mark.parametrize(("key", "value", "headers"), [
    (HUGE_KEY, b"not json", []),
    (b"bad", b"not json", MANY_EMPTY_HEADERS),
    (HUGE_KEY, b"x" * (3 * 1024 * 1024), MANY_EMPTY_HEADERS),
    # just within the headers' bound: kept, and still small enough
    (HUGE_KEY, b"x" * (3 * 1024 * 1024), [("", b"")] * (64 * 1024 // 8)),
], ids=["huge_key", "many_empty_headers", "all_at_once", "headers_at_the_bound"])
def test_a_dead_letter_is_below_the_dlq_limit_whatever_the_key_and_headers(
        key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    record = dead(key, value, headers)
    size = encoded_size(record)
    assert size < 1024 * 1024 < dlq_limit(), size  # below a broker's default limit too


def test_a_key_too_large_is_cut_and_its_length_told() -> None:
    record = dead(HUGE_KEY, b"not json", [("ce_type", b"x")])
    assert record.key == HUGE_KEY[:DLQ_KEY_MAX_BYTES]
    got = dict(record.headers)
    assert got["dlq_key_truncated"] == str(len(HUGE_KEY)).encode()
    assert got["ce_type"] == b"x" and "dlq_value_truncated" not in got


def test_a_key_within_the_bound_is_kept_whole_and_untold() -> None:
    key = b"k" * DLQ_KEY_MAX_BYTES
    record = dead(key, b"v" * DLQ_VALUE_MAX_BYTES, [])
    assert record.key == key and record.value == b"v" * DLQ_VALUE_MAX_BYTES
    assert not {"dlq_key_truncated", "dlq_value_truncated"} & set(dict(record.headers))


def test_many_empty_headers_count_and_are_left_out() -> None:
    record = dead(b"bad", b"not json", MANY_EMPTY_HEADERS)
    assert all(k.startswith("dlq_") for k, _ in record.headers)
    assert dict(record.headers)["dlq_headers_dropped"] == b"1200000"


@pytest.mark.kafka
async def test_a_record_with_a_huge_key_or_a_million_headers_is_dead_lettered_and_the_rest_handled(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    def good(contract: str) -> bytes:
        return json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
                           "contract_number": contract}).encode()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                compression_type="gzip", max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        for key, value, headers in ((b"C1", good("C1"), None), (HUGE_KEY, b"not json", None),
                                    (b"many", b"not json", MANY_EMPTY_HEADERS),
                                    (b"C3", good("C3"), None)):
            await (await producer.send(topic_prefix + CONTRACT_TERMINATED, value=value, key=key,
                                       partition=0, headers=headers))
    finally:
        await producer.stop()
    worker = Worker(module="tests.support.probe_service",
                    env=service_env(bootstrap=kafka_bootstrap, prefix=topic_prefix, var_dir=tmp_path),
                    log_path=tmp_path / "probe.log", web_port=free_port()).start()
    try:
        dead_letters = await read_all(kafka_bootstrap, topic_prefix + dlq_of(CONTRACT_TERMINATED),
                                      until=lambda got: len(got) >= 2, timeout_s=60)
        got = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED,
                             until=lambda got: len(got) >= 2, timeout_s=60)
        alive = worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
    assert alive
    by_key = {r.key: r for r in dead_letters}
    assert set(by_key) == {HUGE_KEY[:DLQ_KEY_MAX_BYTES], b"many"}
    assert by_key[HUGE_KEY[:DLQ_KEY_MAX_BYTES]].headers["dlq_key_truncated"] == str(len(HUGE_KEY))
    assert by_key[b"many"].headers["dlq_headers_dropped"] == "1200000"
    contracts = [ContractRejected.model_validate_json(o.value or b"").contract_number for o in got]
    assert sorted(contracts) == ["C1", "C3"]
