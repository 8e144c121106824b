"""Tokens and read time-out in the settings; a worker without its token does not start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import ConfigError
from services.notifier.settings import NotifierSettings
from services.recovery.settings import RecoverySettings
from tests.support.workers import ROOT, TEST_HASH_PEPPER, TEST_SECRET_KEYS

KEYS = {"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER}


def test_outside_local_mode_each_service_needs_its_token(tmp_path: Path) -> None:
    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="RECOVERY_API_TOKEN"):
        RecoverySettings.from_env(env)
    with pytest.raises(ConfigError, match="SMS_STATUS_TOKEN"):
        NotifierSettings.from_env(env)
    with pytest.raises(ConfigError, match="at least 16"):
        RecoverySettings.from_env({**env, "RECOVERY_API_TOKEN": "short"})
    assert RecoverySettings.from_env({**env, "RECOVERY_API_TOKEN": "r" * 20}).api_token == "r" * 20


def test_the_webhook_token_is_never_the_gateway_token(tmp_path: Path) -> None:
    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path), "SMS_GATEWAY_TOKEN": "g" * 20}
    with pytest.raises(ConfigError, match="SMS_STATUS_TOKEN must differ from SMS_GATEWAY_TOKEN"):
        NotifierSettings.from_env({**env, "SMS_STATUS_TOKEN": "g" * 20})
    assert NotifierSettings.from_env({**env, "SMS_STATUS_TOKEN": "s" * 20}).status_token == "s" * 20


def test_the_webhook_token_is_never_the_fallback_gateway_token(tmp_path: Path) -> None:
    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path), "SMS_GATEWAY_TOKEN": "g" * 20,
           "SMS_FALLBACK_URL": "https://fallback.example/sms", "SMS_FALLBACK_TOKEN": "f" * 20}
    with pytest.raises(ConfigError, match="SMS_STATUS_TOKEN must differ from SMS_FALLBACK_TOKEN"):
        NotifierSettings.from_env({**env, "SMS_STATUS_TOKEN": "f" * 20})
    assert NotifierSettings.from_env({**env, "SMS_STATUS_TOKEN": "s" * 20}).status_token == "s" * 20


def test_the_ops_token_is_never_recoverys_api_token(tmp_path: Path) -> None:
    """The login page's backend holds RECOVERY_API_TOKEN: equal to OPS_API_TOKEN, it would open
    the ops routes of every service."""
    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path), "RECOVERY_API_TOKEN": "r" * 20}
    with pytest.raises(ConfigError, match=r"^OPS_API_TOKEN must differ from RECOVERY_API_TOKEN"):
        RecoverySettings.from_env({**env, "OPS_API_TOKEN": "r" * 20})
    assert RecoverySettings.from_env({**env, "OPS_API_TOKEN": "o" * 20}).ops_api_token == "o" * 20


NOTIFIER_TOKENS = {"SMS_GATEWAY_TOKEN": "g" * 20, "SMS_STATUS_TOKEN": "s" * 20,
                   "SMS_FALLBACK_URL": "https://fallback.example/sms", "SMS_FALLBACK_TOKEN": "f" * 20}


@pytest.mark.parametrize("name", ["SMS_STATUS_TOKEN", "SMS_GATEWAY_TOKEN", "SMS_FALLBACK_TOKEN"])
def test_the_ops_token_is_never_a_token_a_gateway_holds(tmp_path: Path, name: str) -> None:
    """Either gateway holds the webhook's token and the one we send it: equal to OPS_API_TOKEN,
    a gateway could call the ops routes."""
    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path), **NOTIFIER_TOKENS}
    with pytest.raises(ConfigError, match=f"^OPS_API_TOKEN must differ from {name}"):
        NotifierSettings.from_env({**env, "OPS_API_TOKEN": env[name]})
    assert NotifierSettings.from_env({**env, "OPS_API_TOKEN": "o" * 20}).ops_api_token == "o" * 20


def test_the_two_gateways_are_never_sent_the_same_token(tmp_path: Path) -> None:
    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path), **NOTIFIER_TOKENS}
    with pytest.raises(ConfigError, match=r"^SMS_FALLBACK_TOKEN must differ from SMS_GATEWAY_TOKEN"):
        NotifierSettings.from_env({**env, "SMS_FALLBACK_TOKEN": "g" * 20})
    # neither set (a gateway that takes no token), or only one: nothing is shared
    for unset in ({"SMS_GATEWAY_TOKEN": "", "SMS_FALLBACK_TOKEN": ""}, {"SMS_FALLBACK_TOKEN": ""}):
        assert NotifierSettings.from_env({**env, **unset}).sms_fallback_token == ""


def test_local_mode_generates_the_tokens_once_beside_the_keys(tmp_path: Path) -> None:
    env = {"SELFCARE_ENV": "local", "SELFCARE_VAR_DIR": str(tmp_path)}
    recovery = RecoverySettings.from_env(env)
    notifier = NotifierSettings.from_env(env)
    again = RecoverySettings.from_env(env)
    stored = json.loads((tmp_path / "local-keys.json").read_text())
    assert recovery.api_token == again.api_token == stored["recovery_api_token"]
    assert notifier.status_token == stored["sms_status_token"] != recovery.api_token
    assert len(recovery.api_token) >= 32 and stored["contact_keys"] and stored["hash_pepper"]
    assert (tmp_path / "local-keys.json").stat().st_mode & 0o077 == 0
    # the keys made before the tokens are kept as they were
    assert again.keyring.pepper == recovery.keyring.pepper


def test_read_timeout_and_trusted_proxies_settings(tmp_path: Path) -> None:
    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path), "RECOVERY_API_TOKEN": "r" * 20}
    s = RecoverySettings.from_env(env)
    assert s.http_read_timeout_s == 10.0 and not s.trusted_proxies
    s = RecoverySettings.from_env({**env, "HTTP_READ_TIMEOUT_S": "2.5", "TRUSTED_PROXIES": "10.0.0.0/8,::1"})
    assert s.http_read_timeout_s == 2.5 and len(s.trusted_proxies.networks) == 2
    for bad in ({"HTTP_READ_TIMEOUT_S": "soon"}, {"HTTP_READ_TIMEOUT_S": "0"},
                {"TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"}):
        with pytest.raises(ConfigError):
            RecoverySettings.from_env({**env, **bad})


@pytest.mark.parametrize(("module", "variable"), [("services.recovery", "RECOVERY_API_TOKEN"),
                                                  ("services.notifier", "SMS_STATUS_TOKEN")])
def test_a_worker_without_its_token_exits_2_with_a_clear_message(module: str, variable: str,
                                                                 tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **KEYS, "SELFCARE_VAR_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", module, "worker"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"configuration error: {variable} must be set" in done.stderr
    assert "Traceback" not in done.stderr


def test_plaintext_gateways_are_warned_about_outside_local_mode(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from services.notifier.bootstrap import warn_plaintext

    env = {**KEYS, "SELFCARE_VAR_DIR": str(tmp_path), "SMS_STATUS_TOKEN": "s" * 20}
    warn_plaintext(NotifierSettings.from_env({**env, "SMS_GATEWAY_URL": "http://gw.example/sms"}))
    assert [r.getMessage().split(": ", 1)[1].split(" (")[0] for r in caplog.records] == [
        "SMS_GATEWAY_URL", "SMTP"]
    caplog.clear()
    warn_plaintext(NotifierSettings.from_env({**env, "SMS_GATEWAY_URL": "https://gw.example/sms",
                                              "SMTP_STARTTLS": "true"}))
    warn_plaintext(NotifierSettings.from_env({"SELFCARE_ENV": "local", "SELFCARE_VAR_DIR": str(tmp_path)}))
    assert not caplog.records
