"""accounts.alias_key: a personal account that also reads as a mobile, keyed as that mobile.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

A personal account such as ``89161110003`` is, typed on the portal as a login, also the mobile
+79161110003, so it reaches another subscriber's interactive-TV account with that mobile as well.
Registration now refuses a link that would make two such accounts active at once
(``login_conflict``), by this column. Rows already there keep NULL until their next link: the
column is a keyed hash of the personal account, which a migration cannot compute without the
key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("alias_key", sa.String(length=64), nullable=True))
    op.create_index("ix_accounts_alias_key", "accounts", ["alias_key"], unique=False,
                    postgresql_where=sa.text("alias_key IS NOT NULL"),
                    sqlite_where=sa.text("alias_key IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_accounts_alias_key", table_name="accounts")
    op.drop_column("accounts", "alias_key")
