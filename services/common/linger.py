"""Batches from a faust stream that cost nothing while the topic is idle.

faust's ``Stream.take_events(max_, within)`` wakes every ``within`` seconds even when no record
arrives, so a short ``within`` (good for latency) burns CPU on an idle worker, and a long one
(good for idle CPU) delays every record. ``take_batches`` waits without a timeout for the first
record of a batch, then lingers at most ``within`` for the batch to fill — like a Kafka
producer's ``linger.ms``. The next batch is gathered once the consumer's loop body returns for
this one. Unlike ``take_events`` (whose code this follows), nothing is acked here: the caller
acks each event with ``stream.ack`` once the batch's effects are durable, which may be after
later batches were taken (see ``services.common.consumer_loop``).
"""

from __future__ import annotations

import asyncio
from asyncio import CancelledError
from collections.abc import AsyncIterator
from typing import Any

from mode.utils.aiter import aiter
from mode.utils.futures import notify


async def take_batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    events: list[Any] = []
    started = asyncio.Event()  # the batch has its first event
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    enable_acks: bool = stream.enable_acks
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
    stream._enable_passive(channel_it)
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
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)
