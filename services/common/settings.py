"""Typed settings from the environment, with the names of DESIGN.md.

Each service composes ``CommonSettings`` with its own fields. Reading happens when
``from_env`` is called, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from services.common.crypto import Keyring, load_or_create_local_keys


class ConfigError(Exception):
    """A setting is missing or malformed; the service refuses to start."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false)")


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    """What every service needs: Kafka, its database, keys, its web port."""

    service: ClassVar[str] = "common"
    default_web_port: ClassVar[int] = 6100
    # how long a batch waits to fill: short for latency-bound services, longer for bulk ones
    default_batch_within_ms: ClassVar[int] = 5

    kafka_bootstrap_servers: str = "localhost:9092"
    database_url: str = ""
    web_port: int = 6100
    web_host: str = "127.0.0.1"
    var_dir: Path = Path("var")
    topic_prefix: str = ""
    keyring: Keyring = field(repr=False)
    local_mode: bool = False
    max_record_bytes: int = 65536
    batch_size: int = 500
    batch_within_s: float = 0.02
    kafka_session_timeout_s: int = 30
    kafka_group_instance_id: str = ""
    support_phone: str = "8 800 250-08-90"
    code_ttl_s: int = 3600
    log_level: str = "INFO"

    @classmethod
    def common_from_env(cls, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The common fields read from ``env``; subclasses add theirs and call ``cls(**...)``."""
        env = os.environ if env is None else env
        var_dir = Path(env.get("SELFCARE_VAR_DIR", "var"))
        local_mode = env.get("SELFCARE_ENV", "production").lower() in {"local", "demo"}
        keyring = _keyring_from_env(env, var_dir=var_dir, local_mode=local_mode)
        db_var = f"{cls.service.upper()}_DATABASE_URL"
        database_url = env.get(db_var) or f"sqlite:///{var_dir / cls.service}.db"
        return {
            "kafka_bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            "database_url": database_url,
            "web_port": _int(env, f"{cls.service.upper()}_WEB_PORT", cls.default_web_port),
            "web_host": env.get("WEB_BIND_HOST", "127.0.0.1"),
            "var_dir": var_dir,
            "topic_prefix": env.get("TOPIC_PREFIX", ""),
            "keyring": keyring,
            "local_mode": local_mode,
            "max_record_bytes": _int(env, "MAX_RECORD_BYTES", 65536),
            "batch_size": _int(env, "BATCH_SIZE", 500),
            "batch_within_s": _int(env, "BATCH_WITHIN_MS", cls.default_batch_within_ms) / 1000,
            "kafka_session_timeout_s": _int(env, "KAFKA_SESSION_TIMEOUT_S", 30),
            "kafka_group_instance_id": env.get("KAFKA_GROUP_INSTANCE_ID", ""),
            "support_phone": env.get("SUPPORT_PHONE", "8 800 250-08-90"),
            "code_ttl_s": _int(env, "CODE_TTL_S", 3600),
            "log_level": env.get("LOG_LEVEL", "INFO").upper(),
        }

    @property
    def kafka_broker_url(self) -> str:
        """faust's form of the bootstrap list: ``kafka://h1:p1;kafka://h2:p2``."""
        hosts = [h.strip() for h in self.kafka_bootstrap_servers.split(",") if h.strip()]
        return ";".join(f"kafka://{h}" for h in hosts)

    def topic(self, name: str) -> str:
        """The physical topic name of a public topic name (after ``TOPIC_PREFIX``)."""
        return self.topic_prefix + name


def _keyring_from_env(env: Mapping[str, str], *, var_dir: Path, local_mode: bool) -> Keyring:
    secret_keys = env.get("SECRET_KEYS", "")
    pepper = env.get("HASH_PEPPER", "")
    if secret_keys and pepper:
        try:
            return Keyring.from_config(secret_keys=secret_keys, hash_pepper=pepper)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    if local_mode:
        return load_or_create_local_keys(var_dir / "local-keys.json")
    raise ConfigError(
        "SECRET_KEYS and HASH_PEPPER must be set "
        "(or SELFCARE_ENV=local for a local/demo run with generated keys under ./var/)"
    )


def bool_setting(env: Mapping[str, str], name: str, default: bool) -> bool:
    return _bool(env, name, default)


def int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    return _int(env, name, default)
