"""Builders and fakes shared by the notifier's tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas.events import Channel, CodeIssued, Locale
from services.common.codec import WireRecord, encode
from services.common.consumer_loop import RawRecord
from services.common.crypto import Keyring, code_aad, generate_key
from services.common.masking import mask_email, mask_phone
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import SendResult
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS

KEYRING = Keyring.from_config(secret_keys=TEST_SECRET_KEYS, hash_pepper=TEST_HASH_PEPPER)
OTHER_KEYRING = Keyring.from_config(secret_keys=generate_key(), hash_pepper=TEST_HASH_PEPPER)


def code_issued(
    *, to: str, password: str = "K7M3P9Q2WX", channel: Channel = Channel.SMS,
    locale: Locale = Locale.RU, expires_in_s: float = 600, code_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None, tamper: str | None = None,
) -> CodeIssued:
    """A CodeIssued encrypted with the test keys. ``tamper``: ``wrong_key``, ``swapped``, ``bitflip``."""
    code_id = code_id or uuid.uuid4()
    cid = str(code_id)
    keyring = OTHER_KEYRING if tamper == "wrong_key" else KEYRING
    destination_enc = keyring.encrypt(to, aad=code_aad(cid, "destination"))
    password_enc = keyring.encrypt(password, aad=code_aad(cid, "password"))
    if tamper == "swapped":
        destination_enc, password_enc = password_enc, destination_enc
    if tamper == "bitflip":
        # change a character well inside the base64 body: the last one may carry only padding bits
        i = len(password_enc) - 10
        password_enc = password_enc[:i] + ("A" if password_enc[i] != "A" else "B") + password_enc[i + 1:]
    return CodeIssued(
        code_id=code_id, request_event_id=uuid.uuid4(), account_id=account_id or uuid.uuid4(),
        channel=channel, locale=locale,
        destination_masked=mask_phone(to) if channel == Channel.SMS else mask_email(to),
        destination_enc=destination_enc, password_enc=password_enc,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
    )


def wire(event: CodeIssued) -> WireRecord:
    return encode(event, key=str(event.account_id), source="/selfcare-access/recovery")


def raw(event: CodeIssued | bytes, offset: int = 0) -> RawRecord:
    if isinstance(event, bytes):
        return RawRecord(topic="selfcare.code.issued.v1", partition=0, offset=offset, key=b"k",
                         value=event, headers=[])
    record = wire(event)
    return RawRecord(topic="selfcare.code.issued.v1", partition=0, offset=offset, key=record.key,
                     value=record.value, headers=record.headers)


@dataclass
class FakeGateway:
    """Answers per destination from a script (the last answer repeats); records every message."""

    scripts: dict[str, list[SendResult]] = field(default_factory=dict)
    sent: list[OutgoingMessage] = field(default_factory=list)
    raises: Exception | None = None  # raised by every call while set (a bug in an adapter)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        if self.raises is not None:
            raise self.raises
        self.sent.append(message)
        steps = self.scripts.get(message.to)
        if not steps:
            return SendResult.accepted(f"m-{len(self.sent)}")
        return steps.pop(0) if len(steps) > 1 else steps[0]


@dataclass
class FakePublisher:
    sent: list[tuple[str, WireRecord]] = field(default_factory=list)

    async def send_all(self, items: list[tuple[str, WireRecord]]) -> None:
        self.sent.extend(items)
