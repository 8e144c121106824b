"""Builds the whole service from one settings object; nothing connects before ``bootstrap``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust

from schemas.topics import CONTRACT_ERASED, CONTRACT_LINKED, CONTRACT_TERMINATED
from services.common.app import make_app
from services.common.consumer_loop import BatchRunner, Runners, register_agents
from services.common.db import Database, is_transient
from services.common.http_edge import harden_web_server
from services.common.metrics import ServiceMetrics
from services.common.migrations import migrate
from services.common.publish import Publisher, start_relay
from services.common.retention import Pruner, pruned_counter
from services.registration.adapters.linking import InProcessLinker, ProcessLinker
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.support_repository import SqlSupportUnitOfWork
from services.registration.adapters.tables import MIGRATIONS, outbox, prunable
from services.registration.entrypoints.agents import (
    ContractHandlers,
    InboundContractErased,
    InboundContractLinked,
    InboundContractTerminated,
)
from services.registration.entrypoints.ops_http import register_ops
from services.registration.service_layer.fill_aliases import FillAliases
from services.registration.service_layer.metrics import RegistrationMetrics
from services.registration.settings import RegistrationSettings

PRUNE_EVERY_S = 3600.0
RETRY_FILL_S = 5.0
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Registration:
    """The service ``bootstrap`` builds (``services.common.service.Service``)."""

    settings: RegistrationSettings
    app: faust.App
    db: Database
    metrics: RegistrationMetrics
    linked: BatchRunner[InboundContractLinked]
    terminated: BatchRunner[InboundContractTerminated]
    erased: BatchRunner[InboundContractErased]
    pruner: Pruner
    linker: InProcessLinker | ProcessLinker

    def prepare(self) -> None:
        """Before the worker starts: the database to the newest revision."""
        migrate(self.db.engine, MIGRATIONS)

    def close(self) -> None:
        self.linker.close()
        self.db.close()


async def fill_until_done(fill: FillAliases, *, retry_s: float = RETRY_FILL_S) -> None:
    """Runs the fill, again while the database is away; another failure is logged and the next
    start tries again (nothing is marked done)."""
    while True:
        try:
            await fill()
            return
        except Exception as exc:
            if not is_transient(exc):
                log.exception("filling the aliases of earlier accounts failed")
                return
        await asyncio.sleep(retry_s)


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """What a test or a benchmark may replace; the rest comes from the settings."""

    clock: Callable[[], float] | None = None  # Unix seconds


def bootstrap(settings: RegistrationSettings, *, overrides: Overrides | None = None) -> Registration:
    overrides = overrides or Overrides()
    clock = overrides.clock or time.time
    base = ServiceMetrics(settings.service)
    metrics = RegistrationMetrics(base)
    db = Database(url=settings.database_url, name=settings.service)

    async def ready() -> dict[str, bool]:
        return {"database": await db.ping()}

    # bulk loads: AccountChanged records (about 1 KiB each) go out in fewer, larger requests,
    # batches of up to 256 KiB, lingering 10 ms to fill them (docs/performance.md)
    app = make_app(settings=settings, metrics=base, ready_checks=ready,
                   producer_linger_s=0.01, producer_batch_bytes=256 * 1024)
    publisher = Publisher(app=app, topic_prefix=settings.topic_prefix)
    relay = start_relay(app, db=db, table=outbox, publisher=publisher, metrics=base,
                        sweep_every_s=settings.outbox_sweep_s)
    linker = (
        ProcessLinker(db=db, keyring=settings.contact_keys, hand_over=relay.committed)
        if settings.link_process
        else InProcessLinker(db=db, keyring=settings.contact_keys, hand_over=relay.committed)
    )
    handlers = ContractHandlers(
        uow=SqlUnitOfWork(db=db, hand_over=relay.committed),
        protector=KeyringProtector(keyring=settings.contact_keys),
        linker=linker,
        metrics=metrics,
        max_clock_skew_s=settings.max_clock_skew_s,
    )

    runner = Runners(settings=settings, publisher=publisher, relay=relay, metrics=base)
    linked = runner(CONTRACT_LINKED, InboundContractLinked, handlers.contracts_linked)
    terminated = runner(CONTRACT_TERMINATED, InboundContractTerminated, handlers.contracts_terminated)
    erased = runner(CONTRACT_ERASED, InboundContractErased, handlers.contracts_erased)
    register_agents(app, settings, [linked, terminated, erased])
    harden_web_server(app, read_timeout_s=settings.http_read_timeout_s)
    register_ops(app, settings=settings, db=db, hand_over=relay.committed, flush=relay.flush)
    pruner = Pruner(db=db, tables=prunable, retention_days=settings.retention_days,
                    pruned=pruned_counter(base))

    @app.task
    async def _prune() -> None:  # off the hot path: a pass at start, then hourly
        await pruner.run_forever(clock, every_s=PRUNE_EVERY_S)

    @app.task
    async def _warm_up() -> None:
        await linker.warm_up()

    fill = FillAliases(uow=SqlSupportUnitOfWork(db=db, hand_over=relay.committed),
                       keyring=settings.contact_keys)

    @app.task
    async def _fill_aliases() -> None:  # once per database: the rows linked before revision 0002
        await fill_until_done(fill)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(app: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        linker.close()

    return Registration(
        settings=settings, app=app, db=db, metrics=metrics, linked=linked, terminated=terminated,
        erased=erased, pruner=pruner, linker=linker,
    )
