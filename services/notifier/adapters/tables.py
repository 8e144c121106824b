"""The notifier's tables and migrations: deliveries (one row per code), processed events, outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
)

from schemas.topics import NOTIFICATION_STATUS
from services.common.db import outbox_table, processed_events_table
from services.common.migrations import MigrationScripts
from services.common.retention import Prunable

metadata = MetaData()

processed_events = processed_events_table(metadata)

deliveries = Table(
    "deliveries",
    metadata,
    # one delivery per code, or per (code, channel) of a notice: never twice; the gateway's client_ref
    Column("code_id", String(36), primary_key=True),
    Column("request_event_id", String(36), nullable=False),
    Column("account_id", String(36), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("locale", String(8), nullable=False),
    Column("destination_masked", String(254), nullable=False),
    # the encrypted fields as received; wiped once the delivery is final
    Column("destination_enc", Text, nullable=True),
    Column("password_enc", Text, nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # attempts that ended before any gateway call: NotificationStatus.attempts = attempts - skipped
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("message_id", String(64), nullable=True),
    Column("carrier_status", String(16), nullable=True),
    Column("last_error", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # v2: notices, failover, lease takeover, conversion by prefix
    Column("kind", String(8), nullable=False, server_default="code"),  # code / notice
    Column("status_code_id", String(36), nullable=True),  # a notice's PasswordChanged.code_id
    Column("gateway", String(8), nullable=True),  # SMS gateway the delivery is pinned to
    Column("leased_by", String(36), nullable=True),  # worker holding the lease
    Column("destination_prefix", String(8), nullable=True),  # "+7916": conversion by prefix
    Index("ix_deliveries_due", "state", "next_attempt_at"),
    Index("ix_deliveries_message_id", "message_id"),
)

# carrier reports whose message id no delivery had yet (its gateway answer not recorded yet),
# applied when the delivery is recorded sent (``delivery_reports.apply_parked``); a day at most
early_reports = Table(
    "early_reports",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
PARKED_KEEP_S = 86_400.0

outbox = outbox_table(metadata)

# one row per running worker: a lease held by a worker whose heartbeat stopped is taken over
workers = Table(
    "notifier_workers",
    metadata,
    Column("worker_id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

# the migrations (``services/notifier/migrations``) take a database to these tables
MIGRATIONS = MigrationScripts(Path(__file__).parents[1] / "migrations")
MODELS = [metadata]


def _aged(column: Any, now: float, keep_s: float) -> ColumnElement[bool]:
    return column < datetime.fromtimestamp(now - keep_s, UTC)  # type: ignore[no-any-return]


# bookkeeping pruned after RETENTION_DAYS (``services.common.retention``): ids of processed
# events, parked reports (after a day), and deliveries that are final (sent or failed) or whose
# code expired long ago; a pruned delivery's statuses (keyed by its code id; a notice's by the
# activated code's id, ``status_code_id``) are tombstoned with it, so that no status is left that
# an erasure of its account could no longer find
prunable = [
    Prunable(processed_events, lambda now, keep: _aged(processed_events.c.processed_at, now, keep)),
    Prunable(deliveries, lambda now, keep: or_(
        and_(deliveries.c.state.in_(["sent", "failed"]), _aged(deliveries.c.updated_at, now, keep)),
        _aged(deliveries.c.expires_at, now, keep)),
        tombstones=(NOTIFICATION_STATUS, outbox),
        published_key=func.coalesce(deliveries.c.status_code_id, deliveries.c.code_id)),
    # a report parked a day matches no message of ours: whatever RETENTION_DAYS is
    Prunable(early_reports, lambda now, _keep: _aged(early_reports.c.received_at, now, PARKED_KEEP_S)),
]
