"""Support's identity checks in sliding windows: ``identify_attempts`` (fixed windows) becomes
``windows`` and ``window_slots``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

``SUPPORT_IDENTIFY_MAX`` checks per ``SUPPORT_IDENTIFY_WINDOW_S`` were counted in fixed windows,
which let up to twice the limit through across a window's edge. They are now counted in sliding
windows (``services.common.db.take_window``), as recovery's limits are. Each fixed window still
running at the upgrade is carried over as it stood: its checks fill as many slots, each leaving
when the window would have ended. The window's length is the environment's
``SUPPORT_IDENTIFY_WINDOW_S`` (the migration runs with the service's settings), 3600 when unset.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _window_s() -> int:
    try:
        value = int(os.environ.get("SUPPORT_IDENTIFY_WINDOW_S", "3600"))
    except ValueError:
        return 3600  # the service itself refuses to start on it
    return value if value > 0 else 3600


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
    window_s, now = _window_s(), time.time()
    rows = [r for r in conn.execute(sa.text(
        "SELECT subject, window_start, attempts FROM identify_attempts WHERE attempts > 0"
    )).mappings() if r["window_start"] + window_s > now]
    # one ring per subject, of as many slots as its checks still inside, oldest first (the old
    # code kept the previous fixed window next to the current one: with a longer window now,
    # both are inside); a take under another limit lays the ring out again, newest kept
    leaving: dict[str, list[float]] = {}
    for r in sorted(rows, key=lambda r: r["window_start"]):
        leaving.setdefault(r["subject"], []).extend([r["window_start"] + window_s] * r["attempts"])
    if leaving:
        conn.execute(sa.text("INSERT INTO windows (subject, next_slot, size, busy_until) "
                             "VALUES (:subject, 0, :size, :until)"),
                     [{"subject": subject, "size": len(untils), "until": untils[-1]}
                      for subject, untils in leaving.items()])
        conn.execute(sa.text("INSERT INTO window_slots (subject, slot, until) "
                             "VALUES (:subject, :slot, :until)"),
                     [{"subject": subject, "slot": i, "until": until}
                      for subject, untils in leaving.items() for i, until in enumerate(untils)])
    op.drop_table("identify_attempts")


def downgrade() -> None:
    op.create_table(
        "identify_attempts",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "window_start"),
    )
    # each ring as the fixed window running now, counting its checks still inside their window
    window_s, now = _window_s(), time.time()
    op.execute(sa.text(
        "INSERT INTO identify_attempts (subject, window_start, attempts) "
        "SELECT subject, :start, count(*) FROM window_slots WHERE until > :now GROUP BY subject"
    ).bindparams(start=float(now - now % window_s), now=now))
    op.drop_index("ix_window_slots_until", table_name="window_slots")
    op.drop_table("window_slots")
    op.drop_index("ix_windows_busy_until", table_name="windows")
    op.drop_table("windows")
