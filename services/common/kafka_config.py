"""How every Kafka client of ours connects: bootstrap list, TLS and SASL, from ``KAFKA_*``.

One typed pydantic-settings model, read once (:meth:`KafkaSettings.from_env`), gives both forms the clients
need: keyword arguments for an aiokafka client (:func:`aiokafka_kwargs`) and faust's
``broker_credentials`` (:meth:`KafkaSettings.faust_credentials`). The services' faust apps,
the ops CLI, the account-topic rewind, the topic applier and the demo all build their clients
through these two, so a secured cluster needs nothing else.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, model_validator

from services.common.env_settings import EnvSettings
from services.common.errors import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "PLAIN")
DEFAULT_BOOTSTRAP = "localhost:9092"


def _upper(raw: object) -> object:
    return raw.strip().upper() if isinstance(raw, str) else raw


def _file(raw: object) -> object:
    if isinstance(raw, str):
        return Path(raw.strip()) if raw.strip() else None
    return raw


Upper = Annotated[str, BeforeValidator(_upper)]
OptionalFile = Annotated[Path | None, BeforeValidator(_file)]


class KafkaSettings(EnvSettings):
    """``KAFKA_BOOTSTRAP_SERVERS`` and the ``KAFKA_*`` security settings of DESIGN.md."""

    bootstrap_servers: str = Field(default=DEFAULT_BOOTSTRAP, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    security_protocol: Upper = Field(default="PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL")
    sasl_mechanism: Upper = Field(default="SCRAM-SHA-512", validation_alias="KAFKA_SASL_MECHANISM")
    sasl_username: str = Field(default="", validation_alias="KAFKA_SASL_USERNAME")
    sasl_password: str = Field(default="", validation_alias="KAFKA_SASL_PASSWORD", repr=False)
    ssl_ca_file: OptionalFile = Field(default=None, validation_alias="KAFKA_SSL_CA_FILE")
    ssl_cert_file: OptionalFile = Field(default=None, validation_alias="KAFKA_SSL_CERT_FILE")
    ssl_key_file: OptionalFile = Field(default=None, validation_alias="KAFKA_SSL_KEY_FILE")

    @model_validator(mode="after")
    def _valid(self) -> Self:
        self.validate_connection()
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def validate_connection(self) -> None:
        """Raise :class:`ConfigError` naming the variable at fault."""
        if not [h for h in self.bootstrap_servers.split(",") if h.strip()]:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is empty")
        if self.security_protocol not in PROTOCOLS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                f"not {self.security_protocol!r}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise ConfigError(
                    f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                    f"not {self.sasl_mechanism!r}"
                )
            if not self.sasl_username:
                raise ConfigError(
                    f"KAFKA_SASL_USERNAME must be set with KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
                )
            if not self.sasl_password:
                raise ConfigError(
                    f"KAFKA_SASL_PASSWORD must be set with KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
                )
        elif self.sasl_username or self.sasl_password:
            raise ConfigError(
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
                f"{self.security_protocol} does not use SASL (SASL_SSL or SASL_PLAINTEXT does)"
            )
        files = {"KAFKA_SSL_CA_FILE": self.ssl_ca_file, "KAFKA_SSL_CERT_FILE": self.ssl_cert_file,
                 "KAFKA_SSL_KEY_FILE": self.ssl_key_file}
        named = [name for name, value in files.items() if value is not None]
        if named and not self.uses_tls:
            raise ConfigError(
                f"{', '.join(named)} set but KAFKA_SECURITY_PROTOCOL={self.security_protocol} "
                "does not use TLS (SSL or SASL_SSL does)"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ConfigError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE must be set together")
        for name, value in files.items():
            if value is not None and not value.is_file():
                raise ConfigError(f"{name}={value}: no such file")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (server certificate and host name checked), None without TLS."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=str(self.ssl_ca_file) if self.ssl_ca_file else None,
            )
            if self.ssl_cert_file is not None and self.ssl_key_file is not None:
                context.load_cert_chain(str(self.ssl_cert_file), str(self.ssl_key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"the KAFKA_SSL_* files cannot be loaded: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def security_kwargs(self) -> dict[str, Any]:
        """aiokafka's security arguments (no bootstrap list)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return kwargs

    def faust_credentials(self) -> Any:
        """faust's ``broker_credentials``: None for PLAINTEXT, else SSL or SASL credentials."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),  # None for SASL_PLAINTEXT
            )
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    @property
    def faust_broker_url(self) -> str:
        """faust's form of the bootstrap list: ``kafka://h1:p1;kafka://h2:p2``."""
        hosts = [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]
        return ";".join(f"kafka://{h}" for h in hosts)


def kafka_settings(target: KafkaSettings | str) -> KafkaSettings:
    """A bare ``host:port[,host:port]`` string stands for a PLAINTEXT cluster."""
    return target if isinstance(target, KafkaSettings) else KafkaSettings(bootstrap_servers=target)


def aiokafka_kwargs(target: KafkaSettings | str) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments for any aiokafka client
    (``AIOKafkaProducer``, ``AIOKafkaConsumer``, ``AIOKafkaAdminClient``, ``AIOKafkaClient``)."""
    settings = kafka_settings(target)
    return {"bootstrap_servers": settings.bootstrap_servers, **settings.security_kwargs()}
