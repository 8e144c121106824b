"""Every metric a service registers is named in docs/operations.md, and every metric named there
is registered: the services are bootstrapped (nothing started) and their registries read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.topics import SERVICES
from services.notifier.bootstrap import bootstrap as notifier
from services.notifier.settings import NotifierSettings
from services.recovery.bootstrap import bootstrap as recovery
from services.recovery.settings import RecoverySettings
from services.registration.bootstrap import bootstrap as registration
from services.registration.settings import RegistrationSettings
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
METRIC = re.compile(r"`(<service>_[a-z0-9_]+|(?:" + "|".join(SERVICES) + r")_[a-z0-9_]+)")


def registered(tmp_path: Path) -> Iterator[str]:
    """The metric names (as scraped: counters with ``_total``) the three services register."""
    env = {"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
           "SELFCARE_ENV": "local", "SELFCARE_VAR_DIR": str(tmp_path)}
    made: list[Any] = [
        registration(RegistrationSettings.from_env(env)),
        recovery(RecoverySettings.from_env(env)),
        notifier(NotifierSettings.from_env(env)),
    ]
    try:
        for service in made:
            for family in service.metrics.base.registry.collect():
                yield family.name + ("_total" if family.type == "counter" else "")
    finally:
        for service in made:
            service.close()


def documented(text: str) -> set[str]:
    """Metric names in backquotes, ``<service>_…`` written out for each service."""
    names: set[str] = set()
    for name in METRIC.findall(text):
        if name.startswith("<service>_"):
            names |= {name.replace("<service>", s) for s in SERVICES}
        else:
            names.add(name)
    return names


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return set(registered(tmp_path_factory.mktemp("metrics")))


def test_every_registered_metric_is_documented(names: set[str]) -> None:
    assert {"registration_commands_total", "recovery_argon2_seconds",
            "notifier_sms_circuit_open", "notifier_rows_pruned_total"} <= names
    assert sorted(names - documented(OPERATIONS.read_text(encoding="utf-8"))) == []


def test_every_documented_metric_is_registered(names: set[str]) -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text[text.index("`GET /metrics`"):text.index("## The ops CLI")]
    assert sorted(documented(section) - names) == []


def test_the_parser_expands_the_service_placeholder() -> None:
    assert documented("`<service>_x_total{a}` and `recovery_y` but not `other_z`") == {
        "registration_x_total", "recovery_x_total", "notifier_x_total", "recovery_y"}
