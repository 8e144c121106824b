"""``backfills``: which one-time fills of existing rows have been done in this database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Revision ``0002`` added ``accounts.alias_key`` (a personal account that also reads as a mobile,
keyed as that mobile), but a migration holds no key to compute it, so the rows linked before it
kept NULL. The registration worker fills them at its start (``service_layer.fill_aliases``), once:
a row here says the fill is complete, and later starts skip it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("backfills")
