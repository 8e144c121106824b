"""The dispatcher task, and the edge where wire records become the notifier's commands. No
business logic here.

- **The dispatcher task** starts the gateways, runs the dispatcher, closes them.
- **The edge**: wire records become the notifier's commands, and each inbound topic's batch goes to
  the handler named after its command. The bootstrap gives each topic (CodeIssued,
  PasswordChanged, the accounts topic's tombstones) a ``BatchRunner`` over these handlers, and
  each runner an agent (``services.common.consumer_loop.register_agents``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from schemas.events import CodeIssued, PasswordChanged
from services.common.consumer_loop import Inbound, each_as
from services.notifier.domain.commands import (
    EraseDeliveries,
    NoticeContact,
    RecordCode,
    RecordNotice,
)
from services.notifier.service_layer.dispatch import Dispatcher
from services.notifier.service_layer.ports import NotificationGateway

# --- The dispatcher task --------------------------------------------------------------------


def register_dispatcher(app: Any, *, dispatcher: Dispatcher, gateways: Sequence[NotificationGateway]) -> None:
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


def erase_deliveries_of(account_ids: list[str]) -> EraseDeliveries:
    """The tombstones of the accounts topic, and those recovery leaves on ``code.issued`` and
    ``password.changed`` when it erases an account (so that compaction drops the account's
    records there): each key is an erased account's id. The notifier reads these topics apart
    from the accounts topic, so a code of the account may be recorded after the accounts topic's
    tombstone was handled; erasing the account's deliveries again on the later tombstone removes
    it. Idempotent."""
    return EraseDeliveries(account_ids=tuple(account_ids))
