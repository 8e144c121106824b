"""Publishing: the outbox relay and the dead-letter helper, over the app's Kafka producer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter
from sqlalchemy import Table
from sqlalchemy.orm import Session

from services.common.codec import WireRecord
from services.common.db import Database, Staged, delete_outbox, pending_outbox
from services.common.faust_private import kafka_producer
from services.common.metrics import ServiceMetrics

log = logging.getLogger(__name__)

# an outbox row known by its id and its content (``_fingerprint``)
Fingerprint = tuple[int, str, bytes | None, bytes | None]


def in_background(flush: Callable[[], Awaitable[object]], what: str) -> Callable[[], Awaitable[None]]:
    """``flush`` started and not waited for: for an answer that must not wait for the broker
    once its records are committed in the outbox (a broker away delays them: the relay's sweep
    publishes them later). A failure is one WARNING line naming ``what`` waits."""
    running: set[asyncio.Future[object]] = set()

    def _done(task: asyncio.Future[object]) -> None:
        running.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("%s waits for the outbox sweep (%s)", what, type(exc).__name__)

    async def start() -> None:
        task = asyncio.ensure_future(flush())
        running.add(task)
        task.add_done_callback(_done)

    return start


# A call with fewer records than this sends them one by one: each joins the batch aiokafka is
# filling for its partition. A batch handed over whole waits until the partition's earlier batch
# has left, and aiokafka keeps one request in flight per broker, so many small calls at once
# (one per HTTP request) would then go one request each.
BATCH_FROM = 64


class Publisher:
    """Sends records with the app's producer and waits until the broker has them (acks=all)."""

    def __init__(self, *, app: Any, topic_prefix: str) -> None:
        self._app = app
        self._prefix = topic_prefix

    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        """Each record to the partition its key chooses (the app's partitioner: Kafka's default);
        records of one partition keep their order. Returns when every record is acknowledged,
        and raises if any is refused."""
        if len(items) < BATCH_FROM:
            await self._one_by_one(items)
        else:
            await self._in_batches(items)

    async def _one_by_one(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        acks: list[asyncio.Future[Any]] = []
        for topic, record in items:
            acks.append(await self._app.producer.send(
                self._prefix + topic, record.key, record.value, None, None, record.headers))
        await asyncio.gather(*acks)  # every refusal retrieved, the first raised

    async def _in_batches(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        """One aiokafka batch per partition (more when one fills up), rather than a send per
        record: about half the CPU per record, and one ack per batch."""
        producer = kafka_producer(self._app)
        # the app's partitioner, given the topic's partitions as aiokafka gives them to it
        partitioner = self._app.producer.partitioner or DefaultPartitioner()
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        batches: dict[tuple[str, int], Any] = {}
        acks: list[asyncio.Future[Any]] = []
        for topic, record in items:
            name = self._prefix + topic
            choice = partitions.get(name)
            if choice is None:  # all partitions (once the metadata has the topic), those with a leader
                every = list(await producer.partitions_for(name))
                available = producer.client.cluster.available_partitions_for_topic(name)
                choice = partitions[name] = (every, list(available))
            where = (name, partitioner(record.key, *choice))
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = producer.create_batch()
            # a full batch refuses the record (an empty one takes any): send it, start another
            while batch.append(key=record.key, value=record.value, timestamp=None,
                               headers=record.headers) is None:
                acks.append(await producer.send_batch(batch, where[0], partition=where[1]))
                batch = batches[where] = producer.create_batch()
        for (name, partition), batch in batches.items():
            acks.append(await producer.send_batch(batch, name, partition=partition))
        await asyncio.gather(*acks)


class OutboxRelay:
    """Publishes what handlers staged in the outbox, then deletes it (see ``store``).

    Units of work hand over the rows each transaction staged with ``committed``, right after its
    commit and in commit order; the relay keeps them in memory and publishes them from there, so
    a batch costs one delete and no read. The table itself is read at the first flush (leftovers
    of an earlier run) and after a failed publish, and the memory queue is dropped then (the table
    holds all of it).

    Several workers may share one database, and a worker killed between a commit and its publish
    leaves rows no live worker holds in memory. ``sweep`` (every ``OUTBOX_SWEEP_S``, see
    ``sweep_forever``) finds them: a row that is in the table at two sweeps in a row and is not
    in this worker's memory has outlived its writer's publish by a whole period, and is published
    here. If its writer was only slow (a broker away longer than the period), the record goes out
    twice; readers dedupe by ``event_id``, as they do after any crash."""

    def __init__(self, *, db: Database, table: Table, publisher: Publisher,
                 swept: Counter | None = None) -> None:
        self._db = db
        self._table = table
        self._publisher = publisher
        self._swept = swept  # rows published for a writer that did not (a metric)
        self._lock = asyncio.Lock()
        self._read_table = True
        # the rows in the table at the last sweep that this worker did not hold
        self._others: set[Fingerprint] = set()
        # rows of committed transactions not yet published, in commit order; appended to by the
        # database thread (``committed``), taken from the front by ``flush``
        self._committed: list[Staged] = []

    def committed(self, rows: Sequence[Staged]) -> None:
        """Take the rows a transaction staged, once it has committed (an ``HandOver``)."""
        self._committed.extend(rows)

    async def flush(self) -> int:
        async with self._lock:
            try:
                if self._read_table:
                    return await self._read_all()
                sent = 0
                while self._committed:
                    staged = self._committed[:5000]
                    del self._committed[:len(staged)]
                    await self._publish(staged, await_delete=False)
                    sent += len(staged)
                return sent
            except BaseException:
                self._read_table = True  # what was not deleted is published from the table
                raise

    async def sweep(self) -> int:
        """Publish the rows another writer left: in the table at the last sweep and at this one,
        and never in this worker's memory. Returns how many."""
        async with self._lock:
            if self._read_table:  # a publish failed: all of the table now, not at a flush to come
                return await self._read_all()
            # under the lock no flush runs, and the deletes of what flushes published are queued
            # on the database thread ahead of this read: a row of this worker's own is in memory
            waiting = await self._db.run(lambda s: pending_outbox(s, self._table))
            mine = {item.id for item in self._committed}
            # a row is known by its id and its bytes: SQLite may give a deleted row's id again
            others = {_fingerprint(item): item for item in waiting if item.id not in mine}
            staged = [item for fingerprint, item in others.items() if fingerprint in self._others]
            self._others = set(others) - {_fingerprint(item) for item in staged}
            if not staged:
                return 0
            try:
                await self._publish(staged)
            except BaseException:
                self._read_table = True
                raise
            log.info("published %d outbox rows another worker committed and did not publish",
                     len(staged))
            if self._swept is not None:
                self._swept.inc(len(staged))
            return len(staged)

    async def sweep_forever(self, every_s: float) -> None:
        """``sweep`` every ``every_s`` seconds; a failed sweep is logged and tried next time."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("outbox sweep failed (%s); trying again in %.0f s",
                            type(exc).__name__, every_s)

    async def _read_all(self) -> int:
        """Publish all of the table (at the start, and after a failed publish); the memory
        queue holds nothing the table does not."""
        self._committed.clear()
        self._read_table = False
        try:
            return await self._drain()
        except BaseException:
            self._read_table = True  # read it all again next time
            raise

    async def _drain(self) -> int:
        sent: set[Fingerprint] = set()
        while True:
            staged = await self._db.run(lambda s: pending_outbox(s, self._table))
            if not staged:
                break
            await self._publish(staged)
            sent.update(_fingerprint(item) for item in staged)
        # rows committed while the table was read are handed over too: not twice. Known by their
        # bytes as well as their id: once the table is empty SQLite gives a published row's id to
        # the next one, committed after the last read and so not published here. Only the first
        # ``seen`` entries are replaced, so one the database thread appends meanwhile stays.
        committed = self._committed
        seen = len(committed)
        committed[:seen] = [i for i in committed[:seen] if _fingerprint(i) not in sent]
        return len(sent)

    async def _publish(self, staged: list[Staged], *, await_delete: bool = True) -> None:
        """Send ``staged`` and delete their rows. Unless ``await_delete``, the delete is queued
        and not waited for: the records are on the broker, and a row whose delete is lost goes
        out once more at the next table read (readers dedupe). Reads of the table are queued
        after it on the same database thread, so they never see a row it deletes."""
        await self._publisher.send_all([(item.topic, item.record) for item in staged])
        ids = [item.id for item in staged]

        def _delete(session: Session) -> None:
            delete_outbox(session, self._table, ids)

        deleted = self._db.submit(_delete)
        if await_delete:
            await deleted
        else:
            deleted.add_done_callback(_log_failed_delete)


def start_relay(app: Any, *, db: Database, table: Table, publisher: Publisher,
                metrics: ServiceMetrics, sweep_every_s: float) -> OutboxRelay:
    """The service's relay, with its sweep running as one of the app's tasks."""
    relay = OutboxRelay(db=db, table=table, publisher=publisher, swept=metrics.counter(
        "outbox_swept_total",
        "Outbox rows published by a sweep: committed by a worker that did not publish them.", []))

    @app.task  # type: ignore[misc]
    async def _sweep() -> None:
        await relay.sweep_forever(sweep_every_s)

    return relay


def _fingerprint(item: Staged) -> Fingerprint:
    """A row known by its id and its content: SQLite may give a deleted row's id again."""
    return item.id, item.topic, item.record.key, item.record.value


def _log_failed_delete(deleted: asyncio.Future[None]) -> None:
    if not deleted.cancelled() and deleted.exception() is not None:
        log.warning("published outbox rows not deleted (%s); they go out again at the next read",
                    type(deleted.exception()).__name__)


# The most of an original value a dead-letter record carries: below a broker's default
# ``message.max.bytes`` (1 MiB) with the key and headers, and the .dlq topics' 2 MiB. A record
# larger than that can reach a consumer only compressed (the inbound topics take at most 2 MiB as
# the producer sent it); sent on uncompressed and whole, the broker would refuse it, and the batch
# could then be neither handled nor dead-lettered.
DLQ_VALUE_MAX_BYTES = 512 * 1024
# the most of an original key a dead letter carries, for the same reason: beyond it the key is
# cut to that size and ``dlq_key_truncated`` gives its length
DLQ_KEY_MAX_BYTES = 64 * 1024
# the most of the original headers a dead letter carries, for the same reason: beyond it they
# are left out and ``dlq_headers_dropped`` says how many there were. Each header counts its
# name's UTF-8 bytes, its value's bytes and ``DLQ_HEADER_OVERHEAD_BYTES`` (the two lengths it is
# encoded with, at most 3 bytes each below this bound), so a million empty headers count too.
DLQ_HEADERS_MAX_BYTES = 64 * 1024
DLQ_HEADER_OVERHEAD_BYTES = 8


def _header_bytes(name: str, value: bytes | None) -> int:
    # surrogatepass: never raises, whatever the name holds
    return len(name.encode("utf-8", "surrogatepass")) + len(value or b"") + DLQ_HEADER_OVERHEAD_BYTES


def dead_letter_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error_class: str,
    reason: str,
    service: str,
    original_headers: Sequence[tuple[str, bytes]] = (),
) -> WireRecord:
    """The original record unchanged — its key, value and headers (its CloudEvents headers, say) —
    with plain-text ``dlq_*`` headers after them saying where it came from and why (an original
    header of that name is left out: it would be taken for ours). A tombstone stays a tombstone
    (a null value, not an empty one). A value larger than ``DLQ_VALUE_MAX_BYTES`` is cut to that
    size, and ``dlq_value_truncated`` gives its length; a key larger than ``DLQ_KEY_MAX_BYTES``
    likewise, with ``dlq_key_truncated``; original headers larger than ``DLQ_HEADERS_MAX_BYTES``
    together (see ``_header_bytes``) are left out, and ``dlq_headers_dropped`` gives how many. The
    dead letter is thus well below the .dlq topics' 2 MiB, whatever the original record."""
    kept = [(k, v) for k, v in original_headers if not k.startswith("dlq_")]
    dropped = 0
    size = 0
    for k, v in kept:
        size += _header_bytes(k, v)
        if size > DLQ_HEADERS_MAX_BYTES:
            kept, dropped = [], len(kept)
            break
    headers = [
        ("dlq_original_topic", topic),
        ("dlq_original_partition", str(partition)),
        ("dlq_original_offset", str(offset)),
        ("dlq_error_class", error_class),
        ("dlq_error_message", reason[:500]),
        ("dlq_service", service),
        ("dlq_failed_at", datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")),
    ]
    if value is not None and len(value) > DLQ_VALUE_MAX_BYTES:
        headers.append(("dlq_value_truncated", str(len(value))))
        value = value[:DLQ_VALUE_MAX_BYTES]
    if key is not None and len(key) > DLQ_KEY_MAX_BYTES:
        headers.append(("dlq_key_truncated", str(len(key))))
        key = key[:DLQ_KEY_MAX_BYTES]
    if dropped:
        headers.append(("dlq_headers_dropped", str(dropped)))
    return WireRecord(
        key=key, value=value, headers=[*kept, *((k, v.encode("utf-8")) for k, v in headers)]
    )
