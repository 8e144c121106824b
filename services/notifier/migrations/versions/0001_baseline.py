"""The notifier's schema: deliveries, worker leases, processed events, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

The first revision under Alembic. It takes an empty database, or one made by the migration list
that came before Alembic (any of its steps, recorded in ``schema_migrations``), to the schema
below, by adding what is missing; ``schema_migrations`` is then dropped. The tables are written
out here, not imported from the models, so this revision stays what it is when they change.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from services.common.db import allow_tombstones
from services.common.migrations import complete_schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SNAPSHOT = sa.MetaData()


def _index(name: str, table: str, columns: list[str], **kwargs: Any) -> None:
    sa.Index(name, *(SNAPSHOT.tables[table].c[c] for c in columns), **kwargs)


sa.Table("deliveries", SNAPSHOT,
    sa.Column("code_id", sa.String(length=36), nullable=False),
    sa.Column("request_event_id", sa.String(length=36), nullable=False),
    sa.Column("account_id", sa.String(length=36), nullable=False),
    sa.Column("channel", sa.String(length=8), nullable=False),
    sa.Column("locale", sa.String(length=8), nullable=False),
    sa.Column("destination_masked", sa.String(length=254), nullable=False),
    sa.Column("destination_enc", sa.Text(), nullable=True),
    sa.Column("password_enc", sa.Text(), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("message_id", sa.String(length=64), nullable=True),
    sa.Column("carrier_status", sa.String(length=16), nullable=True),
    sa.Column("last_error", sa.String(length=64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(length=8), server_default="code", nullable=False),
    sa.Column("status_code_id", sa.String(length=36), nullable=True),
    sa.Column("gateway", sa.String(length=8), nullable=True),
    sa.Column("leased_by", sa.String(length=36), nullable=True),
    sa.Column("destination_prefix", sa.String(length=8), nullable=True),
    sa.PrimaryKeyConstraint("code_id")
)
_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"], unique=False)
_index("ix_deliveries_message_id", "deliveries", ["message_id"], unique=False)
sa.Table("notifier_workers", SNAPSHOT,
    sa.Column("worker_id", sa.String(length=36), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("worker_id")
)
sa.Table("outbox", SNAPSHOT,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("topic", sa.String(length=200), nullable=False),
    sa.Column("key", sa.LargeBinary(), nullable=True),
    sa.Column("value", sa.LargeBinary(), nullable=True),
    sa.Column("headers", sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint("id")
)
sa.Table("processed_events", SNAPSHOT,
    sa.Column("event_id", sa.String(length=36), nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("event_id")
)


def upgrade() -> None:
    complete_schema(op, SNAPSHOT)  # type: ignore[arg-type]
    allow_tombstones(op.get_bind())  # an outbox made before tombstones had ``value NOT NULL``


def downgrade() -> None:
    SNAPSHOT.drop_all(op.get_bind())
