"""deliveries.skipped: attempts that ended before any gateway call, so that a status counts calls.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

``attempts`` counts the claims of a row, the fencing token of its lease; an attempt skipped
because the gateway's circuit was open (or its lease was lost, or the code had expired, before
the call) raised it too, and ``NotificationStatus.attempts`` showed support more attempts than
the gateway had seen. A status now reports ``attempts - skipped``. Rows present at the upgrade
start at 0: what they skipped before is not known.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("deliveries", "skipped")
