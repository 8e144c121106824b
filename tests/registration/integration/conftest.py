"""Registration's database on SQLite and on PostgreSQL (``database_url``), migrated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.common.db import Database
from services.common.migrations import migrate
from services.registration.adapters.tables import MIGRATIONS


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(url=database_url, name="registration-test")
    migrate(database.engine, MIGRATIONS)
    yield database
    database.close()
