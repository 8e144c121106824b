"""Builds the whole service from one settings object; nothing connects before ``bootstrap``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import faust

from schemas.events import Event
from schemas.topics import CONTRACT_LINKED, CONTRACT_TERMINATED
from services.common.app import make_app
from services.common.batch import BatchRunner, Handler
from services.common.db import Database, migrate
from services.common.metrics import ServiceMetrics
from services.common.publish import OutboxRelay, Publisher
from services.registration.adapters.linking import InProcessLinker, ProcessLinker
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.tables import MIGRATIONS, outbox
from services.registration.entrypoints.agents import register_agents
from services.registration.entrypoints.messages import (
    InboundContractLinked,
    InboundContractTerminated,
    Messages,
)
from services.registration.settings import RegistrationSettings

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, kw_only=True)
class Registration:
    settings: RegistrationSettings
    app: faust.App
    db: Database
    metrics: ServiceMetrics
    linked: BatchRunner[InboundContractLinked]
    terminated: BatchRunner[InboundContractTerminated]


def bootstrap(settings: RegistrationSettings, *, migrate_db: bool = True) -> Registration:
    metrics = ServiceMetrics(settings.service)
    db = Database(url=settings.database_url, name=settings.service)
    if migrate_db:
        migrate(db.engine, MIGRATIONS)

    async def ready() -> dict[str, bool]:
        return {"database": await db.ping()}

    # bulk loads: AccountChanged records (about 1 KiB each) go out in fewer, larger requests,
    # batches of up to 256 KiB, lingering 10 ms to fill them (docs/performance.md)
    app = make_app(settings=settings, metrics=metrics, ready_checks=ready,
                   producer_linger_s=0.01, producer_batch_bytes=256 * 1024)
    publisher = Publisher(app=app, topic_prefix=settings.topic_prefix)
    relay = OutboxRelay(db=db, table=outbox, publisher=publisher)
    linker = (
        ProcessLinker(db=db, keyring=settings.keyring) if settings.link_process
        else InProcessLinker(db=db, keyring=settings.keyring)
    )
    messages = Messages(
        uow=SqlUnitOfWork(db=db),
        protector=KeyringProtector(keyring=settings.keyring),
        linker=linker,
        outcomes=metrics.counter(
            "commands_total", "Commands handled, by command and outcome.", ["command", "outcome"]
        ),
    )

    def runner(topic: str, model: type[E], handler: Handler[E]) -> BatchRunner[E]:
        return BatchRunner(
            service=settings.service, topic=topic, model=model, handler=handler,
            publisher=publisher, relay=relay, metrics=metrics,
            max_record_bytes=settings.max_record_bytes, batch_size=settings.batch_size,
            within_s=settings.batch_within_s,
        )

    linked = runner(CONTRACT_LINKED, InboundContractLinked, messages.contracts_linked)
    terminated = runner(CONTRACT_TERMINATED, InboundContractTerminated, messages.contracts_terminated)
    register_agents(app, settings=settings, linked=linked, terminated=terminated)

    @app.task
    async def _warm_up() -> None:
        await linker.warm_up()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(app: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        linker.close()

    return Registration(
        settings=settings, app=app, db=db, metrics=metrics, linked=linked, terminated=terminated
    )
