"""login_failures.touched_at: when a count last took an attempt, so that an idle count ages out.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

A count that never reached its lock (a few wrong guesses for a login from one address) had no
time on it, so retention could not prune it and the table grew with every address that ever
guessed. The rows present at the upgrade are stamped with the time of the upgrade: they age out
``RETENTION_DAYS`` later unless an attempt touches them again.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("login_failures", sa.Column("touched_at", sa.Float(), nullable=True))
    op.execute(sa.text("UPDATE login_failures SET touched_at = :now").bindparams(now=time.time()))


def downgrade() -> None:
    op.drop_column("login_failures", "touched_at")
