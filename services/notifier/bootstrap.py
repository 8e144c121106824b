"""Builds the notifier from its settings: database, gateways, handlers, faust app. Nothing at import."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from schemas.events import CodeIssued, PasswordChanged
from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, PASSWORD_CHANGED
from services.common.app import make_app
from services.common.consumer_loop import BatchRunner, Runners, register_agents, tombstones_as
from services.common.db import Database
from services.common.http_edge import harden_web_server
from services.common.metrics import ServiceMetrics
from services.common.migrations import migrate
from services.common.publish import Publisher, in_background, start_relay
from services.common.retention import Pruner, pruned_counter
from services.notifier.adapters.repository import SqlUnitOfWork
from services.notifier.adapters.sms_http import HttpSmsGateway
from services.notifier.adapters.smtp_email import SmtpEmailGateway
from services.notifier.adapters.tables import MIGRATIONS, outbox, prunable
from services.notifier.domain.model import RetryPolicy
from services.notifier.entrypoints.agents import (
    codes_issued,
    erase_deliveries_of,
    passwords_changed,
    register_dispatcher,
)
from services.notifier.entrypoints.ops_http import register_ops
from services.notifier.entrypoints.webhook import register_webhook
from services.notifier.service_layer.delivery_reports import apply_delivery_report
from services.notifier.service_layer.dispatch import FALLBACK, PRIMARY, Dispatcher, SmsRoutes
from services.notifier.service_layer.erase_deliveries import erase_deliveries
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import NotificationGateway
from services.notifier.service_layer.record_codes import record_codes
from services.notifier.service_layer.record_notices import record_notices
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True, kw_only=True)
class Notifier:
    """The service ``bootstrap`` builds (``services.common.service.Service``)."""

    settings: NotifierSettings
    app: Any
    db: Database
    codes: BatchRunner[CodeIssued]
    notices: BatchRunner[PasswordChanged]
    dispatcher: Dispatcher
    metrics: NotifierMetrics

    def prepare(self) -> None:
        """Before the worker starts: the database to the newest revision."""
        migrate(self.db.engine, MIGRATIONS)

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """What a test or a benchmark may replace; the rest comes from the settings."""

    gateways: Mapping[str, NotificationGateway] | None = None  # by route, as ``build_gateways``
    clock: Callable[[], float] | None = None  # Unix seconds


def build_gateways(settings: NotifierSettings) -> dict[str, NotificationGateway]:
    """The gateways by route: ``sms`` (the primary), ``sms_fallback`` when configured, ``email``."""
    def sms(url: str, token: str) -> HttpSmsGateway:
        return HttpSmsGateway(url=url, token=token, timeout_s=settings.sms_gateway_timeout_s,
                              max_connections=settings.max_in_flight,
                              ca_file=settings.sms_gateway_ca_file)

    gateways: dict[str, NotificationGateway] = {
        "sms": sms(settings.sms_gateway_url, settings.sms_gateway_token),
        "email": SmtpEmailGateway(
            host=settings.smtp_host, port=settings.smtp_port, mail_from=settings.mail_from,
            username=settings.smtp_username, password=settings.smtp_password,
            starttls=settings.smtp_starttls, timeout_s=settings.smtp_timeout_s,
            ca_file=settings.smtp_ca_file,
        ),
    }
    if settings.sms_fallback_url:
        gateways["sms_fallback"] = sms(settings.sms_fallback_url, settings.sms_fallback_token)
    return gateways


def warn_plaintext(settings: NotifierSettings) -> None:
    """Outside local mode, say so when passwords would travel in clear to a gateway."""
    if settings.local_mode:
        return
    for name in settings.plaintext_transports():
        log.warning("plaintext transport to a gateway: %s (use https / SMTP_STARTTLS)", name)


def bootstrap(settings: NotifierSettings, *, overrides: Overrides | None = None) -> Notifier:
    overrides = overrides or Overrides()
    clock = overrides.clock or time.time
    base = ServiceMetrics(settings.service)
    metrics = NotifierMetrics(base)
    db = Database(url=settings.database_url, name=settings.service)

    async def ready() -> dict[str, bool]:
        return {"database": await db.ping()}

    app = make_app(settings=settings, metrics=base, ready_checks=ready)
    publisher = Publisher(app=app, topic_prefix=settings.topic_prefix)
    relay = start_relay(app, db=db, table=outbox, publisher=publisher, metrics=base,
                        sweep_every_s=settings.outbox_sweep_s)
    uow = SqlUnitOfWork(db=db, hand_over=relay.committed)
    gateways = (dict(overrides.gateways) if overrides.gateways is not None
                else build_gateways(settings))
    warn_plaintext(settings)
    sms_routes = SmsRoutes(
        gateways={name: gateways[route] for name, route in ((PRIMARY, "sms"), (FALLBACK, "sms_fallback"))
                  if route in gateways},
        metrics=metrics, failures=settings.sms_circuit_failures, open_s=settings.sms_circuit_open_s,
    ) if "sms" in gateways else None
    dispatcher = Dispatcher(
        uow=uow, keyring=settings.delivery_keys, gateways=gateways, metrics=metrics,
        policy=RetryPolicy(initial_s=settings.retry_initial_s, max_s=settings.retry_max_s),
        flush=relay.flush, support_phone=settings.support_phone, claim_limit=settings.claim_limit,
        max_in_flight=settings.max_in_flight, lease_s=settings.lease_s, sms=sms_routes,
        takeover_s=settings.takeover_s,
    )
    runner = Runners(settings=settings, publisher=publisher, relay=relay, metrics=base)
    erased = tombstones_as(erase_deliveries_of, partial(erase_deliveries, uow=uow))
    codes = runner(CODE_ISSUED, CodeIssued, codes_issued(
        partial(record_codes, uow=uow, metrics=metrics, direct=dispatcher)), tombstones=erased)
    notices = runner(PASSWORD_CHANGED, PasswordChanged, passwords_changed(
        partial(record_notices, uow=uow, ttl_s=settings.code_ttl_s, direct=dispatcher)),
        tombstones=erased)
    register_agents(app, settings, [codes, notices, runner.tombstones_only(ACCOUNT_CHANGED, erased)])
    pruner = Pruner(db=db, tables=prunable, retention_days=settings.retention_days,
                    pruned=pruned_counter(base), hand_over=relay.committed,
                    flush=relay.flush)

    @app.task
    async def _prune() -> None:  # off the hot path: a pass at start, then hourly
        await pruner.run_forever(clock, every_s=PRUNE_EVERY_S)
    register_dispatcher(app, dispatcher=dispatcher, gateways=list(gateways.values()))
    register_webhook(
        app, apply_report=partial(apply_delivery_report, uow=uow, metrics=metrics,
                                  flush=in_background(relay.flush, "a delivery report's status"),
                                  parked_max=settings.sms_parked_reports_max),
        token=settings.status_token, read_timeout_s=settings.http_read_timeout_s,
    )
    harden_web_server(app, read_timeout_s=settings.http_read_timeout_s)
    register_ops(app, token=settings.ops_api_token, read_timeout_s=settings.http_read_timeout_s,
                 db=db)
    return Notifier(settings=settings, app=app, db=db, codes=codes, notices=notices,
                    dispatcher=dispatcher, metrics=metrics)
