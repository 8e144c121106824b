"""Wire models of every event in DESIGN.md (pydantic v2).

These classes are the Python side of the JSON Schemas in ``schemas/json/``; a test keeps the
two in agreement on the examples and on a set of bad records. Readers are tolerant (unknown
fields are ignored) but strict on types: ``"true"`` is not a boolean, ``"5"`` is not an int.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

Text = Annotated[str, Field(min_length=1, max_length=200)]
ShortText = Annotated[str, Field(min_length=1, max_length=64)]
Secret = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^v1\.[0-9a-f]{8}\.[A-Za-z0-9_-]+$")]
Masked = Annotated[str, Field(min_length=1, max_length=254)]
Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# A login as people type it: digits, spaces, "+", "-", brackets; at least one digit.
TypedLogin = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9+\-() ]*[0-9][0-9+\-() ]*$")]


class TvProduct(StrEnum):
    INTERACTIVE = "interactive"
    LINEAR = "linear"
    SATELLITE = "satellite"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


class Locale(StrEnum):
    RU = "ru"
    EN = "en"


class ContractRejectReason(StrEnum):
    INVALID_MOBILE = "invalid_mobile"
    INVALID_EMAIL = "invalid_email"
    INVALID_PERSONAL_ACCOUNT = "invalid_personal_account"
    LOGIN_CONFLICT = "login_conflict"
    UNKNOWN_CONTRACT = "unknown_contract"
    INVALID_EVENT_TIME = "invalid_event_time"


class CodeRejectReason(StrEnum):
    UNKNOWN_LOGIN = "unknown_login"
    CHANNEL_UNAVAILABLE = "channel_unavailable"
    RATE_LIMITED = "rate_limited"
    ACCOUNT_CLOSED = "account_closed"
    INVALID_REQUEST = "invalid_request"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class NotificationKind(StrEnum):
    CODE = "code"
    NOTICE = "notice"


class Gateway(StrEnum):
    PRIMARY = "primary"
    FALLBACK = "fallback"


class DeliveryStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


def _is_ip(value: str) -> str:
    address = ipaddress.ip_address(value)  # ValueError -> validation error
    if getattr(address, "scope_id", None):  # fe80::1%eth0: not an address the schema's format takes
        raise ValueError("an IPv6 address with a zone index")
    return value


_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RFC3339_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _canonical_uuid(value: object) -> object:
    """On the wire a UUID is in its canonical hyphenated form (as the JSON Schemas say), not
    braced, URN or bare hex, which pydantic would also take. (The text is parsed here: after
    a before-validator the strict type check sees a Python value.)"""
    if isinstance(value, str):
        if not _UUID_TEXT.fullmatch(value):
            raise ValueError("not a canonical UUID")
        return uuid.UUID(value)
    return value


def _rfc3339(value: object) -> object:
    """On the wire a time is RFC 3339 with seconds and an offset (as the JSON Schemas say);
    pydantic would also take a space for ``T``, no seconds, or ``+0300``."""
    if isinstance(value, str):
        if not _RFC3339_TEXT.fullmatch(value):
            raise ValueError("not an RFC 3339 date-time")
        return datetime.fromisoformat(value.upper())  # ValueError for 24:00, :60, month 13
    return value


def _in_utc_range(value: datetime) -> datetime:
    """A time whose UTC form is a datetime too (``0001-01-01T00:00:00+01:00`` is not): the
    services compare and store times in UTC."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("not representable in UTC") from None
    return value


Uuid = Annotated[uuid.UUID, BeforeValidator(_canonical_uuid)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_in_utc_range)]


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Common envelope: ``event_id`` is the idempotency key, ``occurred_at`` is RFC 3339 UTC."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    type_name: ClassVar[str] = "Event"

    event_id: Uuid = Field(default_factory=new_event_id)
    occurred_at: Timestamp = Field(default_factory=utc_now)

    def missing_envelope(self) -> list[str]:
        """Envelope fields that were not given (filled by defaults): required on the wire."""
        return [name for name in ("event_id", "occurred_at") if name not in self.model_fields_set]


class Passport(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    series: Annotated[str, Field(min_length=1, max_length=10)]
    number: Annotated[str, Field(min_length=1, max_length=20)]


class Subscriber(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    full_name: Text
    mobile: Annotated[str, Field(min_length=1, max_length=32)]
    email: Annotated[str, Field(min_length=1, max_length=254)] | None = None
    passport: Passport


class ContractLinked(Event):
    type_name: ClassVar[str] = "ContractLinked"
    contract_number: Annotated[str, Field(min_length=1, max_length=32)]
    personal_account: Annotated[str, Field(min_length=1, max_length=32)]
    tv_product: TvProduct
    subscriber: Subscriber
    mobile_active: bool = True
    operator_id: ShortText | None = None


class ContractTerminated(Event):
    type_name: ClassVar[str] = "ContractTerminated"
    contract_number: Annotated[str, Field(min_length=1, max_length=32)]


class ContractErased(Event):
    """The subscriber's personal data is to be erased (152-FZ / GDPR)."""

    type_name: ClassVar[str] = "ContractErased"
    contract_number: Annotated[str, Field(min_length=1, max_length=32)]


class ContractRejected(Event):
    type_name: ClassVar[str] = "ContractRejected"
    contract_number: Annotated[str, Field(min_length=1, max_length=32)]
    rejected_event_id: Uuid
    reason: ContractRejectReason


class LoginKeys(BaseModel):
    """Keyed hashes (HMAC-SHA-256 with HASH_PEPPER) of the account's possible logins."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    mobile: Hash
    personal_account: Hash


class Channels(BaseModel):
    """Which delivery channels can be used for this account now."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    sms: bool
    email: bool


class Contacts(BaseModel):
    """Contacts, masked for people and encrypted (AES-GCM, CONTACT_KEYS) for the services."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    mobile_masked: Masked
    mobile_enc: Secret
    email_masked: Masked | None = None
    email_enc: Secret | None = None


class AccountChanged(Event):
    type_name: ClassVar[str] = "AccountChanged"
    account_id: Uuid
    contract_number: Annotated[str, Field(min_length=1, max_length=32)]
    version: Annotated[int, Field(ge=1)]
    status: AccountStatus
    tv_product: TvProduct
    login_keys: LoginKeys
    channels: Channels
    contacts: Contacts
    linked_at: Timestamp
    # bumped by registration when the holder changes or the contract reopens (the password and
    # pending codes are revoked), and when only the contacts change (pending codes are voided);
    # state, not commands: a reader acts when a value is higher than the one it stored
    holder_epoch: Annotated[int, Field(ge=0)] = 0
    contacts_epoch: Annotated[int, Field(ge=0)] = 0


class CodeRequested(Event):
    type_name: ClassVar[str] = "CodeRequested"
    login: TypedLogin
    channel: Channel
    locale: Locale = Locale.RU
    client_ip: Annotated[str, Field(max_length=45), AfterValidator(_is_ip)] | None = None


class CodeIssued(Event):
    type_name: ClassVar[str] = "CodeIssued"
    code_id: Uuid
    request_event_id: Uuid
    account_id: Uuid
    channel: Channel
    destination_masked: Masked
    destination_enc: Secret
    password_enc: Secret
    expires_at: Timestamp
    locale: Locale = Locale.RU


class CodeRejected(Event):
    type_name: ClassVar[str] = "CodeRejected"
    request_event_id: Uuid
    reason: CodeRejectReason
    channel: Channel | None = None
    advice: Literal["contact_support"] | None = None
    support_phone: ShortText | None = None
    retry_after_s: Annotated[int, Field(ge=1)] | None = None


class NoticeContact(BaseModel):
    """One linked contact of a notice: sealed with DELIVERY_KEYS, and masked for people."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    channel: Channel
    destination_masked: Masked
    destination_enc: Secret


def _one_per_channel(contacts: tuple[NoticeContact, ...]) -> tuple[NoticeContact, ...]:
    if len({c.channel for c in contacts}) < len(contacts):  # its type names it in a dead letter
        raise PydanticCustomError("one_contact_per_channel", "two contacts of one channel")
    return contacts


class PasswordChanged(Event):
    """A newly issued password was used for the first time: tell every linked contact."""

    type_name: ClassVar[str] = "PasswordChanged"
    account_id: Uuid
    code_id: Uuid
    locale: Locale = Locale.RU
    # one per channel: a notice's id, client_ref and sealing are derived from its channel
    contacts: Annotated[tuple[NoticeContact, ...], Field(min_length=1, max_length=4),
                        AfterValidator(_one_per_channel)]


class NotificationStatus(Event):
    type_name: ClassVar[str] = "NotificationStatus"
    code_id: Uuid
    request_event_id: Uuid | None = None
    channel: Channel
    status: DeliveryStatus
    attempts: Annotated[int, Field(ge=0)]
    destination_masked: Masked
    reason: ShortText | None = None
    message_id: ShortText | None = None
    kind: NotificationKind = NotificationKind.CODE
    gateway: Gateway | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type_name: cls
    for cls in (
        ContractLinked,
        ContractTerminated,
        ContractErased,
        ContractRejected,
        AccountChanged,
        CodeRequested,
        CodeIssued,
        CodeRejected,
        NotificationStatus,
        PasswordChanged,
    )
}
