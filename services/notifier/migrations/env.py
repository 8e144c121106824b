"""Alembic's environment for notifier's database: run by ``python -m services.notifier migrate``
and at the start of a worker (``services.common.migrations.migrate``)."""

from services.common.migrations import run_migrations
from services.notifier.adapters import tables

run_migrations(tables.MODELS)
