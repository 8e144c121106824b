"""The faust agents and the dispatcher task, and the edge where wire records become the notifier's
commands. No business logic here.

- **Agents**: CodeIssued, PasswordChanged and the account tombstones, each body a single
  ``runner.run``; the dispatcher task starts the gateways, runs the dispatcher, closes them.
- **The edge**: wire records become the notifier's commands, and each inbound topic's batch goes to
  the handler named after its command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from schemas.events import CodeIssued, PasswordChanged
from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, PASSWORD_CHANGED
from services.common.consumer_loop import BatchRunner, Inbound, RawRecord, each_as
from services.common.tombstones import TombstoneRunner
from services.notifier.domain.commands import (
    EraseDeliveries,
    NoticeContact,
    RecordCode,
    RecordNotice,
)
from services.notifier.service_layer.dispatch import Dispatcher
from services.notifier.service_layer.ports import NotificationGateway
from services.notifier.settings import NotifierSettings

# --- Agents and the dispatcher task ----------------------------------------------------------


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


# --- The edge: wire records → commands, batches → handlers -----------------------------------


def to_record_code(event: CodeIssued) -> RecordCode:
    return RecordCode(
        event_id=str(event.event_id), code_id=str(event.code_id),
        request_event_id=str(event.request_event_id), account_id=str(event.account_id),
        channel=event.channel.value, locale=event.locale.value,
        destination_masked=event.destination_masked, destination_enc=event.destination_enc,
        password_enc=event.password_enc, expires_at=event.expires_at,
    )


def to_record_notice(event: PasswordChanged) -> RecordNotice:
    return RecordNotice(
        event_id=str(event.event_id), occurred_at=event.occurred_at, code_id=str(event.code_id),
        account_id=str(event.account_id), locale=event.locale.value,
        contacts=tuple(NoticeContact(channel=c.channel.value, destination_masked=c.destination_masked,
                                     destination_enc=c.destination_enc) for c in event.contacts),
    )


def codes_issued(handle: Callable[[list[RecordCode]], Awaitable[object]]
                 ) -> Callable[[list[Inbound[CodeIssued]]], Awaitable[None]]:
    """The ``BatchRunner`` handler of ``selfcare.code.issued.v1``."""
    return each_as(to_record_code, handle)


def passwords_changed(handle: Callable[[list[RecordNotice]], Awaitable[object]]
                      ) -> Callable[[list[Inbound[PasswordChanged]]], Awaitable[None]]:
    """The ``BatchRunner`` handler of ``selfcare.password.changed.v1``."""
    return each_as(to_record_notice, handle)


def accounts_erased(handle: Callable[[EraseDeliveries], Awaitable[object]]
                    ) -> Callable[[Sequence[str]], Awaitable[None]]:
    """The ``TombstoneRunner`` handler: the keys of an account's tombstones are its ids."""
    async def handler(account_ids: Sequence[str]) -> None:
        await handle(EraseDeliveries(account_ids=tuple(account_ids)))
    return handler


def erased_upstream(handle: Callable[[EraseDeliveries], Awaitable[object]]
                    ) -> Callable[[list[RawRecord]], Awaitable[None]]:
    """The ``BatchRunner`` tombstone handler of ``code.issued`` and ``password.changed``: recovery
    tombstones an erased account's key there (so compaction drops its records) after the
    account's last record on that partition. The notifier reads these topics apart from the
    account topic, so a code of the account may have been recorded after the account topic's
    tombstone was handled: erasing the account's deliveries again here removes it. Idempotent."""
    async def handler(records: list[RawRecord]) -> None:
        ids = tuple(sorted({r.key.decode("utf-8", "replace") for r in records if r.key}))
        if ids:
            await handle(EraseDeliveries(account_ids=ids))
    return handler
