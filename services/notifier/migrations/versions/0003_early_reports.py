"""early_reports: carrier reports that came before their delivery was recorded sent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

The gateway answers a call with its message id, and the recorder writes that answer a moment
later (it gathers answers; longer while the database is slow). A carrier's verdict reported in
between found no delivery with that id and was answered 404 and lost. It is now kept here by
its message id, for a day at most, and applied when the delivery is recorded sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "early_reports",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("early_reports")
