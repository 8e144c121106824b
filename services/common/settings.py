"""Typed settings from the environment, with the names of DESIGN.md.

Each group below is a pydantic-settings model of one adapter's variables, each variable and
its default written once (see :mod:`services.common.env_settings`). ``CommonSettings`` composes
the groups every service needs; each service composes it with its own groups and sets its
per-service names and defaults (``<SERVICE>_WEB_PORT``, ``<SERVICE>_DATABASE_URL``, the batch
linger) with :func:`web_port`, :func:`database_url` and :func:`batch_linger`. Reading happens when
``from_env`` is called, never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BeforeValidator, Field, InstanceOf, model_validator

from schemas.topics import DAY_MS, longest_inbound_retention_days
from services.common.crypto import Keyring, load_local_keys
from services.common.env_settings import (
    EnvFloat,
    EnvInt,
    EnvSettings,
    PositiveInt,
    Text,
    TextPath,
    at_least,
    at_most,
)
from services.common.errors import ConfigError as ConfigError
from services.common.kafka_config import KafkaSettings

WEEK_S = 7 * DAY_MS // 1000


def web_port(service: str, default: int) -> Any:
    """``<SERVICE>_WEB_PORT``: the port of the service's health, metrics and HTTP routes."""
    return Field(default=default, validation_alias=f"{service.upper()}_WEB_PORT")


def database_url(service: str) -> Any:
    """``<SERVICE>_DATABASE_URL``; unset: ``sqlite:///<SELFCARE_VAR_DIR>/<service>.db``."""
    return Field(default="", validation_alias=f"{service.upper()}_DATABASE_URL")


def batch_linger(default_ms: int) -> Any:
    """``BATCH_WITHIN_MS``: how long a batch waits to fill (short for latency-bound services,
    longer for bulk ones)."""
    return Field(default=default_ms, validation_alias="BATCH_WITHIN_MS")


def _local(raw: object) -> object:
    return raw.lower() in {"local", "demo"} if isinstance(raw, str) else raw


def _upper(raw: object) -> object:
    return raw.upper() if isinstance(raw, str) else raw


def _token_length(value: str) -> str:
    if value and len(value) < 16:
        raise ValueError("must be at least 16 characters")
    return value


def _short_text(value: str) -> str:
    if not 1 <= len(value) <= 64:
        raise ValueError("must be 1 to 64 characters")
    return value


LocalMode = Annotated[bool, BeforeValidator(_local)]
Secret = Annotated[str, AfterValidator(_token_length)]


class RuntimeSettings(EnvSettings):
    """Where and how the process runs."""

    local_mode: LocalMode = Field(default=False, validation_alias="SELFCARE_ENV")  # local or demo
    var_dir: TextPath = Field(default=Path("var"), validation_alias="SELFCARE_VAR_DIR")
    topic_prefix: str = Field(default="", validation_alias="TOPIC_PREFIX")
    log_level: Annotated[Text, BeforeValidator(_upper)] = Field(default="INFO", validation_alias="LOG_LEVEL")


class KafkaClientSettings(EnvSettings):
    """The ``KAFKA_*`` connection and the consumer group's membership."""

    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())
    kafka_session_timeout_s: EnvInt = Field(default=30, validation_alias="KAFKA_SESSION_TIMEOUT_S")
    kafka_group_instance_id: str = Field(default="", validation_alias="KAFKA_GROUP_INSTANCE_ID")

    @property
    def kafka_broker_url(self) -> str:
        """faust's form of the bootstrap list: ``kafka://h1:p1;kafka://h2:p2``."""
        return self.kafka.faust_broker_url


class DatabaseSettings(EnvSettings):
    database_url: str = database_url("common")
    # bookkeeping rows older than this are pruned; not below the inbound topics' retention, so an
    # event redelivered from its topic still meets its processed id (a code request read again
    # would otherwise send a second code)
    retention_days: Annotated[EnvInt, at_least(longest_inbound_retention_days())] = Field(
        default=30, validation_alias="RETENTION_DAYS")


class WebSettings(EnvSettings):
    web_port: EnvInt = web_port("common", 6100)
    web_host: Text = Field(default="127.0.0.1", validation_alias="WEB_BIND_HOST")
    # unset outside local mode: the ops routes are not served (404)
    ops_api_token: Secret = Field(default="", validation_alias="OPS_API_TOKEN", repr=False)


class BatchSettings(EnvSettings):
    max_record_bytes: EnvInt = Field(default=65536, validation_alias="MAX_RECORD_BYTES")
    batch_size: EnvInt = Field(default=500, validation_alias="BATCH_SIZE")
    batch_within_ms: EnvInt = batch_linger(5)
    # how often a worker looks for outbox rows a killed worker committed and did not publish
    outbox_sweep_s: EnvFloat = Field(default=5.0, gt=0, validation_alias="OUTBOX_SWEEP_S")

    @property
    def batch_within_s(self) -> float:
        return self.batch_within_ms / 1000


class KeySettings(EnvSettings):
    """The keys by purpose (DESIGN.md "Keys by purpose"); the keyrings are made from them."""

    contact_keys_config: str = Field(default="", validation_alias="CONTACT_KEYS", repr=False)
    delivery_keys_config: str = Field(default="", validation_alias="DELIVERY_KEYS", repr=False)
    secret_keys: str = Field(default="", validation_alias="SECRET_KEYS", repr=False)
    hash_pepper: str = Field(default="", validation_alias="HASH_PEPPER", repr=False)
    contact_keyring: InstanceOf[Keyring] | None = Field(default=None, repr=False)
    delivery_keyring: InstanceOf[Keyring] | None = Field(default=None, repr=False)


class CommonSettings(RuntimeSettings, KafkaClientSettings, DatabaseSettings, WebSettings, BatchSettings,
                     KeySettings):
    """What every service needs: Kafka, its database, keys, its web port, batching."""

    service: ClassVar[str] = "common"
    # the keys this service is given (DESIGN.md "Keys by purpose"): "contact", "delivery"
    key_purposes: ClassVar[frozenset[str]] = frozenset({"contact", "delivery"})
    # whether the service makes keyed hashes (HASH_PEPPER); the notifier makes none
    needs_pepper: ClassVar[bool] = True

    # it goes into CodeRejected.support_phone and the notices, 1-64 characters there
    support_phone: Annotated[Text, AfterValidator(_short_text)] = Field(
        default="8 800 250-08-90", validation_alias="SUPPORT_PHONE")
    # 0 or less: every code issued already expired; far beyond a week, expiry times that no
    # date can hold (every write of a code would fail)
    code_ttl_s: Annotated[PositiveInt, at_most(WEEK_S, " seconds (a week)")] = Field(
        default=3600, validation_alias="CODE_TTL_S")
    # an inbound occurred_at further in the future is refused
    max_clock_skew_s: PositiveInt = Field(default=300, validation_alias="MAX_CLOCK_SKEW_S")

    @model_validator(mode="after")
    def _derive_common(self) -> Self:
        if not self.database_url:
            self._derive(database_url=f"sqlite:///{self.var_dir / self.service}.db")
        if self.contact_keyring is None and self.delivery_keyring is None:
            keyrings = _keyrings(self, purposes=self.key_purposes, needs_pepper=self.needs_pepper)
            self._derive(contact_keyring=keyrings.get("contact"), delivery_keyring=keyrings.get("delivery"))
        if not self.ops_api_token and self.local_mode:
            self._derive(ops_api_token=load_local_keys(self.var_dir / "local-keys.json").ops_api_token)
        return self

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


def _keyrings(keys: CommonSettings, *, purposes: frozenset[str], needs_pepper: bool) -> dict[str, Keyring]:
    """A keyring per purpose the service is given: ``CONTACT_KEYS`` / ``DELIVERY_KEYS``, each
    falling back to ``SECRET_KEYS``; in local/demo mode, the generated ``local-keys.json``.
    A service that makes no keyed hash gets no pepper, even when ``HASH_PEPPER`` is set."""
    pepper: str | None = keys.hash_pepper if needs_pepper else None
    given = {"contact": keys.contact_keys_config, "delivery": keys.delivery_keys_config}
    chosen = {p: (_PURPOSE_VARS[p], given[p]) if given[p] else ("SECRET_KEYS", keys.secret_keys)
              for p in purposes}
    if (pepper or not needs_pepper) and all(text for _, text in chosen.values()):
        try:
            made = {p: Keyring.from_config(secret_keys=text, hash_pepper=pepper, name=name)
                    for p, (name, text) in chosen.items()}
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        _refuse_shared_keys(made, fallback=[p for p, (name, _) in chosen.items() if name == "SECRET_KEYS"])
        return made
    if keys.local_mode:
        local = load_local_keys(keys.var_dir / "local-keys.json")
        made = {p: local.contact if p == "contact" else local.delivery for p in purposes}
        return made if needs_pepper else {p: k.without_pepper() for p, k in made.items()}
    needed = " and ".join([f"{_PURPOSE_VARS[p]} (or SECRET_KEYS)" for p in sorted(purposes)]
                          + (["HASH_PEPPER"] if needs_pepper else []))
    raise ConfigError(
        f"{needed} must be set "
        "(or SELFCARE_ENV=local for a local/demo run with generated keys under ./var/)"
    )


def _refuse_shared_keys(keyrings: dict[str, Keyring], *, fallback: list[str]) -> None:
    """A service given both purposes (recovery) holds no key in both: registration could then
    open a password, the notifier a contact. Keys are compared as key material, not as text.
    ``SECRET_KEYS`` serving as both lists (neither is set) is the one-key set-up DESIGN.md allows."""
    if len(keyrings) < 2 or len(fallback) == len(keyrings):
        return
    if set(keyrings["contact"].keys) & set(keyrings["delivery"].keys):
        instead = "".join(f" (SECRET_KEYS serves as {_PURPOSE_VARS[p]} here)" for p in fallback)
        raise ConfigError(f"CONTACT_KEYS and DELIVERY_KEYS must not share a key{instead}: "
                          "each purpose has keys of its own")
