"""Registration's tables for support: the identity-check attempts (a fixed window per subject).

``subject`` is an account id, or the keyed hash of what was looked up when no account matched
(so an unknown contract is limited like a known one and the limit tells nothing). One row per
subject and window; the count is raised by one conditional ``UPDATE … RETURNING``, so it is
exact with any number of simultaneous checks and workers.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, inspect, text
from sqlalchemy.engine import Connection

from services.common.db import Migration

metadata = MetaData()

identify_attempts = Table(
    "identify_attempts", metadata,
    Column("subject", String(64), primary_key=True),
    Column("window_start", Float, primary_key=True),  # Unix seconds
    Column("attempts", Integer, nullable=False),
)


def _v18(conn: Connection) -> None:
    columns = {c["name"] for c in inspect(conn).get_columns("accounts")}
    if "personal_account_enc" not in columns:
        conn.execute(text("ALTER TABLE accounts ADD COLUMN personal_account_enc TEXT"))
    metadata.create_all(conn, checkfirst=True)


SUPPORT_MIGRATION = Migration(
    version=18, name="support: accounts.personal_account_enc, identify_attempts", apply=_v18)
