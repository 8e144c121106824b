"""Recovery's tables (SQLAlchemy Core) and its migrations. Times are Unix seconds (float)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    or_,
    text,
)

from services.common.db import outbox_table, processed_events_table, window_tables
from services.common.migrations import MigrationScripts
from services.common.retention import Prunable, window_prunables
from services.recovery.adapters import support_tables

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
    # the epochs of AccountChanged last applied (migration 2): a higher one revokes
    Column("holder_epoch", Integer, nullable=False, server_default=text("0")),
    Column("contacts_epoch", Integer, nullable=False, server_default=text("0")),
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
    Column("locale", String(8), nullable=True),  # of the request; the notice uses it
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

# lock-out counts: subject = keyed hash of a login, or of a login and a client address
login_failures = Table(
    "login_failures", metadata,
    Column("subject", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),  # places taken since the last success
    Column("locked_until", Float, nullable=True),  # set when the count reaches the limit
    # the last attempt counted or refused (Unix seconds): an idle count ages out by retention
    Column("touched_at", Float, nullable=True),
    # a count per login and client address: the login's own subject, by which support finds
    # the addresses it is locked from and an erasure deletes them (null: a login's own count)
    Column("login", String(64), nullable=True),
    Index("ix_login_failures_login", "login"),
)

# sliding-window counts shared by workers (``services.common.db.take_window``); slots out of
# their window are pruned every 10 s of code traffic, and both tables by retention
windows, window_slots = window_tables(metadata)

outbox = outbox_table(metadata)


# the migrations (``services/recovery/migrations``) take a database to these tables
MIGRATIONS = MigrationScripts(Path(__file__).parents[1] / "migrations")
MODELS = [metadata, support_tables.metadata]


def _older(column: Any, now: float, keep_s: float) -> ColumnElement[bool]:
    return column < now - keep_s  # type: ignore[no-any-return]


# bookkeeping pruned after RETENTION_DAYS (``services.common.retention``): ids of processed
# requests, codes expired long ago (whatever their status: a password lives in
# ``credentials``), rate-limit events and lock-outs long over
prunable = [
    Prunable(processed_events, lambda now, keep: processed_events.c.processed_at
             < datetime.fromtimestamp(now - keep, UTC)),
    Prunable(codes, lambda now, keep: _older(codes.c.expires_at, now, keep)),
    Prunable(rate_events, lambda now, keep: _older(rate_events.c.at, now, keep)),
    Prunable(login_failures, lambda now, keep: and_(
        or_(login_failures.c.touched_at.is_(None), _older(login_failures.c.touched_at, now, keep)),
        or_(login_failures.c.locked_until.is_(None),
            _older(login_failures.c.locked_until, now, keep)))),
    *window_prunables(windows, window_slots),
]
