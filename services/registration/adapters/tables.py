"""Registration's tables and migrations (SQLAlchemy Core; SQLite and PostgreSQL).

No phone, email, full name or passport is stored in clear: keyed hashes for lookups, AES-GCM
tokens (bound to the account id) for the contacts, masked copies for people.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.engine import Connection

from services.common.db import Migration
from services.common.dedupe import processed_events_table
from services.common.outbox import outbox_table
from services.registration.adapters.support_tables import SUPPORT_MIGRATION


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Uuid, primary_key=True),
    Column("contract_number", String(32), nullable=False, unique=True),
    Column("status", String(8), nullable=False),
    Column("tv_product", String(16), nullable=False),
    Column("login_key", String(64), nullable=False),
    Column("mobile_key", String(64), nullable=False),
    Column("personal_account_key", String(64), nullable=False),
    Column("mobile_enc", Text, nullable=False),
    Column("mobile_masked", String(254), nullable=False),
    Column("email_enc", Text, nullable=True),
    Column("email_masked", String(254), nullable=True),
    Column("full_name_enc", Text, nullable=False),
    Column("personal_account_enc", Text, nullable=True),  # support's identity check only
    Column("passport_hash", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("mobile_active", Boolean, nullable=False),
    Column("linked_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("last_event_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A login belongs to at most one ACTIVE account: checked in code, enforced here (both backends
# support partial indexes) so two workers racing on different partitions cannot both win.
active_login_index = Index(
    "ux_accounts_active_login_key",
    accounts.c.login_key,
    unique=True,
    postgresql_where=accounts.c.status == "active",
    sqlite_where=accounts.c.status == "active",
)

processed_events = processed_events_table(metadata)

outbox = outbox_table(metadata)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


MIGRATIONS = [Migration(version=1, name="accounts, processed_events, outbox", apply=_v1)]
MIGRATIONS.append(SUPPORT_MIGRATION)


def now() -> datetime:
    return datetime.now(UTC)
