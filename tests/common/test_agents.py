"""Every service has one agent per inbound topic, named ``<service>.<topic>`` and consuming that
topic under the service's prefix (``register_agents``): the services are bootstrapped (nothing
started) and their faust apps read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REQUESTED,
    CONTRACT_ERASED,
    CONTRACT_LINKED,
    CONTRACT_TERMINATED,
    PASSWORD_CHANGED,
    REQUESTS_BY_LOGIN,
)
from services.notifier.bootstrap import bootstrap as notifier
from services.notifier.settings import NotifierSettings
from services.recovery.bootstrap import bootstrap as recovery
from services.recovery.settings import RecoverySettings
from services.registration.bootstrap import bootstrap as registration
from services.registration.settings import RegistrationSettings
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS

INBOUND = {
    "registration": (CONTRACT_LINKED, CONTRACT_TERMINATED, CONTRACT_ERASED),
    "recovery": (ACCOUNT_CHANGED, CODE_REQUESTED, REQUESTS_BY_LOGIN),
    "notifier": (CODE_ISSUED, PASSWORD_CHANGED, ACCOUNT_CHANGED),
}


@pytest.mark.parametrize(("name", "build", "settings"), [
    ("registration", registration, RegistrationSettings),
    ("recovery", recovery, RecoverySettings),
    ("notifier", notifier, NotifierSettings),
])
def test_one_agent_per_inbound_topic_named_after_it(tmp_path: Path, name: str, build: Any,
                                                     settings: Any) -> None:
    env = {"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER, "SELFCARE_ENV": "local",
           "SELFCARE_VAR_DIR": str(tmp_path), "TOPIC_PREFIX": "t-"}
    service = build(settings.from_env(env))
    try:
        agents = {agent_name: agent.channel.get_topic_name()
                  for agent_name, agent in service.app.agents.items()}
    finally:
        service.close()
    assert agents == {f"{name}.{topic}": f"t-{topic}" for topic in INBOUND[name]}
