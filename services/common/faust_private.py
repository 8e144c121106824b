"""Every use of faust's and aiokafka's private API, in one place.

Each function or class here reaches into an attribute or hook that faust-streaming or aiokafka
do not document, so an upgrade may remove or change it. They are pinned to the versions in
``FAUST_VERSION`` and ``AIOKAFKA_VERSION``; ``tests/common/test_faust_private.py`` checks those
versions and exercises each one against a real app, stream, web server and consumer, so that an
upgrade fails there, in one place, instead of deep inside a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from aiohttp.web import AppRunner
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

FAUST_VERSION = "0.15.3"
AIOKAFKA_VERSION = "0.14.0"


# faust: streams (used by services.common.consumer_loop.take_batches, which follows
# ``Stream.take_events``)

def enable_passive(stream: Any, channel_iterator: Any) -> None:
    """Let ``stream`` pull from ``channel_iterator`` while it is iterated by processors only
    (``Stream._enable_passive``, as faust's own ``take_*`` methods do)."""
    stream._enable_passive(channel_iterator)


def remove_processor(stream: Any, processor: Any) -> None:
    """Undo ``stream.add_processor(processor)`` (faust has no public remover)."""
    stream._processors.remove(processor)


# faust: web server (used by services.common.http_edge)

def replace_web_runner(app: Any, runner: AppRunner) -> None:
    """Serve ``app``'s web views with ``runner`` instead of the ``AppRunner`` faust builds
    without server settings; before the web server starts."""
    app.web._runner = runner


# faust: producer and transport hooks (used by services.common.app)

class IdempotentProducer(faust_aiokafka.Producer):
    """faust's aiokafka producer with ``enable_idempotence=True``: a retried send after a lost
    acknowledgement (a broker failing over) is written once. faust sets it only inside
    transactions (in the ``_settings_extra`` hook); it needs ``acks=all``, which every app here
    uses."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "enable_idempotence": True}


class IdempotentTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


class SelfcareApp(faust.App):
    """A faust app whose producers are idempotent (through faust's ``_new_transport`` and
    ``_new_producer_transport`` hooks)."""

    def _new_transport(self) -> TransportT:
        return IdempotentTransport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> TransportT:
        return IdempotentTransport(self.conf.broker_producer, self)


def kafka_producer(app: Any) -> AIOKafkaProducer:
    """The aiokafka producer under ``app``'s faust producer (started with it), for aiokafka's
    batch API (``create_batch``, ``send_batch``), which faust's producer does not pass on."""
    return app.producer._ensure_producer()


# aiokafka: consumer metadata and offset reset (recovery's rewind, the ops CLI's reads)

async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch the cluster's metadata now, so that ``partitions_for_topic`` knows every topic."""
    await consumer._client.force_metadata_update()


async def wait_on_metadata(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Wait until the client's metadata has ``topic`` (aiokafka raises if it never appears)."""
    await consumer._client._wait_on_metadata(topic)


def set_auto_offset_reset(consumer: AIOKafkaConsumer, policy: str) -> None:
    """Change where a consumer not yet started begins without a committed offset
    (``"earliest"`` or ``"latest"``)."""
    consumer._auto_offset_reset = policy


# aiokafka: the consumer protocol's encoding (the ops CLI's lag of a group that never committed)

def assigned_partitions(protocol_type: str, assignment: bytes) -> list[tuple[str, int]]:
    """(topic, partition) of one group member's assignment, as ``describe_consumer_groups``
    returns it; none for a group of another protocol or a member with no assignment."""
    from aiokafka.coordinator.protocol import ConsumerProtocol, ConsumerProtocolMemberAssignment

    if protocol_type != ConsumerProtocol.PROTOCOL_TYPE or not assignment:
        return []
    decoded = ConsumerProtocolMemberAssignment.decode(assignment)
    return [(tp.topic, tp.partition) for tp in decoded.partitions()]
