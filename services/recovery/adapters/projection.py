"""The accounts projection: AccountChanged → the ``accounts`` row, newest version wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from schemas.events import AccountChanged
from services.recovery.adapters import repository
from services.recovery.adapters.tables import accounts


def _row(event: AccountChanged, now: float) -> dict[str, Any]:
    return {
        "contract_number": event.contract_number,
        "status": event.status.value,
        "tv_product": event.tv_product.value,
        "login_key_mobile": event.login_keys.mobile,
        "login_key_personal_account": event.login_keys.personal_account,
        "sms_usable": event.channels.sms,
        "email_usable": event.channels.email,
        "mobile_enc": event.contacts.mobile_enc,
        "mobile_masked": event.contacts.mobile_masked,
        "email_enc": event.contacts.email_enc,
        "email_masked": event.contacts.email_masked,
        "version": event.version,
        "updated_at": now,
    }


def apply_changes(session: Session, events: Sequence[AccountChanged], now: float) -> int:
    """Upsert the newest version of each account; older or equal versions change nothing."""
    newest: dict[str, AccountChanged] = {}
    for event in events:
        key = str(event.account_id)
        if key not in newest or event.version > newest[key].version:
            newest[key] = event
    known = repository.account_versions(session, list(newest))
    inserts = [
        {"account_id": key, **_row(event, now)}
        for key, event in newest.items() if key not in known
    ]
    if inserts:
        session.execute(accounts.insert(), inserts)
    applied = len(inserts)
    for key, event in newest.items():
        if key in known and event.version > known[key]:
            session.execute(update(accounts).where(accounts.c.account_id == key)
                            .values(**_row(event, now)))
            applied += 1
    return applied
