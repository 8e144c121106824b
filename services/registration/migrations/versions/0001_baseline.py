"""Registration's schema: accounts, erasures, processed events, outbox, identify attempts.

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


sa.Table("accounts", SNAPSHOT,
    sa.Column("account_id", sa.Uuid(), nullable=False),
    sa.Column("contract_number", sa.String(length=32), nullable=False),
    sa.Column("status", sa.String(length=8), nullable=False),
    sa.Column("tv_product", sa.String(length=16), nullable=False),
    sa.Column("login_key", sa.String(length=64), nullable=False),
    sa.Column("mobile_key", sa.String(length=64), nullable=False),
    sa.Column("personal_account_key", sa.String(length=64), nullable=False),
    sa.Column("mobile_enc", sa.Text(), nullable=False),
    sa.Column("mobile_masked", sa.String(length=254), nullable=False),
    sa.Column("email_enc", sa.Text(), nullable=True),
    sa.Column("email_masked", sa.String(length=254), nullable=True),
    sa.Column("full_name_enc", sa.Text(), nullable=False),
    sa.Column("personal_account_enc", sa.Text(), nullable=True),
    sa.Column("passport_hash", sa.String(length=64), nullable=False),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("mobile_active", sa.Boolean(), nullable=False),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("holder_hash", sa.String(length=64), nullable=True),
    sa.Column("contacts_hash", sa.String(length=64), nullable=True),
    sa.Column("holder_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.Column("contacts_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.PrimaryKeyConstraint("account_id"),
    sa.UniqueConstraint("contract_number")
)
_index("ux_accounts_active_login_key", "accounts", ["login_key"], unique=True,
       postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
sa.Table("erasures", SNAPSHOT,
    sa.Column("contract_number", sa.String(length=32), nullable=False),
    sa.Column("account_id", sa.Uuid(), nullable=True),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("contract_number")
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
sa.Table("identify_attempts", SNAPSHOT,
    sa.Column("subject", sa.String(length=64), nullable=False),
    sa.Column("window_start", sa.Float(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("subject", "window_start")
)


def upgrade() -> None:
    complete_schema(op, SNAPSHOT)  # type: ignore[arg-type]
    allow_tombstones(op.get_bind())  # an outbox made before tombstones had ``value NOT NULL``


def downgrade() -> None:
    SNAPSHOT.drop_all(op.get_bind())
