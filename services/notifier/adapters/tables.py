"""The notifier's tables and migrations: deliveries (one row per code), processed events, outbox."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
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

metadata = MetaData()

processed_events = processed_events_table(metadata)

deliveries = Table(
    "deliveries",
    metadata,
    Column("code_id", String(36), primary_key=True),  # one delivery per code: never twice
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
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("message_id", String(64), nullable=True),
    Column("carrier_status", String(16), nullable=True),
    Column("last_error", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_deliveries_due", "state", "next_attempt_at"),
    Index("ix_deliveries_message_id", "message_id"),
)

outbox = outbox_table(metadata)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


MIGRATIONS = [Migration(version=1, name="deliveries, processed_events, outbox", apply=_v1)]
