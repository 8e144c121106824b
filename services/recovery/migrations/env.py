"""Alembic's environment for recovery's database: run by ``python -m services.recovery migrate``
and at the start of a worker (``services.common.migrations.migrate``)."""

from services.common.migrations import run_migrations
from services.recovery.adapters import tables

run_migrations(tables.MODELS)
