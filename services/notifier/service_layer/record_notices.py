"""Handler of ``RecordNotice``: one notice delivery per linked contact of a password change.

A notice travels like a code: a delivery row (``kind`` ``notice``) added in the batch's
transaction with the event's dedupe row, leased or queued (``Placement``, in ``record_codes``),
sent by the dispatcher with the same retries, failover and leases. Its id, and so its SMS
``client_ref`` and email Message-ID, is derived from ``(code_id, channel)``: a re-published
``PasswordChanged`` adds nothing. The sealed destination is kept as received and opened only
when sent (associated data ``notice:<event_id>:<channel>``, whose event id is kept in
``request_event_id``). A notice is worth sending for ``ttl_s`` after the password change (then
``failed`` / ``expired``, like a code).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from services.notifier.domain.commands import RecordNotice
from services.notifier.domain.model import DeliveryState, NewDelivery
from services.notifier.domain.notices import notice_delivery_id
from services.notifier.service_layer.ports import Clock, Transaction, UnitOfWork, utc_now
from services.notifier.service_layer.record_codes import DirectSend, Placed, Placement


async def record_notices(
    commands: Sequence[RecordNotice], *, uow: UnitOfWork, ttl_s: float,
    direct: DirectSend | None = None, clock: Clock = utc_now,
) -> Placed:
    now = clock()
    placement = Placement.of(direct, now)
    placed = await uow.run(lambda tx: _record(tx, commands, now, ttl_s, placement))
    placement.hand_over(direct, placed)
    return placed


def _record(tx: Transaction, commands: Sequence[RecordNotice], now: datetime, ttl_s: float,
            placement: Placement) -> Placed:
    fresh = tx.processed.claim_new([c.event_id for c in commands])
    wanted = [(c, contact, notice_delivery_id(c.code_id, contact.channel))
              for c in commands if c.event_id in fresh for contact in c.contacts]
    known = tx.deliveries.existing({d for _, _, d in wanted})
    placed = Placed()
    rows: list[NewDelivery] = []
    for command, contact, delivery_id in wanted:
        if delivery_id in known:
            continue  # this code's notice to this channel is already recorded
        known.add(delivery_id)
        row = NewDelivery(
            code_id=delivery_id, request_event_id=command.event_id, account_id=command.account_id,
            channel=contact.channel, locale=command.locale,
            destination_masked=contact.destination_masked, destination_enc=contact.destination_enc,
            password_enc=None, expires_at=min(command.occurred_at, now) + timedelta(seconds=ttl_s),
            state=DeliveryState.QUEUED.value, next_attempt_at=now, created_at=now, kind="notice",
            status_code_id=command.code_id)
        rows.append(placement.place(row, placed))
    tx.deliveries.add(rows)
    return placed
