"""Recovery's own view of the world: accounts (a projection), requests, decisions, codes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.events import AccountStatus, Channel, CodeRejectReason, Locale, TvProduct
from services.common.logins import LoginKind


class CodeStatus(StrEnum):
    PENDING = "pending"  # issued, not used yet
    ACTIVE = "active"  # used to log in: it became the password
    VOIDED = "voided"  # a newer code replaced it before it was used
    EXPIRED = "expired"


@dataclass(frozen=True, kw_only=True)
class Account:
    account_id: str
    status: AccountStatus
    tv_product: TvProduct
    login_keys: dict[LoginKind, str]
    sms_usable: bool
    email_usable: bool
    mobile_enc: str
    mobile_masked: str
    email_enc: str | None
    email_masked: str | None
    version: int

    def channel_usable(self, channel: Channel) -> bool:
        if channel is Channel.SMS:
            return self.sms_usable
        return self.email_usable and self.email_enc is not None and self.email_masked is not None

    def masked(self, channel: Channel) -> str:
        return self.mobile_masked if channel is Channel.SMS else (self.email_masked or "")


@dataclass(frozen=True, kw_only=True)
class IssueCode:
    """Command: decide what to do with one code request."""

    request_event_id: str
    login: str
    channel: Channel
    locale: Locale
    client_ip: str | None
    requested_at: float | None = None  # the request's occurred_at (Unix s), for support's view


@dataclass(frozen=True, kw_only=True)
class Issue:
    command: IssueCode
    account: Account
    code_id: str
    password: str
    destination: str


class Guard(StrEnum):
    """Which guard against SMS pumping refused a request (ops are told of each)."""

    SMS_PREFIX = "sms_prefix"  # the mobile is outside SMS_ALLOWED_PREFIXES
    ACCOUNT_DAILY = "account_daily"  # LIMIT_ACCOUNT_DAILY_MAX reached
    SMS_BUDGET = "sms_budget"  # SMS_HOURLY_BUDGET spent


@dataclass(frozen=True, kw_only=True)
class Reject:
    command: IssueCode
    reason: CodeRejectReason
    retry_after_s: int | None = None
    guard: Guard | None = None


Decision = Issue | Reject
