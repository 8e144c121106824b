"""Settings of the HTTP edge: the bearer tokens ``RECOVERY_API_TOKEN`` and ``SMS_STATUS_TOKEN``,
and the read time-out ``HTTP_READ_TIMEOUT_S``.

Outside local/demo mode a service refuses to start without its token. In local/demo mode a
missing token is generated once and kept beside the local keys (``./var/local-keys.json``,
mode 0600), so every process of the run, the demo and the tests read the same one.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from services.common.crypto import load_or_create_local_keys
from services.common.env_settings import EnvFloat, EnvSettings
from services.common.errors import ConfigError

RECOVERY_API_TOKEN = "RECOVERY_API_TOKEN"  # noqa: S105 - a variable name
SMS_STATUS_TOKEN = "SMS_STATUS_TOKEN"  # noqa: S105 - a variable name
LOCAL_TOKENS = (RECOVERY_API_TOKEN, SMS_STATUS_TOKEN)
MIN_LENGTH = 16


def local_keys_path(var_dir: Path) -> Path:
    return var_dir / "local-keys.json"


def load_or_create_local_tokens(path: Path) -> dict[str, str]:
    """Every local token by variable name, generated and written into ``path`` when missing."""
    if not path.exists():
        load_or_create_local_keys(path)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text())
        tokens = {name: data.get(name.lower(), "") for name in LOCAL_TOKENS}
        if all(tokens.values()):
            return tokens
        for name in LOCAL_TOKENS:
            if not tokens[name]:
                tokens[name] = data[name.lower()] = secrets.token_urlsafe(32)
        tmp = path.with_suffix(".tokens.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
        return tokens


def token_setting(value: str, name: str, *, local_mode: bool, var_dir: Path) -> str:
    """The token given as ``value``; in local/demo mode the generated one; else ConfigError."""
    if value:
        if len(value) < MIN_LENGTH:
            raise ConfigError(f"{name} must be at least {MIN_LENGTH} characters")
        return value
    if local_mode:
        return load_or_create_local_tokens(local_keys_path(var_dir))[name]
    raise ConfigError(f"{name} must be set (or SELFCARE_ENV=local for a local/demo run with "
                      "generated tokens under ./var/)")


def _read_timeout(value: float) -> float:
    if not 0 < value <= 300:
        raise ValueError("must be between 0 and 300 seconds")
    return value


class ReadTimeoutSettings(EnvSettings):
    """``HTTP_READ_TIMEOUT_S`` (default 10): the time a client has for its request head and body."""

    http_read_timeout_s: Annotated[EnvFloat, AfterValidator(_read_timeout)] = Field(default=
        10.0, validation_alias="HTTP_READ_TIMEOUT_S")
