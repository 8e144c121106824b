"""Recovery's schema: accounts, credentials, codes, rate events, login failures, counters,
request log, processed events, outbox.

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
    sa.Column("account_id", sa.String(length=36), nullable=False),
    sa.Column("contract_number", sa.String(length=32), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("tv_product", sa.String(length=16), nullable=False),
    sa.Column("login_key_mobile", sa.String(length=64), nullable=False),
    sa.Column("login_key_personal_account", sa.String(length=64), nullable=False),
    sa.Column("sms_usable", sa.Boolean(), nullable=False),
    sa.Column("email_usable", sa.Boolean(), nullable=False),
    sa.Column("mobile_enc", sa.Text(), nullable=False),
    sa.Column("mobile_masked", sa.String(length=254), nullable=False),
    sa.Column("email_enc", sa.Text(), nullable=True),
    sa.Column("email_masked", sa.String(length=254), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Column("holder_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.Column("contacts_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.PrimaryKeyConstraint("account_id")
)
_index("ix_accounts_login_key_mobile", "accounts", ["login_key_mobile"], unique=False)
_index("ix_accounts_login_key_personal_account", "accounts", ["login_key_personal_account"], unique=False)
sa.Table("codes", SNAPSHOT,
    sa.Column("code_id", sa.String(length=36), nullable=False),
    sa.Column("account_id", sa.String(length=36), nullable=False),
    sa.Column("request_event_id", sa.String(length=36), nullable=False),
    sa.Column("hash", sa.Text(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("channel", sa.String(length=8), nullable=False),
    sa.Column("locale", sa.String(length=8), nullable=True),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("code_id"),
    sa.UniqueConstraint("request_event_id")
)
_index("ix_codes_account_status", "codes", ["account_id", "status"], unique=False)
_index("ix_codes_status_expires", "codes", ["status", "expires_at"], unique=False)
sa.Table("counters", SNAPSHOT,
    sa.Column("subject", sa.String(length=80), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("window_end", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("subject")
)
_index("ix_counters_window_end", "counters", ["window_end"], unique=False)
sa.Table("credentials", SNAPSHOT,
    sa.Column("account_id", sa.String(length=36), nullable=False),
    sa.Column("password_hash", sa.Text(), nullable=True),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("account_id")
)
sa.Table("login_failures", SNAPSHOT,
    sa.Column("subject", sa.String(length=64), nullable=False),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("locked_until", sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint("subject")
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
sa.Table("rate_events", SNAPSHOT,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("subject", sa.String(length=64), nullable=False),
    sa.Column("at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id")
)
_index("ix_rate_events_at", "rate_events", ["at"], unique=False)
_index("ix_rate_events_subject", "rate_events", ["kind", "subject", "at"], unique=False)
sa.Table("request_log", SNAPSHOT,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("login_key", sa.String(length=64), nullable=False),
    sa.Column("request_event_id", sa.String(length=36), nullable=False),
    sa.Column("account_id", sa.String(length=36), nullable=True),
    sa.Column("channel", sa.String(length=8), nullable=False),
    sa.Column("outcome", sa.String(length=8), nullable=False),
    sa.Column("reason", sa.String(length=32), nullable=True),
    sa.Column("retry_after_s", sa.Integer(), nullable=True),
    sa.Column("code_id", sa.String(length=36), nullable=True),
    sa.Column("requested_at", sa.Float(), nullable=True),
    sa.Column("decided_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id")
)
_index("ix_request_log_decided", "request_log", ["decided_at"], unique=False)
_index("ix_request_log_login", "request_log", ["login_key", "id"], unique=False)


def upgrade() -> None:
    complete_schema(op, SNAPSHOT)  # type: ignore[arg-type]
    allow_tombstones(op.get_bind())  # an outbox made before tombstones had ``value NOT NULL``


def downgrade() -> None:
    SNAPSHOT.drop_all(op.get_bind())
