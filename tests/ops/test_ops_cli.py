"""The ops CLI against the real broker: trace, tail, dlq list/show/replay (once), topics."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.events import (
    Channel,
    CodeIssued,
    CodeRejected,
    CodeRejectReason,
    CodeRequested,
    ContractLinked,
    DeliveryStatus,
    Locale,
    NotificationKind,
    NotificationStatus,
)
from schemas.topics import (
    CODE_ISSUED,
    CODE_REJECTED,
    CODE_REQUESTED,
    CONTRACT_LINKED,
    CONTRACT_REJECTED,
    CONTRACT_TERMINATED,
    NOTIFICATION_STATUS,
    dlq_of,
)
from services.common.codec import encode
from services.ops.cli import app
from services.ops.dlq import REPLAY_HEADER
from services.ops.dlq import records as topic_records
from tests.support.kafka import produce, read_all
from tests.support.workers import Worker, free_port, service_env

pytestmark = pytest.mark.kafka
runner = CliRunner()
ENC = "v1.0a1b2c3d.QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"


def send(bootstrap: str, topic: str, *events: object) -> None:
    records = [(r.key, r.value) for r in (  # keyed: code.issued and the statuses are compacted
        encode(e, key=str(getattr(e, "code_id", e.event_id)), source="/test")  # type: ignore[arg-type,attr-defined]
        for e in events)]
    asyncio.run(produce(bootstrap, topic, records))


def test_trace_follows_a_request_by_event_id_and_by_code_id(kafka_bootstrap: str, prefix: str) -> None:
    now = datetime.now(UTC)
    request = CodeRequested(login="+7 916 123-45-67", channel=Channel.SMS, occurred_at=now)
    code_id = uuid.uuid4()
    issued = CodeIssued(code_id=code_id, request_event_id=request.event_id, account_id=uuid.uuid4(),
                        channel=Channel.SMS, destination_masked="+7******4567", destination_enc=ENC,
                        password_enc=ENC, expires_at=now + timedelta(hours=1), locale=Locale.RU,
                        occurred_at=now + timedelta(milliseconds=30))
    sent = NotificationStatus(code_id=code_id, channel=Channel.SMS, status=DeliveryStatus.SENT, attempts=2,
                              destination_masked="+7******4567", occurred_at=now + timedelta(seconds=1))
    # the password-changed notice of that code's first use carries its code id: not a delivery step
    notice = NotificationStatus(code_id=code_id, channel=Channel.SMS, status=DeliveryStatus.FAILED,
                                attempts=1, destination_masked="+7******4567", kind=NotificationKind.NOTICE,
                                occurred_at=now + timedelta(seconds=2))
    other = CodeRequested(login="8 916 000 00 00", channel=Channel.EMAIL, occurred_at=now)
    rejected = CodeRejected(request_event_id=other.event_id, reason=CodeRejectReason.CHANNEL_UNAVAILABLE,
                            advice="contact_support", support_phone="8 800 250-08-90",
                            occurred_at=now + timedelta(milliseconds=5))
    send(kafka_bootstrap, prefix + CODE_REQUESTED, request, other)
    send(kafka_bootstrap, prefix + CODE_ISSUED, issued)
    send(kafka_bootstrap, prefix + NOTIFICATION_STATUS, sent, notice)
    send(kafka_bootstrap, prefix + CODE_REJECTED, rejected)

    by_event = runner.invoke(app, ["trace", str(request.event_id)])
    assert by_event.exit_code == 0, by_event.output
    lines = by_event.output.strip().splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["requested", "event_id=" + str(request.event_id)], ["issued", f"code_id={code_id}"],
        ["sent", "attempts=2"], ["notice", "failed"]]
    assert "attempts=1" in lines[3]
    assert "+79161234567" not in by_event.output and "916 123-45-67" not in by_event.output
    assert "+7******4567" in by_event.output

    by_code = runner.invoke(app, ["trace", str(code_id), "--json"])
    assert [step["what"] for step in json.loads(by_code.output)] == [
        "requested", "issued", "sent", "notice failed"]

    support = runner.invoke(app, ["trace", str(other.event_id)])
    assert "rejected: channel_unavailable" in support.output
    assert "8 800 250-08-90" in support.output

    assert runner.invoke(app, ["trace", str(uuid.uuid4())]).exit_code == 1


def test_trace_finds_a_request_and_its_code_by_their_statuses_once_the_rest_aged_out(
        kafka_bootstrap: str, prefix: str) -> None:
    """The statuses are kept 14 days, the requests and codes 24 h: after a day only the
    statuses are left, and each code delivery's status carries its request's id."""
    now = datetime.now(UTC)
    request_id, code_id = uuid.uuid4(), uuid.uuid4()
    sent = NotificationStatus(code_id=code_id, request_event_id=request_id, channel=Channel.SMS,
                              status=DeliveryStatus.SENT, attempts=1,
                              destination_masked="+7******4567", occurred_at=now)
    notice = NotificationStatus(code_id=code_id, channel=Channel.SMS, status=DeliveryStatus.SENT,
                                attempts=1, destination_masked="+7******4567",
                                kind=NotificationKind.NOTICE, occurred_at=now + timedelta(minutes=5))
    send(kafka_bootstrap, prefix + NOTIFICATION_STATUS, sent, notice)
    for ident in (code_id, request_id):
        found = runner.invoke(app, ["trace", str(ident), "--json"])
        assert found.exit_code == 0, found.output
        assert [step["what"] for step in json.loads(found.output)] == ["sent", "notice sent"]


def test_tail_masks_inbound_personal_data(kafka_bootstrap: str, prefix: str) -> None:
    linked = ContractLinked.model_validate_json(
        (Path(__file__).parents[2] / "schemas/examples/ContractLinked.design.json").read_text()
    )
    send(kafka_bootstrap, prefix + CONTRACT_LINKED, linked)
    asyncio.run(produce(kafka_bootstrap, prefix + CONTRACT_LINKED, [(None, b"garbage +79161234567")]))
    result = runner.invoke(app, ["tail", CONTRACT_LINKED, "--from-beginning", "--limit", "2"])
    assert result.exit_code == 0, result.output
    for secret in ["+7 916 123-45-67", "ivanov@example.ru", "Иванов", "4510", "123456789012", "79161234567"]:
        assert secret not in result.output
    assert "+7******4567" in result.output and "i*****v@example.ru" in result.output
    assert "not shown" in result.output


def test_dlq_replay_sends_a_fixed_record_back_once_and_it_is_processed(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    big = json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
                      "contract_number": "77-BIG", "note": "x" * 3000}).encode()
    ce = [("ce_type", b"crm.contract.terminated.v1"), ("ce_id", b"\x00\xff binary")]
    asyncio.run(produce(kafka_bootstrap, prefix + CONTRACT_TERMINATED, [(b"77-BIG", big, ce)]))
    env = service_env(bootstrap=kafka_bootstrap, prefix=prefix, var_dir=tmp_path,
                      extra={"MAX_RECORD_BYTES": "2048"})
    worker = Worker(module="tests.support.probe_service", env=env, log_path=tmp_path / "1.log",
                    web_port=free_port()).start()
    try:
        asyncio.run(read_all(kafka_bootstrap, prefix + dlq_of(CONTRACT_TERMINATED),
                             until=lambda got: len(got) == 1))
    finally:
        worker.stop()

    listed = runner.invoke(app, ["dlq", "list"])
    assert f"{prefix}{dlq_of(CONTRACT_TERMINATED)}" in listed.output
    assert any(line.split()[-1] == "1" for line in listed.output.splitlines() if "terminated" in line)
    shown = runner.invoke(app, ["dlq", "show", dlq_of(CONTRACT_TERMINATED), "0"])
    assert "dlq_error_class: oversized_record" in shown.output
    assert "x" * 100 not in shown.output

    # the operator raises the limit (the fix), then replays the dead letter
    worker = Worker(module="tests.support.probe_service", env={**env, "MAX_RECORD_BYTES": "65536"},
                    log_path=tmp_path / "2.log", web_port=free_port()).start()
    try:
        first = runner.invoke(app, ["dlq", "replay", dlq_of(CONTRACT_TERMINATED), "0"])
        assert first.exit_code == 0, first.output
        again = runner.invoke(app, ["dlq", "replay", dlq_of(CONTRACT_TERMINATED), "0"])
        assert again.exit_code == 2 and "already replayed" in again.output
        out = asyncio.run(read_all(kafka_bootstrap, prefix + CONTRACT_REJECTED,
                                   until=lambda got: len(got) >= 1, timeout_s=60))
    finally:
        worker.stop()
    assert b"77-BIG" in (out[0].value or b"")
    source = asyncio.run(read_all(kafka_bootstrap, prefix + CONTRACT_TERMINATED))
    assert len(source) == 2  # the original and exactly one replay
    # the dead letter kept the original headers, and the replay sent them back byte for byte
    [dead] = asyncio.run(topic_records(kafka_bootstrap, prefix + dlq_of(CONTRACT_TERMINATED)))
    assert list(dead.raw_headers[:2]) == ce
    replayed = asyncio.run(topic_records(kafka_bootstrap, prefix + CONTRACT_TERMINATED))[1]
    assert list(replayed.raw_headers) == [*ce, (REPLAY_HEADER, b"%s:0:0" % (
        prefix + dlq_of(CONTRACT_TERMINATED)).encode())]


def test_dlq_replay_refuses_a_dead_letter_that_holds_only_part_of_its_value(
    kafka_bootstrap: str, prefix: str
) -> None:
    headers = [("dlq_original_topic", (prefix + CONTRACT_TERMINATED).encode()),
               ("dlq_error_class", b"oversized_record"), ("dlq_value_truncated", b"3145800")]
    asyncio.run(produce(kafka_bootstrap, prefix + dlq_of(CONTRACT_TERMINATED),
                        [(b"77-HUGE", b"{" + b"x" * 1000, headers)]))
    for force in ([], ["--force"]):
        refused = runner.invoke(app, ["dlq", "replay", dlq_of(CONTRACT_TERMINATED), "0", *force])
        assert refused.exit_code == 2, refused.output
        assert "holds the first 1001 bytes of a 3145800-byte value" in refused.output
    assert asyncio.run(read_all(kafka_bootstrap, prefix + CONTRACT_TERMINATED)) == []


def test_dlq_replay_refuses_a_dead_letter_that_holds_only_part_of_its_key(
    kafka_bootstrap: str, prefix: str
) -> None:
    headers = [("dlq_original_topic", (prefix + CONTRACT_TERMINATED).encode()),
               ("dlq_error_class", b"invalid_json"), ("dlq_key_truncated", b"3145728")]
    asyncio.run(produce(kafka_bootstrap, prefix + dlq_of(CONTRACT_TERMINATED),
                        [(b"k" * 65536, b"{not json", headers)]))
    for force in ([], ["--force"]):
        refused = runner.invoke(app, ["dlq", "replay", dlq_of(CONTRACT_TERMINATED), "0", *force])
        assert refused.exit_code == 2, refused.output
        assert "holds the first 65536 bytes of a 3145728-byte key" in refused.output
    assert asyncio.run(read_all(kafka_bootstrap, prefix + CONTRACT_TERMINATED)) == []


def test_topics_apply_twice_changes_nothing(kafka_bootstrap: str, prefix: str) -> None:
    result = runner.invoke(app, ["topics", "apply"])
    assert result.exit_code == 0 and "nothing changed" in result.output
    described = runner.invoke(app, ["topics", "describe"])
    assert "MISSING" not in described.output
    assert f"{prefix}selfcare.account.changed.v1" in described.output
    assert "cleanup.policy=compact" in described.output


def test_trace_shows_a_record_published_twice_once(kafka_bootstrap: str, prefix: str) -> None:
    """The outbox publishes at least once: a CodeIssued or a status on its topic twice (one
    event id) is one step, not a second code or a second send."""
    now = datetime.now(UTC)
    request = CodeRequested(login="+7 916 123-45-67", channel=Channel.SMS, occurred_at=now)
    code_id = uuid.uuid4()
    issued = CodeIssued(code_id=code_id, request_event_id=request.event_id,
                        account_id=uuid.uuid4(), channel=Channel.SMS,
                        destination_masked="+7******4567", destination_enc=ENC, password_enc=ENC,
                        expires_at=now + timedelta(hours=1), locale=Locale.RU,
                        occurred_at=now + timedelta(milliseconds=30))
    sent = NotificationStatus(code_id=code_id, request_event_id=request.event_id,
                              channel=Channel.SMS, status=DeliveryStatus.SENT, attempts=1,
                              destination_masked="+7******4567",
                              occurred_at=now + timedelta(seconds=1))
    send(kafka_bootstrap, prefix + CODE_REQUESTED, request)
    send(kafka_bootstrap, prefix + CODE_ISSUED, issued, issued)
    send(kafka_bootstrap, prefix + NOTIFICATION_STATUS, sent, sent)
    out = runner.invoke(app, ["trace", str(request.event_id)])
    assert out.exit_code == 0, out.output
    assert [line.split()[1] for line in out.output.strip().splitlines()] == [
        "requested", "issued", "sent"]
