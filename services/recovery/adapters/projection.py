"""The accounts projection: AccountChanged → the ``accounts`` row, newest version wins.

A newer version whose ``holder_epoch`` is higher than the row's revokes the password and voids
pending codes (a new holder, or a reopened contract); a higher ``contacts_epoch`` voids pending
codes (they went to the old contacts). The epochs are state, so replaying the compacted topic
after a rebuild revokes nothing twice: a rebuilt row simply starts at the newest epochs.

A tombstone (the account was erased) deletes the row and everything kept for the account:
credentials, codes, its rate-limit events and the lock-out of its mobile login.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from schemas.events import AccountChanged, Channel
from services.common.crypto import DecryptError, Keyring, contact_aad
from services.recovery.adapters import repository
from services.recovery.adapters.support_tables import request_log
from services.recovery.adapters.tables import (
    accounts,
    codes,
    counters,
    credentials,
    login_failures,
    rate_events,
)
from services.recovery.domain.model import CodeStatus
from services.recovery.domain.resolve import route_key


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
        "holder_epoch": event.holder_epoch,
        "contacts_epoch": event.contacts_epoch,
    }


def apply_changes(session: Session, events: Sequence[AccountChanged], now: float) -> int:
    """Upsert the newest version of each account; older or equal versions change nothing."""
    newest: dict[str, AccountChanged] = {}
    for event in events:
        key = str(event.account_id)
        if key not in newest or event.version > newest[key].version:
            newest[key] = event
    known = repository.account_versions(session, list(newest))
    epochs = {r.account_id: (r.holder_epoch, r.contacts_epoch) for r in session.execute(
        select(accounts.c.account_id, accounts.c.holder_epoch, accounts.c.contacts_epoch)
        .where(accounts.c.account_id.in_(list(known))))} if known else {}
    inserts = [
        {"account_id": key, **_row(event, now)}
        for key, event in newest.items() if key not in known
    ]
    if inserts:
        session.execute(accounts.insert(), inserts)
    applied = len(inserts)
    for key, event in newest.items():
        if key in known and event.version > known[key]:
            holder, contacts = epochs[key]
            if event.holder_epoch > holder:
                session.execute(delete(credentials).where(credentials.c.account_id == key))
                _void_pending(session, key)
            elif event.contacts_epoch > contacts:
                _void_pending(session, key)
            session.execute(update(accounts).where(accounts.c.account_id == key)
                            .values(**_row(event, now)))
            applied += 1
    return applied


def _void_pending(session: Session, account_id: str) -> None:
    session.execute(update(codes).where(codes.c.account_id == account_id,
                                        codes.c.status == CodeStatus.PENDING.value)
                    .values(status=CodeStatus.VOIDED.value))


def erase_accounts(session: Session, account_ids: Sequence[str], keyring: Keyring) -> int:
    """Delete what recovery keeps of erased accounts; returns how many accounts it knew.

    Rate-limit events and lock-outs are keyed by keyed hashes of the account id, the
    destinations and the login: those that can be derived from the row are deleted with it (a
    personal-account login's lock-out cannot be, it is not held in clear, nor can the lock-outs
    of a login from each client address: they are keyed hashes and counts, and age out by
    retention)."""
    ids = sorted(set(account_ids))
    rows = session.execute(select(accounts).where(accounts.c.account_id.in_(ids))).all()
    subjects: set[str] = set()
    lockouts: set[str] = set()
    for row in rows:
        subjects.add(keyring.keyed_hash("limit", "account:" + row.account_id))
        subjects.add(keyring.keyed_hash("limit", "account-day:" + row.account_id))
        for channel, field, token in ((Channel.SMS, "mobile", row.mobile_enc),
                                      (Channel.EMAIL, "email", row.email_enc)):
            if token is None:
                continue
            try:
                value = keyring.decrypt(token, aad=contact_aad(row.account_id, field))
            except DecryptError:  # a retired key: nothing derivable, the rows age out
                continue
            subjects.add(keyring.keyed_hash("limit", f"destination:{channel.value}:{value.lower()}"))
            if field == "mobile":
                lockouts.add(keyring.keyed_hash("lockout", route_key(keyring, value)))
    if subjects:
        session.execute(delete(rate_events).where(rate_events.c.subject.in_(sorted(subjects))))
        session.execute(delete(counters).where(counters.c.subject.in_(sorted(subjects))))
    if lockouts:
        session.execute(delete(login_failures).where(login_failures.c.subject.in_(sorted(lockouts))))
    session.execute(delete(codes).where(codes.c.account_id.in_(ids)))
    session.execute(delete(request_log).where(request_log.c.account_id.in_(ids)))
    session.execute(delete(credentials).where(credentials.c.account_id.in_(ids)))
    session.execute(delete(accounts).where(accounts.c.account_id.in_(ids)))
    return len(rows)
