"""Every service's ``__main__``: ``migrate`` upgrades its database and exits; a settings error is
one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from schemas.topics import SERVICES
from services.common.db import make_engine
from services.common.migrations import current_revision
from tests.support.workers import ROOT


def run_module(service: str, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", f"services.{service}", command], cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("service", SERVICES)
def test_migrate_upgrades_the_database_to_the_newest_revision(service: str, tmp_path: Path,
                                                               database_url: str) -> None:
    from importlib import import_module

    scripts = import_module(f"services.{service}.adapters.tables").MIGRATIONS
    env = {"SELFCARE_ENV": "local", "SELFCARE_VAR_DIR": str(tmp_path),
           f"{service.upper()}_DATABASE_URL": database_url}
    done = run_module(service, "migrate", env)
    assert done.returncode == 0, done.stderr
    applied = ", ".join(scripts.revisions())  # a fresh database gets every revision, oldest first
    assert f"{service}: database at {scripts.head()} (applied {applied})" in done.stdout
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == scripts.head()
    finally:
        engine.dispose()
    again = run_module(service, "migrate", env)
    assert "(nothing to apply)" in again.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_a_settings_error_exits_2_with_one_clear_line(service: str, tmp_path: Path) -> None:
    done = run_module(service, "worker", {"SELFCARE_VAR_DIR": str(tmp_path)})  # no keys, not local
    assert done.returncode == 2
    assert done.stderr.startswith(f"{service}: configuration error: ")
    assert "must be set" in done.stderr
    assert "Traceback" not in done.stderr
