"""Builds every adapter and handler of recovery from one settings object; nothing at import."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust

from schemas.events import AccountChanged, CodeRequested
from schemas.topics import ACCOUNT_CHANGED, CODE_REQUESTED, REQUESTS_BY_LOGIN
from services.common.app import make_app
from services.common.codec import not_in_future
from services.common.consumer_loop import BatchRunner, Runners, register_agents, tombstones_as
from services.common.crypto import ThreadPoolHasher
from services.common.db import Database
from services.common.http_edge import harden_web_server
from services.common.metrics import ServiceMetrics
from services.common.migrations import migrate
from services.common.publish import Publisher, start_relay
from services.common.retention import Pruner, pruned_counter
from services.recovery.adapters import repository
from services.recovery.adapters.repository import SqlUnitOfWork
from services.recovery.adapters.rewind import rewind_topic
from services.recovery.adapters.tables import MIGRATIONS, outbox, prunable
from services.recovery.entrypoints.agents import (
    RouteRequests,
    erase_accounts,
    on_account_changes,
    on_code_requests,
)
from services.recovery.entrypoints.http import HttpConfig, register_http
from services.recovery.entrypoints.ops_http import register_ops
from services.recovery.service_layer.codes import IssueCodes, IssueConfig, RequestCode
from services.recovery.service_layer.log_in import LogInHandler
from services.recovery.service_layer.metrics import RecoveryMetrics
from services.recovery.service_layer.ports import Clock, SystemClock
from services.recovery.service_layer.project_accounts import ProjectAccounts
from services.recovery.service_layer.support_view import ViewLogin
from services.recovery.settings import RecoverySettings

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True, kw_only=True)
class Recovery:
    """The service ``bootstrap`` builds (``services.common.service.Service``)."""

    settings: RecoverySettings
    app: faust.App
    db: Database
    hasher: ThreadPoolHasher
    metrics: RecoveryMetrics
    pruner: Pruner

    def prepare(self) -> None:
        """Before the worker starts: migrate, and rewind the account topic if the table is empty."""
        migrate(self.db.engine, MIGRATIONS)
        if self.db.run_sync(repository.count_accounts) == 0:
            asyncio.run(rewind_topic(
                bootstrap=self.settings.kafka, group_id=self.app.conf.id,
                topic=self.settings.topic(ACCOUNT_CHANGED)))

    def close(self) -> None:
        self.hasher.close()
        self.db.close()


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """What a test or a benchmark may replace; the rest comes from the settings."""

    clock: Clock | None = None


def bootstrap(settings: RecoverySettings, *, overrides: Overrides | None = None) -> Recovery:
    overrides = overrides or Overrides()
    clock = overrides.clock or SystemClock()
    base = ServiceMetrics(settings.service)
    metrics = RecoveryMetrics(base)
    db = Database(url=settings.database_url, name=settings.service)
    a = settings.argon2
    hasher = ThreadPoolHasher(params=(a.time_cost, a.memory_kib, a.parallelism),
                               workers=settings.hash_workers, seconds=metrics.argon2_seconds,
                               nice=settings.hash_nice)

    async def ready() -> dict[str, bool]:
        return {"database": await db.ping()}

    app = make_app(settings=settings, metrics=base, ready_checks=ready)
    publisher = Publisher(app=app, topic_prefix=settings.topic_prefix)
    relay = start_relay(app, db=db, table=outbox, publisher=publisher, metrics=base,
                        sweep_every_s=settings.outbox_sweep_s)
    uow = SqlUnitOfWork(db=db, hand_over=relay.committed)
    config = IssueConfig(policy=settings.policy, code_ttl_s=settings.code_ttl_s,
                         password_length=settings.password_length,
                         support_phone=settings.support_phone)
    runner = Runners(settings=settings, publisher=publisher, relay=relay, metrics=base)
    projection = ProjectAccounts(uow=uow, clock=clock, keyring=settings.contact_keys)
    runners: list[BatchRunner[Any]] = [
        runner(ACCOUNT_CHANGED, AccountChanged, on_account_changes(projection),
               tombstones=tombstones_as(erase_accounts, projection.erase)),
        runner(CODE_REQUESTED, CodeRequested,
               RouteRequests(publisher=publisher, keyring=settings.contact_keys),
               check=not_in_future(settings.max_clock_skew_s, clock.now)),
        runner(REQUESTS_BY_LOGIN, CodeRequested, on_code_requests(IssueCodes(
            uow=uow, keyring=settings.contact_keys, delivery_keyring=settings.delivery_keys,
            hasher=hasher, clock=clock, config=config, metrics=metrics))),
    ]
    register_agents(app, settings, runners)
    register_http(
        app,
        request_code=RequestCode(publisher=publisher),
        log_in=LogInHandler(uow=uow, keyring=settings.contact_keys, hasher=hasher, clock=clock,
                            policy=settings.policy, metrics=metrics, flush=relay.flush,
                            delivery_keyring=settings.delivery_keys),
        config=HttpConfig(api_token=settings.api_token, max_body=settings.max_http_body,
                          read_timeout_s=settings.http_read_timeout_s,
                          trusted_proxies=settings.trusted_proxies,
                          support_phone=settings.support_phone),
    )
    harden_web_server(app, read_timeout_s=settings.http_read_timeout_s)
    register_ops(app, token=settings.ops_api_token, read_timeout_s=settings.http_read_timeout_s,
                 view_login=ViewLogin(uow=uow, keyring=settings.contact_keys, clock=clock,
                                      sms_allowed=settings.policy.sms_allowed))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(app: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        hasher.close()

    @app.task
    async def _warm_up() -> None:
        await hasher.warm_up()

    pruner = Pruner(db=db, tables=prunable, retention_days=settings.retention_days,
                    pruned=pruned_counter(base))

    @app.task
    async def _prune() -> None:  # off the hot path: a pass at start, then hourly
        await pruner.run_forever(clock.now, every_s=PRUNE_EVERY_S)

    return Recovery(settings=settings, app=app, db=db, hasher=hasher, metrics=metrics,
                    pruner=pruner)
