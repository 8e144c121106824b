"""Recovery's commands: what the handlers are asked to do, built at the edge from wire records
and HTTP bodies (``entrypoints.agents``)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import AccountStatus, Channel, Locale, TvProduct


@dataclass(frozen=True, kw_only=True)
class IssueCode:
    """Decide what to do with one code request."""

    request_event_id: str
    login: str
    channel: Channel
    locale: Locale
    client_ip: str | None
    requested_at: float | None = None  # the request's occurred_at (Unix s), for support's view


@dataclass(frozen=True, kw_only=True)
class LogIn:
    """Check a login with the current password or the newest pending code."""

    login: str
    password: str
    client_ip: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProjectAccount:
    """Keep one version of an account in recovery's projection (newest version wins)."""

    account_id: str
    contract_number: str
    version: int
    status: AccountStatus
    tv_product: TvProduct
    login_key_mobile: str
    login_key_personal_account: str
    sms_usable: bool
    email_usable: bool
    mobile_enc: str
    mobile_masked: str
    email_enc: str | None
    email_masked: str | None
    holder_epoch: int
    contacts_epoch: int


@dataclass(frozen=True, kw_only=True)
class EraseAccount:
    """Forget an erased account (a tombstone on the accounts topic)."""

    account_id: str
