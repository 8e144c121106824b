"""SQL of the accounts projection (the decisions are in ``service_layer.project_accounts``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from services.recovery.adapters.tables import accounts
from services.recovery.domain.commands import ProjectAccount


def _row(change: ProjectAccount, now: float) -> dict[str, Any]:
    return {
        "contract_number": change.contract_number,
        "status": change.status.value,
        "tv_product": change.tv_product.value,
        "login_key_mobile": change.login_key_mobile,
        "login_key_personal_account": change.login_key_personal_account,
        "sms_usable": change.sms_usable,
        "email_usable": change.email_usable,
        "mobile_enc": change.mobile_enc,
        "mobile_masked": change.mobile_masked,
        "email_enc": change.email_enc,
        "email_masked": change.email_masked,
        "version": change.version,
        "updated_at": now,
        "holder_epoch": change.holder_epoch,
        "contacts_epoch": change.contacts_epoch,
    }


def epochs(session: Session, account_ids: Collection[str]) -> dict[str, tuple[int, int, int]]:
    if not account_ids:
        return {}
    c = accounts.c
    rows = session.execute(select(c.account_id, c.version, c.holder_epoch, c.contacts_epoch)
                           .where(c.account_id.in_(sorted(account_ids))))
    return {r.account_id: (r.version, r.holder_epoch, r.contacts_epoch) for r in rows}


def insert_accounts(session: Session, changes: Sequence[ProjectAccount], now: float) -> None:
    if changes:
        session.execute(accounts.insert(),
                        [{"account_id": c.account_id, **_row(c, now)} for c in changes])


def update_account(session: Session, change: ProjectAccount, now: float) -> None:
    session.execute(update(accounts).where(accounts.c.account_id == change.account_id)
                    .values(**_row(change, now)))


def delete_accounts(session: Session, account_ids: Collection[str]) -> None:
    session.execute(delete(accounts).where(accounts.c.account_id.in_(sorted(account_ids))))
