"""Sliding windows: ``counters`` (fixed windows) becomes ``windows`` and ``window_slots``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

``LIMIT_ACCOUNT_DAILY_MAX``, ``SMS_HOURLY_BUDGET`` and ``LOGIN_IP_MAX`` were counted in fixed
windows, which let up to twice the limit through across a window's edge. They are now counted in
sliding windows (``adapters.repository.take``). Each fixed window still running at the upgrade is
carried over as it stood: its events fill as many slots, each leaving when the window would have
ended, so nothing counted before the upgrade is forgotten and nothing waits longer than it
would have.
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
        "windows",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("next_slot", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("busy_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_index("ix_windows_busy_until", "windows", ["busy_until"], unique=False)
    op.create_table(
        "window_slots",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "slot"),
    )
    op.create_index("ix_window_slots_until", "window_slots", ["until"], unique=False)
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT subject, count, window_end FROM counters WHERE count > 0")).mappings().all()
    if rows:
        # a ring of ``count`` slots: a take under another limit lays it out again, newest kept
        conn.execute(sa.text("INSERT INTO windows (subject, next_slot, size, busy_until) "
                             "VALUES (:subject, 0, :size, :until)"),
                     [{"subject": r["subject"], "size": r["count"], "until": r["window_end"]}
                      for r in rows])
        conn.execute(sa.text("INSERT INTO window_slots (subject, slot, until) "
                             "VALUES (:subject, :slot, :until)"),
                     [{"subject": r["subject"], "slot": i, "until": r["window_end"]}
                      for r in rows for i in range(r["count"])])
    op.drop_index("ix_counters_window_end", table_name="counters")
    op.drop_table("counters")


def downgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_index("ix_counters_window_end", "counters", ["window_end"], unique=False)
    # each ring as one fixed window: its slots counted, ending when the last of them leaves
    op.execute(sa.text(
        "INSERT INTO counters (subject, count, window_end) "
        "SELECT subject, count(*), max(until) FROM window_slots GROUP BY subject"))
    op.drop_index("ix_window_slots_until", table_name="window_slots")
    op.drop_table("window_slots")
    op.drop_index("ix_windows_busy_until", table_name="windows")
    op.drop_table("windows")
