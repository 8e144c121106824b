"""Registration's tables for support: the identity checks counted, in sliding windows
(``services.common.db.take_window``).

A subject is an account id, or the keyed hash of what was looked up when no account matched (so
an unknown contract is limited like a known one and the limit tells nothing). A take locks the
subject's ``windows`` row, so the count is exact with any number of simultaneous checks and
workers.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from services.common.db import window_tables

metadata = MetaData()

windows, window_slots = window_tables(metadata)

