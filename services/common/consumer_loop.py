"""Batches and the consumer loop every service shares: take, decode, handle, write in order,
publish, dead-letter, ack.

Each inbound topic has one agent (``register_agents``), whose body is ``await runner.run(stream)``.
``take_batches`` gathers the stream's records into batches that cost nothing while the topic is
idle. For each batch:

1. each record is decoded; a malformed one is dead-lettered (the topic's ``.dlq``) with the
   reason in headers, and the rest go on;
2. the handler does the batch's work in one database transaction, staging its output in the
   outbox (dedupe by ``event_id`` lives in the same transaction);
3. the outbox is published and dead letters are sent, both awaited until the broker has them;
4. only then are the batch's events acked, so offsets never pass a record whose effects are not
   durable (at-least-once).

Steps 3 and 4 of a batch run while the next batch is taken and handled (at most ``depth``
batches wait for them); acks stay in offset order. A handler may also split its work: it does
the part that later batches depend on (deciding) and returns a ``Finish`` for the rest, which
then overlaps with later batches too. A handler wrapped in ``InOrder`` (recovery: decide, then
argon2 hashing and the write) has the loop keep its writes in the order of the decisions
(``PendingWrites``) and is given, when it decides a batch, what the batches decided before it
and not written yet carry.

If the database is unavailable the work is retried with backoff, never skipped. If the
handler fails on a batch for another reason, the records are retried one by one so that a single
poison record goes to the DLQ (``processing_error``) and the others are processed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from asyncio import CancelledError
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from mode import CrashingSupervisor
from mode.utils.aiter import aiter
from mode.utils.futures import notify

from schemas.events import Event
from services.common.codec import DecodeError, WireRecord, decode
from services.common.db import is_transient
from services.common.faust_private import enable_passive, remove_processor
from services.common.metrics import ServiceMetrics
from services.common.publish import OutboxRelay, Publisher, dead_letter_record
from services.common.settings import CommonSettings

E = TypeVar("E", bound=Event)
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741  what a batch is made of (the runner's: ``Inbound[E]``)
P = TypeVar("P")
log = logging.getLogger(__name__)


async def take_batches(stream: Any, max_: int, within: float) -> AsyncGenerator[list[Any], None]:
    """Batches from a faust stream that cost nothing while the topic is idle.

    faust's ``Stream.take_events(max_, within)`` wakes every ``within`` seconds even when no
    record arrives, so a short ``within`` (good for latency) burns CPU on an idle worker, and a
    long one (good for idle CPU) delays every record. This waits without a timeout for the first
    record of a batch, then lingers at most ``within`` for the batch to fill — like a Kafka
    producer's ``linger.ms``. The next batch is gathered once the consumer's loop body returns
    for this one. Unlike ``take_events`` (whose code this follows), nothing is acked here: the
    caller acks each event with ``stream.ack`` once the batch's effects are durable, which may
    be after later batches were taken (``BatchRunner.run``)."""
    events: list[Any] = []
    started = asyncio.Event()  # the batch has its first event
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    channel_it = aiter(stream.channel)

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # the batch is being handled: wait for it
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found current_event is None")
            events.append(event)
            started.set()
            if len(events) >= max_:
                full.set()
                consumed.clear()
                await stream.wait(consumed)  # never more than max_ events in a batch
        except CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            stream.log.exception("Error adding to batch: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # the caller acks, once the batch is durable
    stream.add_processor(add_to_buffer)
    enable_passive(stream, channel_it)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(started)  # idle: no timeout, no wake-ups
            if stream.should_stop:
                break
            await stream.wait_for_stopped(full, timeout=within)
            if not events:  # pragma: no cover
                continue
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                events.clear()
                full.clear()
                started.clear()
                notify(consuming)
                consumed.set()
    finally:
        # acks stay with the caller (not given back to faust as ``take_events`` does): a record
        # the stream still passes while the worker stops must not be acked unhandled
        remove_processor(stream, add_to_buffer)


@dataclass(eq=False)
class Place(Generic[T]):
    """One decided batch in line: what it carries, and the batches queued before it."""

    item: T
    after: list[asyncio.Future[None]]  # settled when those batches are written or given up
    settled: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class PendingWrites(Generic[T]):
    """Batches decided but not written yet, oldest first.

    A later batch is decided while earlier ones still wait (for their hashes, say), so until an
    earlier batch is written a later one must count what it carries (``ahead``). Writes keep the
    order of the decisions: a batch's turn comes once every batch queued before it is settled,
    that is written or given up."""

    def __init__(self) -> None:
        self._queue: list[Place[T]] = []

    def ahead(self) -> list[T]:
        """What the batches queued now carry, oldest first (a batch being decided counts these);
        a snapshot: it does not change as batches settle."""
        return [place.item for place in self._queue]

    def enqueue(self, item: T) -> Place[T]:
        place = Place(item=item, after=[p.settled for p in self._queue])
        self._queue.append(place)
        return place

    async def wait_turn(self, place: Place[T]) -> None:
        """Returns once every batch queued before ``place`` is written or given up."""
        if place.after:
            await asyncio.wait(place.after)

    def settle(self, place: Place[T]) -> bool:
        """``place`` is written or given up: later batches stop counting it and may write.
        True if this call settled it (settling twice is harmless)."""
        if place in self._queue:
            self._queue.remove(place)
        if place.settled.done():
            return False
        place.settled.set_result(None)
        return True

    def settle_all(self) -> list[T]:
        """The loop stops: every batch still queued is given up; returns what they carried."""
        queued = list(self._queue)
        return [place.item for place in queued if self.settle(place)]

    def __len__(self) -> int:
        return len(self._queue)


@dataclass(frozen=True)
class RawRecord:
    """One consumed Kafka record, independent of faust (tests build these directly)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: float | None = None


@dataclass(frozen=True)
class Inbound(Generic[E]):
    """A decoded event with where it came from."""

    event: E
    raw: RawRecord


# The rest of a batch's work, run after later batches were handled; it may be called again
# after a transient database error, so it keeps what it already computed.
Finish = Callable[[], Awaitable[None]]
Handler = Callable[[list[Inbound[E]]], Awaitable[Finish | None]]
# what a consumer of a compacted topic does with tombstones (null values), after the batch's events
TombstoneHandler = Callable[[list[RawRecord]], Awaitable[None]]
C = TypeVar("C")


def each_as(to_command: Callable[[E], C],
            handle: Callable[[list[C]], Awaitable[object]]) -> Callable[[list[Inbound[E]]], Awaitable[None]]:
    """A handler that turns each event of the batch into its command and hands the commands to
    ``handle`` (a service-layer function) in one call: the edge of most agents."""

    async def handler(items: list[Inbound[E]]) -> None:
        await handle([to_command(item.event) for item in items])

    return handler


def tombstones_as(to_command: Callable[[list[str]], C],
                  handle: Callable[[C], Awaitable[object]]) -> TombstoneHandler:
    """A tombstone handler (``BatchRunner(tombstones=...)``): the distinct keys of the batch's
    tombstones, sorted (a keyless one names nothing), become one command for ``handle``. On a
    compacted topic keyed by an id, a tombstone's key is the id that no longer exists."""

    async def handler(records: list[RawRecord]) -> None:
        keys = sorted({record.key.decode("utf-8", "replace") for record in records if record.key})
        if keys:
            await handle(to_command(keys))

    return handler


@runtime_checkable
class Stoppable(Protocol):
    """A handler that holds work between batches; the runner calls ``stop`` when its loop ends
    (the worker stops or loses the partitions), after cancelling what was in flight."""

    def stop(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Decided(Generic[P]):
    """A batch an ``InOrder`` handler has decided: what later batches must count until it is
    written, and its write."""

    carries: P
    write: Finish  # after the batches decided before it; again after a transient error
    abandon: Callable[[], None] = lambda: None  # given up or the loop stops: drop its work


# decides a batch, given what the batches decided before it and not written yet carry
Decide = Callable[[list[I], list[P]], Awaitable[Decided[P]]]


class InOrder(Generic[I, P]):
    """A handler whose batches are decided one after another and written in that order.

    The loop's policy for such a handler: each decided batch is queued (``PendingWrites``) and
    the next decision is given what the queued ones carry; a batch's write runs once those
    before it are written or given up. A batch leaves the queue when it is written, given up
    (a failure other than the database being away: its records are redone one by one, each
    queued anew), cancelled, or when the loop stops (``stop``). While the database is away the
    runner calls the write again and the batch keeps its place."""

    def __init__(self, decide: Decide[I, P], *,
                 transient: Callable[[BaseException], bool] = is_transient) -> None:
        self.decide = decide
        self.transient = transient
        self.pending: PendingWrites[Decided[P]] = PendingWrites()

    def ahead(self) -> list[P]:
        return [decided.carries for decided in self.pending.ahead()]

    async def __call__(self, items: list[I]) -> Finish:
        decided = await self.decide(items, self.ahead())
        place = self.pending.enqueue(decided)

        async def write() -> None:
            try:
                await self.pending.wait_turn(place)
                await decided.write()
            except Exception as exc:
                if not self.transient(exc):
                    self._give_up(place)
                raise
            except BaseException:  # cancelled: the worker is stopping
                self._give_up(place)
                raise
            self.pending.settle(place)

        return write

    def stop(self) -> None:
        """Gives up every batch still queued (the loop stops; its writes were cancelled)."""
        for decided in self.pending.settle_all():
            decided.abandon()

    def _give_up(self, place: Place[Decided[P]]) -> None:
        if self.pending.settle(place):
            place.item.abandon()


# a check of a decoded event beyond its schema; raises ``DecodeError`` to dead-letter it
Check = Callable[[E], None]


class BatchRunner(Generic[E]):
    """The body of one agent: one topic's batches taken, decoded, handled, published and acked.

    ``model`` and ``handler`` take the topic's events; ``tombstones`` its null values (a
    compacted topic's "this key no longer exists"). A runner with ``tombstones`` but no model
    and no handler acts on tombstones only: it never decodes a value (the service may not even
    hold the keys that open one), acks each as it comes, and counts it ``ignored``."""

    def __init__(
        self,
        *,
        service: str,
        topic: str,
        model: type[E] | None,
        handler: Handler[E] | None,
        publisher: Publisher,
        relay: OutboxRelay,
        metrics: ServiceMetrics,
        max_record_bytes: int,
        batch_size: int = 500,
        within_s: float = 0.2,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        depth: int = 4,
        check: Check[E] | None = None,
        tombstones: TombstoneHandler | None = None,
    ) -> None:
        if (model is None) != (handler is None) or (model is None and tombstones is None):
            raise ValueError("a runner takes a model and its handler, or tombstones only")
        self.service = service
        self.topic = topic
        self.model = model
        self.handler = handler
        self.publisher = publisher
        self.relay = relay
        self.metrics = metrics
        self.max_record_bytes = max_record_bytes
        self.batch_size = batch_size
        self.within_s = within_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.depth = depth
        self.check = check
        self.tombstones = tombstones

    async def run(self, stream: Any) -> None:
        """The agent body: each batch is acked (in order) once its ``finish`` is done. A
        ``finish`` that fails ends the run with its error at once, even while the topic is idle
        (no later batch to notice it)."""
        await self.relay.flush()  # leftovers of a previous run
        finishing: deque[asyncio.Task[None]] = deque()
        failed: list[BaseException] = []
        idle = [False]  # waiting for the next batch, which may never come
        running = asyncio.current_task()

        def on_finished(task: asyncio.Task[None]) -> None:
            if task.cancelled() or task.exception() is None or failed:
                return
            failed.append(task.exception())  # type: ignore[arg-type]
            if idle[0] and running is not None:
                running.cancel()  # the wait below turns it into the failure

        try:
            # closed as soon as the loop ends, however it ends: its processor leaves the stream
            async with aclosing(take_batches(stream, self.batch_size, self.within_s)) as batches:
                while True:
                    if failed:
                        raise failed[0]
                    idle[0] = True
                    try:
                        events = await anext(batches)
                    except StopAsyncIteration:
                        break
                    except asyncio.CancelledError:
                        if failed and running is not None:  # by a failed finish, not a stop
                            running.uncancel()
                            raise failed[0] from None
                        raise
                    finally:
                        idle[0] = False
                    finish = await self.begin([_raw(event.message) for event in events])
                    previous = finishing[-1] if finishing else None
                    finishing.append(asyncio.ensure_future(
                        self._finish_then_ack(finish, events, stream, previous)))
                    finishing[-1].add_done_callback(on_finished)
                    while finishing and (len(finishing) > self.depth or finishing[0].done()):
                        await finishing.popleft()
                while finishing:
                    await finishing.popleft()
        finally:
            for pending in finishing:
                pending.cancel()
            if isinstance(self.handler, Stoppable):
                self.handler.stop()  # e.g. ``InOrder``: batches whose cancelled write never started

    async def _finish_then_ack(self, finish: Finish, events: Sequence[Any], stream: Any,
                               previous: asyncio.Task[None] | None) -> None:
        await finish()
        if previous is not None:
            await previous  # acks in offset order
        for event in events:
            await stream.ack(event)

    async def process(self, records: Sequence[RawRecord]) -> None:
        """A whole batch, start to finish (tests call this directly)."""
        finish = await self.begin(records)
        await finish()

    async def begin(self, records: Sequence[RawRecord]) -> Finish:
        """Decode and handle ``records``; returns what remains before they may be acked."""
        started = time.perf_counter()
        good: list[Inbound[E]] = []
        dead: list[WireRecord] = []
        tombs: list[RawRecord] = []
        ignored = 0
        for record in records:
            if record.value is None and self.tombstones is not None:
                tombs.append(record)
                continue
            if self.model is None:
                ignored += 1  # tombstones only: a value is not read
                continue
            try:
                event = decode(self.model, record.value, max_bytes=self.max_record_bytes)
                if self.check is not None:
                    self.check(event)
            except DecodeError as exc:
                dead.append(self._dead(record, exc.error_class, exc.reason))
                continue
            good.append(Inbound(event=event, raw=record))
        handlers_part: Finish | None = None
        if good:
            handlers_part, poison = await self._handle(good)
            dead.extend(poison)

        async def finish() -> None:
            if handlers_part is not None:
                dead.extend(await self._complete(handlers_part, good))
            if tombs:  # after the batch's events: a key's tombstone follows its last value
                dead.extend(await self._tombstones(tombs))
            await self.relay.flush()
            if dead:
                await self.publisher.send_all([(self.topic + ".dlq", d) for d in dead])
            processed = len(records) - len(dead) - ignored
            self.metrics.events_consumed.labels(self.topic, "processed").inc(processed)
            self.metrics.events_consumed.labels(self.topic, "dead_lettered").inc(len(dead))
            if ignored:
                self.metrics.events_consumed.labels(self.topic, "ignored").inc(ignored)
            self.metrics.batch_seconds.labels(self.topic).observe(time.perf_counter() - started)
            newest = max((r.timestamp or 0.0 for r in records), default=0.0)
            if newest:
                self.metrics.lag_seconds.labels(self.topic).set(max(time.time() - newest, 0.0))

        return finish

    async def _handle(self, items: list[Inbound[E]]) -> tuple[Finish | None, list[WireRecord]]:
        """Run the handler; returns its finish and dead letters for poison records."""
        handler = self.handler
        assert handler is not None, "events reach a runner with a model only"
        return await self._isolating(lambda: handler(items), items)

    async def _tombstones(self, tombs: list[RawRecord]) -> list[WireRecord]:
        """Run the tombstone handler, retried while the database is away; on another failure the
        tombstones are redone one by one, so that only one that fails on its own is dead-lettered
        (``processing_error``). Returns the dead letters."""
        handle = self.tombstones
        assert handle is not None, "tombstones reach a runner with a tombstone handler only"
        try:
            await self._with_db_retry(lambda: handle(tombs))
            return []
        except Exception as exc:
            if len(tombs) == 1:
                log.error("tombstone failed processing; dead-lettered (%s)", type(exc).__name__,
                          extra={"topic": self.topic})
                return [self._dead(tombs[0], "processing_error", type(exc).__name__)]
            log.warning("tombstones failed (%s); retrying its %d one by one", type(exc).__name__,
                        len(tombs), extra={"topic": self.topic})
        dead: list[WireRecord] = []
        for tomb in tombs:
            dead.extend(await self._tombstones([tomb]))
        return dead

    async def _complete(self, finish: Finish, items: list[Inbound[E]]) -> list[WireRecord]:
        """Run a handler's finish; returns dead letters for poison records."""
        _, dead = await self._isolating(finish, items)
        return dead

    async def _isolating(
        self, work: Callable[[], Awaitable[T]], items: list[Inbound[E]]
    ) -> tuple[T | None, list[WireRecord]]:
        """``work`` retried while the database is away; on another failure its records are redone
        one by one, start to finish, so that only a poison record is dead-lettered."""
        try:
            return await self._with_db_retry(work), []
        except Exception as exc:
            if len(items) == 1:
                return None, [self._poison(items[0], exc)]
            log.warning(
                "batch failed (%s); retrying its %d records one by one",
                type(exc).__name__, len(items), extra={"topic": self.topic},
            )
        return None, await self._one_by_one(items)

    async def _one_by_one(self, items: list[Inbound[E]]) -> list[WireRecord]:
        dead: list[WireRecord] = []
        for item in items:
            finish, poison = await self._handle([item])
            dead.extend(poison)
            if finish is not None:
                dead.extend(await self._complete(finish, [item]))
        return dead

    def _poison(self, item: Inbound[E], exc: Exception) -> WireRecord:
        log.error(
            "record failed processing; dead-lettered (%s)", type(exc).__name__, exc_info=exc,
            extra={"topic": self.topic, "event_id": str(item.event.event_id)},
        )
        return self._dead(item.raw, "processing_error", type(exc).__name__)

    async def _with_db_retry(self, work: Callable[[], Awaitable[T]]) -> T:
        delay = self.retry_initial_s
        while True:
            try:
                return await work()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.metrics.batch_retries.labels(self.topic).inc()
                log.warning(
                    "database unavailable (%s); retrying batch in %.1fs",
                    type(exc).__name__, delay, extra={"topic": self.topic},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    def _dead(self, record: RawRecord, error_class: str, reason: str) -> WireRecord:
        self.metrics.dlq_records.labels(self.topic, error_class).inc()
        log.warning(
            "record dead-lettered: %s", error_class,
            extra={"topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "error_class": error_class},
        )
        return dead_letter_record(
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, error_class=error_class, reason=reason,
            service=self.service, original_headers=record.headers,
        )


@dataclass(frozen=True, kw_only=True)
class Runners:
    """Builds a service's ``BatchRunner``s with what they all share: the service's name, batch
    settings, publisher, relay and metrics."""

    settings: CommonSettings
    publisher: Publisher
    relay: OutboxRelay
    metrics: ServiceMetrics

    def __call__(self, topic: str, model: type[E], handler: Handler[E], *,
                 check: Check[E] | None = None,
                 tombstones: TombstoneHandler | None = None) -> BatchRunner[E]:
        """A runner of ``topic``'s events (and of its tombstones, if ``tombstones``)."""
        return self._runner(topic, model, handler, check=check, tombstones=tombstones)

    def tombstones_only(self, topic: str, tombstones: TombstoneHandler) -> BatchRunner[Event]:
        """A runner of ``topic``'s tombstones; its values are acked unread."""
        return self._runner(topic, None, None, tombstones=tombstones)

    def _runner(self, topic: str, model: type[E] | None, handler: Handler[E] | None, *,
                check: Check[E] | None = None,
                tombstones: TombstoneHandler | None = None) -> BatchRunner[E]:
        settings = self.settings
        return BatchRunner(
            service=settings.service, topic=topic, model=model, handler=handler,
            publisher=self.publisher, relay=self.relay, metrics=self.metrics,
            max_record_bytes=settings.max_record_bytes, batch_size=settings.batch_size,
            within_s=settings.batch_within_s, check=check, tombstones=tombstones,
        )


def register_agents(app: Any, settings: CommonSettings,
                    runners: Sequence[BatchRunner[Any]]) -> None:
    """One agent per runner, named ``<service>.<topic>``, on the runner's topic (keys and values
    as bytes); each body is ``await runner.run(stream)``.

    An exception out of a runner (what its own retries and dead-lettering did not settle: the
    broker away past the producer's time-out, a dead-letter record the broker refuses) stops the
    worker, which exits 1 (``CrashingSupervisor``) and is started again by what supervises it
    (Kubernetes restarts the container): the batches not acked are read again from the
    committed offsets. faust's default restarts the agent alone on the same stream, where the
    batches it had taken would never be handled nor acked, and the partition's offsets would
    stop moving without a word."""
    for runner in runners:
        topic = app.topic(settings.topic(runner.topic), key_type=bytes, value_type=bytes,
                          internal=False)

        async def agent(stream: Any, runner: BatchRunner[Any] = runner) -> None:
            await runner.run(stream)

        name = f"{settings.service}.{runner.topic}"
        agent.__name__ = agent.__qualname__ = re.sub(r"\W", "_", name)
        app.agent(topic, name=name, supervisor_strategy=CrashingSupervisor)(agent)


def _raw(message: Any) -> RawRecord:
    headers = message.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    return RawRecord(
        topic=message.topic, partition=message.partition, offset=message.offset,
        key=message.key, value=message.value, headers=list(headers),
        timestamp=message.timestamp,
    )
