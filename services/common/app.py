"""The faust app factory: one app per service (its id is the consumer group).

Values and keys are raw bytes: decoding is ours (``codec``), so a malformed record becomes a
dead letter instead of a crash inside faust. Every service gets ``/livez``, ``/readyz`` and
``/metrics`` on its web port, bound to ``WEB_BIND_HOST`` (loopback by default). Its producers
are idempotent (``faust_private.SelfcareApp``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from services.common.faust_private import SelfcareApp
from services.common.logs import logging_config
from services.common.metrics import ServiceMetrics
from services.common.partitioner import KeyPartitioner
from services.common.settings import CommonSettings

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def make_app(
    *,
    settings: CommonSettings,
    metrics: ServiceMetrics,
    ready_checks: ReadyCheck | None = None,
    app_id: str | None = None,
    producer_linger_s: float = 0.0,
    producer_batch_bytes: int = 16384,
) -> faust.App:
    """The service's faust app. A bulk service may let its producer wait ``producer_linger_s``
    to fill batches of up to ``producer_batch_bytes`` per partition (fewer, larger requests);
    the latency-bound ones keep faust's defaults (send at once, 16 KiB)."""
    datadir = settings.var_dir / "faust" / f"{settings.topic_prefix}{settings.service}"
    datadir.mkdir(parents=True, exist_ok=True)
    kafka = settings.kafka
    app = SelfcareApp(
        app_id or f"{settings.topic_prefix}selfcare-{settings.service}",
        broker=kafka.faust_broker_url,
        broker_credentials=kafka.faust_credentials(),
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        datadir=str(datadir),
        store="memory://",
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,  # acks=all: with min.insync.replicas=2 a write survives a broker
        producer_max_request_size=4 * 1024 * 1024,
        producer_linger=producer_linger_s,
        producer_max_batch_size=producer_batch_bytes,
        producer_partitioner=KeyPartitioner(),  # Kafka's default, in fewer Python steps
        consumer_max_fetch_size=4 * 1024 * 1024,
        broker_commit_every=1000,
        # how soon a dead worker's partitions move to the others (faust's default is 60 s)
        broker_session_timeout=settings.kafka_session_timeout_s,
        # static membership: a worker restarted under the same id takes its partitions back at
        # once instead of after the session time-out (unique per worker; it does not leave the
        # group on a clean stop, so a worker stopped for good hands over after the time-out)
        consumer_group_instance_id=settings.kafka_group_instance_id or None,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        # faust's own pages (its router: the topics and partitions each worker holds; its
        # tables) are not served: a web port answers the routes docs/operations.md lists only
        web_router_enabled=False,
        web_tables_enabled=False,
        logging_config=logging_config(settings.service, settings.log_level),
        loghandlers=[],
    )

    @app.page("/livez")
    async def livez(self: View, request: Request) -> Response:
        return self.json({"status": "alive", "service": settings.service})

    async def answer(view: View, checks: dict[str, bool]) -> Response:
        if ready_checks is not None:
            checks.update(await ready_checks())
        ok = all(checks.values())
        return view.json({"ready": ok, "checks": checks}, status=200 if ok else 503)

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        return await answer(self, {"kafka_assigned": _assigned(app)})

    @app.page("/readyz/http")
    async def readyz_http(self: View, request: Request) -> Response:
        """Whether the worker can serve its HTTP routes (the portal's API, delivery reports): its
        database answers. A standby worker without partitions, or one in a rebalance, can; the
        load balancer in front of recovery and the notifier follows this, not ``/readyz``."""
        return await answer(self, {})

    @app.page("/metrics")
    async def prometheus(self: View, request: Request) -> Response:
        return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    return app


def _assigned(app: Any) -> bool:
    """The worker has partitions assigned and is not in the middle of a rebalance."""
    try:
        return bool(app.consumer.assignment()) and not app.rebalancing
    except Exception:  # consumer not started yet
        return False
