"""Alembic's environment for registration's database: run by ``python -m services.registration migrate``
and at the start of a worker (``services.common.migrations.migrate``)."""

from services.common.migrations import run_migrations
from services.registration.adapters import tables

run_migrations(tables.MODELS)
