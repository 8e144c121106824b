"""One attempt's two pure steps: open and render the message, and classify the gateway's answer
into the update to record (state, next attempt, the gateway pin to keep)."""

from __future__ import annotations

import logging
from datetime import datetime

from services.common.crypto import Keyring, code_aad
from services.notifier.domain.delivery import Delivery, DeliveryUpdate
from services.notifier.domain.messages import OutgoingMessage, render, render_notice
from services.notifier.domain.model import DeliveryState, FailReason, RetryPolicy, SendResult, Verdict
from services.notifier.domain.notices import notice_aad
from services.notifier.service_layer.sms_routes import Routed

log = logging.getLogger(__name__)


def open_message(d: Delivery, *, keyring: Keyring, support_phone: str) -> OutgoingMessage:
    """Decrypts and renders (``DecryptError`` when a sealed field does not open)."""
    if d.kind == "notice":
        to = keyring.decrypt(d.destination_enc or "", aad=notice_aad(d.request_event_id, d.channel))
        return render_notice(delivery_id=d.code_id, channel=d.channel, locale=d.locale, to=to,
                             support_phone=support_phone)
    to = keyring.decrypt(d.destination_enc or "", aad=code_aad(d.code_id, "destination"))
    password = keyring.decrypt(d.password_enc or "", aad=code_aad(d.code_id, "password"))
    return render(code_id=d.code_id, channel=d.channel, locale=d.locale, to=to,
                  password=password, support_phone=support_phone)


def classify(d: Delivery, routed: Routed | SendResult, *, now: datetime, policy: RetryPolicy,
             prefix: str | None = None) -> DeliveryUpdate:
    if isinstance(routed, SendResult):
        routed = Routed(routed, None, d.gateway)
    result, pin = routed.result, routed.pin
    if result.verdict == Verdict.ACCEPTED:
        return DeliveryUpdate(code_id=d.code_id, attempts=d.attempts, state=DeliveryState.SENT.value,
                       message_id=result.message_id, gateway=pin, prefix=prefix)
    if result.verdict == Verdict.PERMANENT:
        return failed(d, FailReason.REJECTED.value, result.error, pin)
    when = policy.next_attempt(attempts=d.attempts, now=now, expires_at=d.expires_at,
                               retry_after_s=result.retry_after_s)
    if when is None:
        return failed(d, FailReason.EXPIRED.value, result.error, pin)
    log.info("send failed, retry scheduled",
             extra={"code_id": d.code_id, "error": result.error, "attempt": d.attempts})
    return DeliveryUpdate(code_id=d.code_id, attempts=d.attempts, state=DeliveryState.RETRY.value,
                   next_attempt_at=when, error=result.error, gateway=pin)


def failed(d: Delivery, reason: str, error: str | None = None, gateway: str | None = None) -> DeliveryUpdate:
    return DeliveryUpdate(code_id=d.code_id, attempts=d.attempts, state=DeliveryState.FAILED.value,
                   reason=reason, error=error, gateway=gateway or d.gateway)
