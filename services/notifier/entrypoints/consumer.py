"""The faust wiring: the CodeIssued and PasswordChanged agents, the account-tombstone agent and
the dispatcher task. No business logic here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.events import CodeIssued, PasswordChanged
from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, PASSWORD_CHANGED
from services.common.consumer_loop import BatchRunner
from services.common.tombstones import TombstoneRunner
from services.notifier.service_layer.dispatch import Dispatcher
from services.notifier.service_layer.ports import NotificationGateway
from services.notifier.settings import NotifierSettings


def install_consumer(app: Any, *, settings: NotifierSettings, runner: BatchRunner[CodeIssued]) -> None:
    topic = app.topic(settings.topic(CODE_ISSUED), key_type=bytes, value_type=bytes, internal=False)

    @app.agent(topic, name="notifier.code_issued")
    async def code_issued(stream: Any) -> None:
        await runner.run(stream)


def install_notice_consumer(
    app: Any, *, settings: NotifierSettings, runner: BatchRunner[PasswordChanged]
) -> None:
    topic = app.topic(settings.topic(PASSWORD_CHANGED), key_type=bytes, value_type=bytes, internal=False)

    @app.agent(topic, name="notifier.password_changed")
    async def password_changed(stream: Any) -> None:
        await runner.run(stream)


def install_tombstones(app: Any, *, settings: NotifierSettings, runner: TombstoneRunner) -> None:
    """Erasures: tombstones of ``selfcare.account.changed.v1``; other values are not decoded."""
    topic = app.topic(settings.topic(ACCOUNT_CHANGED), key_type=bytes, value_type=bytes,
                      internal=False)

    @app.agent(topic, name="notifier.account_tombstones")
    async def account_tombstones(stream: Any) -> None:
        await runner.run(stream)


def install_dispatcher(app: Any, *, dispatcher: Dispatcher, gateways: Sequence[NotificationGateway]) -> None:
    @app.task
    async def dispatch() -> None:
        for gateway in gateways:
            await gateway.start()
        try:
            await dispatcher.run()
        finally:
            for gateway in gateways:
                await gateway.close()
