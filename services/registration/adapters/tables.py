"""Registration's tables (SQLAlchemy Core; SQLite and PostgreSQL).

No phone, email, full name or passport is stored in clear: keyed hashes for lookups, AES-GCM
tokens (bound to the account id) for the contacts, masked copies for people.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
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
    text,
)

from services.common.db import outbox_table, processed_events_table
from services.common.migrations import MigrationScripts
from services.common.retention import Prunable, window_prunables
from services.registration.adapters import support_tables


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
    # the lifecycle rules of a re-link (migration 2)
    Column("holder_hash", String(64), nullable=True),
    Column("contacts_hash", String(64), nullable=True),
    Column("holder_epoch", Integer, nullable=False, server_default=text("0")),
    Column("contacts_epoch", Integer, nullable=False, server_default=text("0")),
    # a personal account that also reads as a mobile: that mobile's login key (revision 0002)
    Column("alias_key", String(64), nullable=True),
)

# What remains of an erased contract (ids and times only): a link not newer than ``erased_at``
# is stale, so a late or redelivered link cannot bring the erased data back.
erasures = Table(
    "erasures",
    metadata,
    Column("contract_number", String(32), primary_key=True),
    Column("account_id", Uuid, nullable=True),
    Column("erased_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)

# one-time fills of existing rows, done once per database (``service_layer.fill_aliases``)
backfills = Table(
    "backfills",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("done_at", UtcDateTime, nullable=False),
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

# the accounts whose personal account reads as a given mobile (``Registry._conflicts``)
alias_index = Index(
    "ix_accounts_alias_key",
    accounts.c.alias_key,
    postgresql_where=accounts.c.alias_key.is_not(None),
    sqlite_where=accounts.c.alias_key.is_not(None),
)

processed_events = processed_events_table(metadata)

outbox = outbox_table(metadata)


# the migrations (``services/registration/migrations``) take a database to these tables
MIGRATIONS = MigrationScripts(Path(__file__).parents[1] / "migrations")
MODELS = [metadata, support_tables.metadata]


# bookkeeping pruned after RETENTION_DAYS: ids of processed events (the inbound topics keep
# records 7 days, so a redelivery older than that cannot come; one that does is still judged by
# ``occurred_at`` against the account), and support's identity-check counts. Erasure markers
# stay: they are ids and a time.
prunable = [
    Prunable(processed_events, lambda now_s, keep_s: processed_events.c.processed_at
             < datetime.fromtimestamp(now_s - keep_s, UTC)),
    # support's identity checks: a check prunes what left its window; these, what no check did
    *window_prunables(support_tables.windows, support_tables.window_slots),
]


def now() -> datetime:
    return datetime.now(UTC)
