"""login_failures.login: a count per login and client address names its login's subject.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

A count per login and client address was keyed by a hash of both, so neither support's view of
a login nor its erasure could find it: support saw the login's own count (every address), never
the far more common lock from one address, and an erased mobile's counts per address stayed
until retention. Counts written from now on carry their login's subject. Rows present at the
upgrade cannot be given one (the address is not kept); they end as they would have (the lock in
at most ``LOGIN_LOCKOUT_S``, the row by retention).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("login_failures", sa.Column("login", sa.String(length=64), nullable=True))
    op.create_index("ix_login_failures_login", "login_failures", ["login"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_login", table_name="login_failures")
    op.drop_column("login_failures", "login")
