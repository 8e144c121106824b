"""Recovery's tables (SQLAlchemy Core) and its migrations. Times are Unix seconds (float)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Connection

from services.common.db import Migration
from services.common.dedupe import processed_events_table
from services.common.outbox import outbox_table
from services.recovery.adapters.support_tables import SUPPORT_MIGRATION

metadata = MetaData()

accounts = Table(
    "accounts", metadata,
    Column("account_id", String(36), primary_key=True),
    Column("contract_number", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tv_product", String(16), nullable=False),
    Column("login_key_mobile", String(64), nullable=False, index=True),
    Column("login_key_personal_account", String(64), nullable=False, index=True),
    Column("sms_usable", Boolean, nullable=False),
    Column("email_usable", Boolean, nullable=False),
    Column("mobile_enc", Text, nullable=False),
    Column("mobile_masked", String(254), nullable=False),
    Column("email_enc", Text, nullable=True),
    Column("email_masked", String(254), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

credentials = Table(
    "credentials", metadata,
    Column("account_id", String(36), primary_key=True),
    Column("password_hash", Text, nullable=True),
    Column("updated_at", Float, nullable=False),
)

codes = Table(
    "codes", metadata,
    Column("code_id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("request_event_id", String(36), nullable=False, unique=True),
    Column("hash", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_codes_account_status", "account_id", "status"),
    Index("ix_codes_status_expires", "status", "expires_at"),
)

processed_events = processed_events_table(metadata)

rate_events = Table(
    "rate_events", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_rate_events_subject", "kind", "subject", "at"),
    Index("ix_rate_events_at", "at"),
)

login_failures = Table(
    "login_failures", metadata,
    Column("subject", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until", Float, nullable=True),
)

outbox = outbox_table(metadata)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


MIGRATIONS = [Migration(1, "create recovery tables", _v1)]
MIGRATIONS.append(SUPPORT_MIGRATION)
