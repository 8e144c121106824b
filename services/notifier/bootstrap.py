"""Builds the notifier from its settings: database, gateways, handlers, faust app. Nothing at import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.events import CodeIssued
from schemas.topics import CODE_ISSUED
from services.common.app import make_app
from services.common.batch import BatchRunner
from services.common.db import Database, migrate
from services.common.metrics import ServiceMetrics
from services.common.publish import OutboxRelay, Publisher
from services.notifier.adapters.repository import SqlDeliveries
from services.notifier.adapters.sms_http import HttpSmsGateway
from services.notifier.adapters.smtp_email import SmtpEmailGateway
from services.notifier.adapters.tables import MIGRATIONS, outbox
from services.notifier.domain.model import RetryPolicy
from services.notifier.entrypoints.consumer import install_consumer, install_dispatcher
from services.notifier.entrypoints.ops_http import register_ops
from services.notifier.entrypoints.webhook import install_webhook
from services.notifier.service_layer.delivery_reports import ApplyDeliveryReport
from services.notifier.service_layer.dispatch import Dispatcher
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import NotificationGateway
from services.notifier.service_layer.record_codes import RecordCodes
from services.notifier.settings import NotifierSettings


@dataclass(frozen=True)
class Notifier:
    settings: NotifierSettings
    app: Any
    db: Database
    runner: BatchRunner[CodeIssued]
    dispatcher: Dispatcher
    metrics: NotifierMetrics


def build_gateways(settings: NotifierSettings) -> dict[str, NotificationGateway]:
    return {
        "sms": HttpSmsGateway(
            url=settings.sms_gateway_url, token=settings.sms_gateway_token,
            timeout_s=settings.sms_gateway_timeout_s, max_connections=settings.max_in_flight,
        ),
        "email": SmtpEmailGateway(
            host=settings.smtp_host, port=settings.smtp_port, mail_from=settings.mail_from,
            username=settings.smtp_username, password=settings.smtp_password,
            starttls=settings.smtp_starttls, timeout_s=settings.smtp_timeout_s,
        ),
    }


def bootstrap(
    settings: NotifierSettings, *, gateways: Mapping[str, NotificationGateway] | None = None
) -> Notifier:
    base_metrics = ServiceMetrics(settings.service)
    metrics = NotifierMetrics(base_metrics)
    db = Database(url=settings.database_url, name=settings.service)
    migrate(db.engine, MIGRATIONS)
    repo = SqlDeliveries()

    async def ready() -> dict[str, bool]:
        return {"database": await db.ping()}

    app = make_app(settings=settings, metrics=base_metrics, ready_checks=ready)
    publisher = Publisher(app=app, topic_prefix=settings.topic_prefix)
    relay = OutboxRelay(db=db, table=outbox, publisher=publisher)
    gateways = dict(gateways) if gateways is not None else build_gateways(settings)
    dispatcher = Dispatcher(
        db=db, repo=repo, keyring=settings.delivery_keys, gateways=gateways, metrics=metrics,
        policy=RetryPolicy(initial_s=settings.retry_initial_s, max_s=settings.retry_max_s,
                           max_attempts=settings.max_attempts),
        flush=relay.flush, support_phone=settings.support_phone, claim_limit=settings.claim_limit,
        max_in_flight=settings.max_in_flight, lease_s=settings.lease_s,
    )
    runner: BatchRunner[CodeIssued] = BatchRunner(
        service=settings.service, topic=CODE_ISSUED, model=CodeIssued,
        handler=RecordCodes(db=db, repo=repo, metrics=metrics, intake=dispatcher),
        publisher=publisher, relay=relay, metrics=base_metrics,
        max_record_bytes=settings.max_record_bytes, batch_size=settings.batch_size,
        within_s=settings.batch_within_s,
    )
    install_consumer(app, settings=settings, runner=runner)
    install_dispatcher(app, dispatcher=dispatcher, gateways=list(gateways.values()))
    install_webhook(
        app, apply_report=ApplyDeliveryReport(db=db, repo=repo, metrics=metrics, flush=relay.flush),
        token=settings.sms_gateway_token,
    )
    register_ops(app, token=settings.ops_api_token, db=db)
    return Notifier(settings=settings, app=app, db=db, runner=runner, dispatcher=dispatcher, metrics=metrics)
