"""Recovery's index for support: the last code requests of each login, with their outcome.

Written in the same transaction as the decisions (``IssueCodes``), keyed by the login's route
key (a keyed hash: the same for every typed form of one login), so ``selfcare-ops login`` reads
a few rows instead of scanning topics. No contact, no typed login, no client address: ids, the
outcome, its reason and the time. Kept bounded: at most ``KEEP_PER_LOGIN`` rows per login and
none older than ``KEEP_S``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

KEEP_PER_LOGIN = 20
KEEP_S = 30 * 86400.0

metadata = MetaData()

request_log = Table(
    "request_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("login_key", String(64), nullable=False),
    Column("request_event_id", String(36), nullable=False),
    Column("account_id", String(36), nullable=True),
    Column("channel", String(8), nullable=False),
    Column("outcome", String(8), nullable=False),  # issued / rejected
    Column("reason", String(32), nullable=True),
    Column("retry_after_s", Integer, nullable=True),
    Column("code_id", String(36), nullable=True),
    Column("requested_at", Float, nullable=True),  # the request's occurred_at
    Column("decided_at", Float, nullable=False),
    Index("ix_request_log_login", "login_key", "id"),
    Index("ix_request_log_decided", "decided_at"),
)

