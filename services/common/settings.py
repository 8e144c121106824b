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

from services.common.crypto import Keyring, load_local_keys
from services.common.errors import ConfigError as ConfigError
from services.common.kafka_config import KafkaSettings


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be a positive integer")
    return value


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
    # the keys this service is given (DESIGN.md "Keys by purpose"): "contact", "delivery"
    key_purposes: ClassVar[frozenset[str]] = frozenset({"contact", "delivery"})
    # whether the service makes keyed hashes (HASH_PEPPER); the notifier makes none
    needs_pepper: ClassVar[bool] = True
    default_web_port: ClassVar[int] = 6100
    # how long a batch waits to fill: short for latency-bound services, longer for bulk ones
    default_batch_within_ms: ClassVar[int] = 5

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security: KafkaSettings | None = None  # None: PLAINTEXT to kafka_bootstrap_servers
    database_url: str = ""
    web_port: int = 6100
    web_host: str = "127.0.0.1"
    var_dir: Path = Path("var")
    topic_prefix: str = ""
    contact_keyring: Keyring | None = field(default=None, repr=False)
    delivery_keyring: Keyring | None = field(default=None, repr=False)
    ops_api_token: str = field(default="", repr=False)
    local_mode: bool = False
    max_record_bytes: int = 65536
    batch_size: int = 500
    batch_within_s: float = 0.02
    kafka_session_timeout_s: int = 30
    kafka_group_instance_id: str = ""
    support_phone: str = "8 800 250-08-90"
    code_ttl_s: int = 3600
    log_level: str = "INFO"
    retention_days: int = 30  # bookkeeping rows older than this are pruned
    max_clock_skew_s: int = 300  # an inbound occurred_at further in the future is refused

    @classmethod
    def common_from_env(cls, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The common fields read from ``env``; subclasses add theirs and call ``cls(**...)``."""
        env = os.environ if env is None else env
        var_dir = Path(env.get("SELFCARE_VAR_DIR", "var"))
        local_mode = env.get("SELFCARE_ENV", "production").lower() in {"local", "demo"}
        keyrings = _keyrings_from_env(env, purposes=cls.key_purposes, var_dir=var_dir,
                                      local_mode=local_mode, needs_pepper=cls.needs_pepper)
        db_var = f"{cls.service.upper()}_DATABASE_URL"
        database_url = env.get(db_var) or f"sqlite:///{var_dir / cls.service}.db"
        return {
            "kafka_bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            "kafka_security": KafkaSettings.from_env(env),
            "database_url": database_url,
            "web_port": _int(env, f"{cls.service.upper()}_WEB_PORT", cls.default_web_port),
            "web_host": env.get("WEB_BIND_HOST", "127.0.0.1"),
            "var_dir": var_dir,
            "topic_prefix": env.get("TOPIC_PREFIX", ""),
            "contact_keyring": keyrings.get("contact"),
            "delivery_keyring": keyrings.get("delivery"),
            "ops_api_token": _ops_token(env, var_dir=var_dir, local_mode=local_mode),
            "local_mode": local_mode,
            "max_record_bytes": _int(env, "MAX_RECORD_BYTES", 65536),
            "batch_size": _int(env, "BATCH_SIZE", 500),
            "batch_within_s": _int(env, "BATCH_WITHIN_MS", cls.default_batch_within_ms) / 1000,
            "kafka_session_timeout_s": _int(env, "KAFKA_SESSION_TIMEOUT_S", 30),
            "kafka_group_instance_id": env.get("KAFKA_GROUP_INSTANCE_ID", ""),
            "support_phone": env.get("SUPPORT_PHONE", "8 800 250-08-90"),
            "code_ttl_s": _int(env, "CODE_TTL_S", 3600),
            "log_level": env.get("LOG_LEVEL", "INFO").upper(),
            "retention_days": _positive(env, "RETENTION_DAYS", 30),
            "max_clock_skew_s": _positive(env, "MAX_CLOCK_SKEW_S", 300),
        }

    @property
    def kafka(self) -> KafkaSettings:
        """How this service's Kafka clients connect (``KAFKA_*``)."""
        if self.kafka_security is not None:
            return self.kafka_security
        return KafkaSettings(bootstrap_servers=self.kafka_bootstrap_servers)

    @property
    def kafka_broker_url(self) -> str:
        """faust's form of the bootstrap list: ``kafka://h1:p1;kafka://h2:p2``."""
        return self.kafka.faust_broker_url

    @property
    def contact_keys(self) -> Keyring:
        """``CONTACT_KEYS``: seal and open the contacts of ``AccountChanged``."""
        if self.contact_keyring is None:
            raise ConfigError(f"{self.service} is not given the contact keys")
        return self.contact_keyring

    @property
    def delivery_keys(self) -> Keyring:
        """``DELIVERY_KEYS``: seal and open passwords and destinations sent to the notifier."""
        if self.delivery_keyring is None:
            raise ConfigError(f"{self.service} is not given the delivery keys")
        return self.delivery_keyring

    @property
    def keyring(self) -> Keyring:
        """The service's own keyring (keyed hashes use its pepper): the contact keys where the
        service has them (registration, recovery), else the delivery keys (the notifier)."""
        return self.contact_keyring or self.delivery_keys

    def topic(self, name: str) -> str:
        """The physical topic name of a public topic name (after ``TOPIC_PREFIX``)."""
        return self.topic_prefix + name


_PURPOSE_VARS = {"contact": "CONTACT_KEYS", "delivery": "DELIVERY_KEYS"}


def _keyrings_from_env(env: Mapping[str, str], *, purposes: frozenset[str], var_dir: Path,
                       local_mode: bool, needs_pepper: bool) -> dict[str, Keyring]:
    """A keyring per purpose the service is given: ``CONTACT_KEYS`` / ``DELIVERY_KEYS``, each
    falling back to ``SECRET_KEYS``; in local/demo mode, the generated ``local-keys.json``.
    A service that makes no keyed hash gets no pepper, even when ``HASH_PEPPER`` is set."""
    pepper: str | None = env.get("HASH_PEPPER", "") if needs_pepper else None
    chosen = {p: (_PURPOSE_VARS[p], env.get(_PURPOSE_VARS[p], "")) for p in purposes}
    chosen = {p: (name, keys) if keys else ("SECRET_KEYS", env.get("SECRET_KEYS", ""))
              for p, (name, keys) in chosen.items()}
    if (pepper or not needs_pepper) and all(keys for _, keys in chosen.values()):
        try:
            return {p: Keyring.from_config(secret_keys=keys, hash_pepper=pepper, name=name)
                    for p, (name, keys) in chosen.items()}
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    if local_mode:
        local = load_local_keys(var_dir / "local-keys.json")
        given = {p: local.contact if p == "contact" else local.delivery for p in purposes}
        return given if needs_pepper else {p: k.without_pepper() for p, k in given.items()}
    needed = " and ".join([f"{_PURPOSE_VARS[p]} (or SECRET_KEYS)" for p in sorted(purposes)]
                          + (["HASH_PEPPER"] if needs_pepper else []))
    raise ConfigError(
        f"{needed} must be set "
        "(or SELFCARE_ENV=local for a local/demo run with generated keys under ./var/)"
    )


def _ops_token(env: Mapping[str, str], *, var_dir: Path, local_mode: bool) -> str:
    """``OPS_API_TOKEN``; in local/demo mode the generated one when unset. Outside local mode
    an unset token leaves the ops routes unserved (404)."""
    token = env.get("OPS_API_TOKEN", "")
    if token and len(token) < 16:
        raise ConfigError("OPS_API_TOKEN must be at least 16 characters")
    if not token and local_mode:
        token = load_local_keys(var_dir / "local-keys.json").ops_api_token
    return token


def bool_setting(env: Mapping[str, str], name: str, default: bool) -> bool:
    return _bool(env, name, default)


def int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    return _int(env, name, default)
