"""The notifier's side of the lifecycle on SQLite and PostgreSQL: account tombstones delete the
account's deliveries (other values are not even decoded; a tombstone the database refuses is
dead-lettered alone), and finished deliveries are pruned after RETENTION_DAYS, their statuses
tombstoned with them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from sqlalchemy import select

from schemas.events import Channel, Event, PasswordChanged
from schemas.topics import ACCOUNT_CHANGED, NOTIFICATION_STATUS
from services.common.codec import WireRecord, header
from services.common.consumer_loop import BatchRunner, RawRecord, tombstones_as
from services.common.metrics import ServiceMetrics
from services.common.retention import DAY_S, Pruner
from services.notifier.adapters.tables import deliveries, outbox, processed_events, prunable
from services.notifier.domain.commands import EraseDeliveries
from services.notifier.domain.notices import notice_delivery_id
from services.notifier.entrypoints.agents import erase_deliveries_of, passwords_changed
from services.notifier.service_layer.erase_deliveries import erase_deliveries
from services.notifier.service_layer.record_notices import record_notices
from tests.notifier.integration.test_handlers import Harness
from tests.notifier.integration.test_handlers import harness as harness_fixture
from tests.notifier.integration.test_routing import notice_raw, password_changed
from tests.notifier.support import code_issued

harness = harness_fixture  # the fixture of test_handlers, on SQLite and PostgreSQL


def rows(h: Harness, table: object = deliveries) -> list[object]:
    return list(h.db.run_sync(lambda s: s.execute(select(table)).all()))  # type: ignore[call-overload]


def account_topic(h: Harness) -> BatchRunner[Event]:
    """The accounts topic's runner as the bootstrap builds it: tombstones only."""
    return BatchRunner(
        service="notifier", topic=ACCOUNT_CHANGED, model=None, handler=None,
        tombstones=tombstones_as(erase_deliveries_of,
                                 partial(erase_deliveries, uow=h.uow)),
        publisher=h.publisher, relay=h.relay, metrics=ServiceMetrics("notifier"),  # type: ignore[arg-type]
        max_record_bytes=65536,
    )


def on_accounts(*records: tuple[bytes | None, bytes | None]) -> list[RawRecord]:
    return [RawRecord(topic=ACCOUNT_CHANGED, partition=0, offset=i, key=key, value=value, headers=[])
            for i, (key, value) in enumerate(records)]


def dead_letters(h: Harness) -> list[WireRecord]:
    return [r for t, r in h.publisher.sent if t.endswith(".dlq")]


async def test_a_tombstone_deletes_the_account_deliveries_and_values_are_not_decoded(
    harness: Harness,
) -> None:
    erased, kept = uuid.uuid4(), uuid.uuid4()
    gone = [code_issued(to="+79161234567", account_id=erased),
            code_issued(to="ivanov@example.ru", channel=Channel.EMAIL, account_id=erased)]
    await harness.consume(*gone, code_issued(to="+79031112233", account_id=kept))
    await harness.dispatch()  # one delivered, the others still queued or sent
    assert len(rows(harness)) == 3
    runner = account_topic(harness)
    batch = on_accounts(
        (str(kept).encode(), b"\xff not JSON, never opened"),  # a value: ignored, not dead-lettered
        (str(erased).encode(), None),
        (str(erased).encode(), None),  # twice in a batch
        (None, None),  # no key: nothing to erase
    )
    before = len(harness.publisher.sent)
    await runner.process(batch)
    # a tombstone on the status topic for each code id of the erased deliveries, published
    tombstones = harness.publisher.sent[before:]
    assert {(t, r.value) for t, r in tombstones} == {(NOTIFICATION_STATUS, None)}
    assert sorted(r.key or b"" for _, r in tombstones) == sorted(str(c.code_id).encode() for c in gone)
    await runner.process(batch)  # idempotent
    assert len(harness.publisher.sent) == before + len(gone)  # no tombstone twice, no dead letter
    left = rows(harness)
    assert [r.account_id for r in left] == [str(kept)]  # type: ignore[attr-defined]
    await runner.process(on_accounts((str(kept).encode(), b"{}")))
    assert rows(harness) == left and dead_letters(harness) == []


async def test_a_tombstone_the_database_refuses_is_dead_lettered_alone(harness: Harness) -> None:
    """A key PostgreSQL cannot take as text (a NUL byte) fails its batch; the batch is redone one
    tombstone at a time, so the other erasures happen and that one tombstone goes to the DLQ.
    SQLite takes the key, and it names no account."""
    erased = uuid.uuid4()
    await harness.consume(code_issued(to="+79161234567", account_id=erased))
    await account_topic(harness).process(on_accounts((b"bad\x00key", None),
                                                     (str(erased).encode(), None)))
    assert rows(harness) == []
    dead = dead_letters(harness)
    if harness.db.engine.dialect.name == "postgresql":
        [letter] = dead
        assert letter.key == b"bad\x00key" and letter.value is None  # a tombstone stays one
        assert header(letter.headers, "dlq_error_class") == "processing_error"
        assert header(letter.headers, "dlq_original_topic") == ACCOUNT_CHANGED
    else:
        assert dead == []


async def test_finished_deliveries_are_pruned_once_the_clock_has_moved_on(harness: Harness) -> None:
    sent = code_issued(to="+79161234567", expires_in_s=600)
    await harness.consume(sent)
    await harness.dispatch()
    assert harness.row(sent.code_id)["state"] == "sent"
    pruned = PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry())
    pruner = Pruner(db=harness.db, tables=prunable, retention_days=30, pruned=pruned, batch=1)
    assert await pruner.prune(time.time()) == 0
    assert await pruner.prune(time.time() + 31 * DAY_S) == 2  # the delivery and the event id
    assert rows(harness) == [] and rows(harness, processed_events) == []
    assert pruned.labels("deliveries")._value.get() == 1
    # the same CodeIssued redelivered after the retention: by then its code has expired (a code
    # lives CODE_TTL_S, far less than RETENTION_DAYS), so it is recorded failed and not sent
    late = sent.model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    await harness.consume(late)
    await harness.dispatch()
    assert len(harness.sms.sent) == 1
    assert harness.row(sent.code_id)["state"] == "failed"


async def test_a_pruned_delivery_takes_its_statuses_off_the_topic_so_an_erasure_leaves_none(
    harness: Harness,
) -> None:
    """RETENTION_DAYS below the status topic's 14 days: a delivery pruned before its account is
    erased can no longer be found by the erasure, so the prune itself tombstones its statuses
    (in the transaction that deletes it), and the relay publishes them."""
    account = uuid.uuid4()
    old, fresh = (code_issued(to="+79161234567", account_id=account, expires_in_s=600),
                  code_issued(to="ivanov@example.ru", channel=Channel.EMAIL, account_id=account,
                              expires_in_s=600))
    await harness.consume(old, fresh)
    await harness.dispatch()
    assert harness.statuses(old.code_id) and harness.statuses(fresh.code_id)
    # the second delivery finished 6 days after the first: only the first is 8 days old below
    harness.db.run_sync(lambda s: s.execute(deliveries.update().where(
        deliveries.c.code_id == str(fresh.code_id)).values(
        updated_at=datetime.now(UTC) + timedelta(days=6), expires_at=datetime.now(UTC) + timedelta(days=6))))
    pruned = PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry())
    pruner = Pruner(db=harness.db, tables=prunable, retention_days=7, pruned=pruned,
                    hand_over=harness.relay.committed, flush=harness.relay.flush)
    await harness.relay.flush()
    before = len(harness.publisher.sent)
    assert await pruner.prune(time.time() + 8 * DAY_S) == 3  # the old delivery, two event ids
    assert [r.account_id for r in rows(harness)] == [str(account)]  # type: ignore[attr-defined]
    sent = harness.publisher.sent[before:]
    assert [(t, r.key, r.value) for t, r in sent] == [
        (NOTIFICATION_STATUS, str(old.code_id).encode(), None)]
    # published, and deleted from the outbox (the delete queued on the database thread before this)
    assert await harness.db.run(lambda s: s.execute(select(outbox)).all()) == []
    # the erasure then finds the delivery still kept and retracts its statuses: none is left
    before = len(harness.publisher.sent)
    await erase_deliveries(EraseDeliveries(account_ids=(str(account),)), uow=harness.uow)
    await harness.relay.flush()  # what the runner does once its batch is done
    assert [(t, r.key, r.value) for t, r in harness.publisher.sent[before:]] == [
        (NOTIFICATION_STATUS, str(fresh.code_id).encode(), None)]
    assert rows(harness) == []


async def test_a_pruned_notice_takes_its_statuses_off_the_topic_under_the_codes_key(
    harness: Harness,
) -> None:
    """A notice's statuses are keyed by the activated code's id (``status_code_id``), not by the
    notice's own delivery id: its prune tombstones that key. Keyed by the row's own id, the
    tombstone would retract nothing, and a notice status published after the code's own row was
    pruned would stay on the compacted topic past the account's erasure."""
    account = uuid.uuid4()
    code = code_issued(to="+79161234567", account_id=account, expires_in_s=600)
    await harness.consume(code)
    await harness.dispatch()
    notices: BatchRunner[PasswordChanged] = BatchRunner(
        service="notifier", topic="selfcare.password.changed.v1", model=PasswordChanged,
        handler=passwords_changed(partial(record_notices, uow=harness.uow, ttl_s=600)),
        publisher=harness.runner.publisher, relay=harness.runner.relay,
        metrics=harness.metrics.base, max_record_bytes=65536)
    changed = password_changed({Channel.SMS: "+79161234567"}, code_id=code.code_id)
    await notices.process([notice_raw(changed.model_copy(update={"account_id": account}))])
    await harness.dispatch()
    notice_id = notice_delivery_id(str(code.code_id), "sms")
    assert harness.row(uuid.UUID(notice_id))["state"] == "sent"
    harness.db.run_sync(lambda s: s.execute(deliveries.update().where(  # the code's row is kept
        deliveries.c.code_id == str(code.code_id)).values(
        updated_at=datetime.now(UTC) + timedelta(days=6), expires_at=datetime.now(UTC) + timedelta(days=6))))
    pruner = Pruner(db=harness.db, tables=prunable, retention_days=7,
                    pruned=PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry()),
                    hand_over=harness.relay.committed, flush=harness.relay.flush)
    await harness.relay.flush()
    before = len(harness.publisher.sent)
    await pruner.prune(time.time() + 8 * DAY_S)
    assert [r.code_id for r in rows(harness)] == [str(code.code_id)]  # type: ignore[attr-defined]
    assert [(t, r.key, r.value) for t, r in harness.publisher.sent[before:]] == [
        (NOTIFICATION_STATUS, str(code.code_id).encode(), None)]
