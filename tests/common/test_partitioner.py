"""The producers' partitioner puts every key where Kafka's default partitioner does."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.app import make_app
from services.common.metrics import ServiceMetrics
from services.common.partitioner import KeyPartitioner, murmur2
from tests.support.probe_service import ProbeSettings

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (Java's signed ints)
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_gives_the_java_clients_values() -> None:
    for key, java in JAVA_VECTORS.items():
        assert murmur2(key) == java & 0xFFFFFFFF, key


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80))
def test_murmur2_equals_aiokafkas_for_every_key(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=1, max_size=64) | st.uuids().map(lambda u: str(u).encode()),
       st.integers(min_value=1, max_value=64))
def test_a_key_lands_on_the_partition_aiokafkas_default_chooses(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert KeyPartitioner()(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    chosen = {KeyPartitioner()(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}
    assert KeyPartitioner()(None, [0, 1], []) in {0, 1}


def test_the_service_apps_produce_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFCARE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SELFCARE_ENV", "local")
    app = make_app(settings=ProbeSettings.from_env(), metrics=ServiceMetrics("probe-partitioner"))
    assert isinstance(app.conf.producer_partitioner, KeyPartitioner)
    assert isinstance(app.producer.partitioner, KeyPartitioner)
