"""One shape for every service: ``bootstrap(settings, *, overrides=None) -> Service``, then
``prepare()`` before the worker starts and ``close()`` after it; and one ``__main__`` for all.

``python -m services.<name> migrate`` upgrades the service's database to the newest Alembic
revision and exits. ``python -m services.<name> worker`` (any other faust command too) reads
the settings, bootstraps, prepares (which migrates, in every mode: under an advisory lock on
PostgreSQL, so workers starting together migrate once) and hands over to faust. A settings
error is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from services.common.db import make_engine
from services.common.errors import ConfigError
from services.common.migrations import MigrationScripts, migrate
from services.common.process import tune_gc_for_workers
from services.common.settings import CommonSettings


class Service(Protocol):
    """What ``bootstrap`` returns: the faust app with everything registered on it."""

    @property
    def app(self) -> Any: ...

    def prepare(self) -> None:
        """Before the worker starts: migrations, and whatever else must precede consuming."""

    def close(self) -> None:
        """After the worker stops: thread pools, processes and connections."""


S = TypeVar("S", bound=CommonSettings)


def upgrade_database(settings: CommonSettings, scripts: MigrationScripts) -> list[str]:
    """``migrate``: the service's database to the newest revision; the revisions applied."""
    engine = make_engine(settings.database_url)
    try:
        return migrate(engine, scripts)
    finally:
        engine.dispose()


def run(*, service: str, load_settings: Callable[[], S], bootstrap: Callable[[S], Service],
        migrations: MigrationScripts, argv: Sequence[str] | None = None) -> None:
    """The body of every ``services/<name>/__main__.py``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    if args[:1] == ["migrate"]:
        applied = upgrade_database(settings, migrations)
        print(f"{service}: database at {migrations.head()}"
              + (f" (applied {', '.join(applied)})" if applied else " (nothing to apply)"))
        return
    instance = bootstrap(settings)
    try:
        instance.prepare()
        tune_gc_for_workers()
        instance.app.main()  # faust reads its command (``worker``) from sys.argv
    finally:
        instance.close()
