"""Recovery settings from the environment."""

from __future__ import annotations

import pytest

from services.common.settings import ConfigError
from services.recovery.settings import RecoverySettings
from tests.support.workers import TEST_HASH_PEPPER, TEST_RECOVERY_API_TOKEN, TEST_SECRET_KEYS

BASE = {"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
        "RECOVERY_API_TOKEN": TEST_RECOVERY_API_TOKEN}


def test_defaults_follow_design() -> None:
    s = RecoverySettings.from_env(BASE)
    assert s.web_port == 6102
    assert (s.policy.login_cooldown.window_s, s.policy.per_destination.max_events,
            s.policy.per_destination.window_s, s.policy.per_ip.max_events,
            s.policy.per_ip.window_s, s.policy.lockout_failures, s.policy.lockout_s) == (
        60, 5, 600, 30, 300, 5, 900)
    assert (s.argon2.time_cost, s.argon2.memory_kib, s.argon2.parallelism) == (2, 19456, 1)
    assert s.password_length >= 10 and s.code_ttl_s == 3600
    assert s.database_url.endswith("recovery.db")


def test_overrides_and_refusals() -> None:
    s = RecoverySettings.from_env({**BASE, "LIMIT_LOGIN_COOLDOWN_S": "5", "LIMIT_IP_MAX": "7",
                                   "RECOVERY_WEB_PORT": "7000", "LOGIN_LOCKOUT_S": "3"})
    assert (s.policy.login_cooldown.window_s, s.policy.per_ip.max_events, s.web_port,
            s.policy.lockout_s) == (5, 7, 7000, 3)
    with pytest.raises(ConfigError):
        RecoverySettings.from_env({**BASE, "PASSWORD_LENGTH": "6"})
    with pytest.raises(ConfigError):
        RecoverySettings.from_env({"HASH_PEPPER": TEST_HASH_PEPPER})
    with pytest.raises(ConfigError):
        RecoverySettings.from_env({**BASE, "ARGON2_MEMORY_KIB": "1024"})
