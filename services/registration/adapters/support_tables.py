"""Registration's tables for support: the identity-check attempts (a fixed window per subject).

``subject`` is an account id, or the keyed hash of what was looked up when no account matched
(so an unknown contract is limited like a known one and the limit tells nothing). One row per
subject and window; the count is raised by one conditional ``UPDATE … RETURNING``, so it is
exact with any number of simultaneous checks and workers.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table

metadata = MetaData()

identify_attempts = Table(
    "identify_attempts", metadata,
    Column("subject", String(64), primary_key=True),
    Column("window_start", Float, primary_key=True),  # Unix seconds
    Column("attempts", Integer, nullable=False),
)

