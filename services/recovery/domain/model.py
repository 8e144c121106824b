"""Recovery's own view of the world: accounts (a projection), requests, decisions, codes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.events import AccountStatus, Channel, CodeRejectReason, TvProduct
from services.common.logins import LoginKind
from services.recovery.domain.commands import IssueCode


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


@dataclass(frozen=True, kw_only=True)
class NewCode:
    """An issued code as stored: its argon2id hash, never the password."""

    code_id: str
    account_id: str
    request_event_id: str
    hash: str
    status: CodeStatus
    channel: Channel
    locale: str
    expires_at: float
    created_at: float


@dataclass(frozen=True, kw_only=True)
class LoggedRequest:
    """One decided code request as support sees it (``request_log``): no contact, no password."""

    login_key: str
    request_event_id: str
    account_id: str | None
    channel: str
    outcome: str  # "issued" or "rejected"
    reason: str | None
    retry_after_s: int | None
    code_id: str | None
    requested_at: float | None
    decided_at: float


__all__ = ["Account", "CodeStatus", "Decision", "Guard", "Issue", "IssueCode", "LoggedRequest",
           "NewCode", "Reject"]
