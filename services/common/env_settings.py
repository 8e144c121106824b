"""The base of every settings model: pydantic-settings read from an explicit mapping.

A settings model declares each variable once, as a field whose ``validation_alias`` is the
public variable name (DESIGN.md) and whose default is the one default. :meth:`EnvSettings.from_env`
reads the given mapping (``os.environ`` when none is given) through pydantic-settings' environment
source; building a model directly (``KafkaSettings(bootstrap_servers=...)``) reads nothing from
the environment. An empty variable counts as unset, except for the text fields marked
:data:`KEEP_EMPTY`. Every malformed value becomes one :class:`ConfigError` naming its variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from services.common.errors import ConfigError

KEEP_EMPTY = "keep-empty"
"""Field metadata: an empty variable is the value "" rather than the default."""


def _parse_int(raw: object) -> object:
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
    return raw


def _parse_float(raw: object) -> object:
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
    return raw


def _parse_bool(raw: object) -> object:
    if isinstance(raw, str):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError("must be a boolean (true/false)")
    return raw


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def at_least(minimum: int) -> AfterValidator:
    def check(value: int) -> int:
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return AfterValidator(check)


def at_most(maximum: int, unit: str = "") -> AfterValidator:
    def check(value: int) -> int:
        if value > maximum:
            raise ValueError(f"must be at most {maximum}{unit}")
        return value

    return AfterValidator(check)


def _comma_list(raw: object) -> object:
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


EnvInt = Annotated[int, BeforeValidator(_parse_int)]
PositiveInt = Annotated[int, BeforeValidator(_parse_int), AfterValidator(_positive)]
EnvFloat = Annotated[float, BeforeValidator(_parse_float)]
EnvBool = Annotated[bool, BeforeValidator(_parse_bool)]
# a comma-separated list, never JSON: "+79,+7700"
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
# text kept as given, an empty variable included
Text = Annotated[str, KEEP_EMPTY]
TextPath = Annotated[Path, KEEP_EMPTY]


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (names as written). A field
    whose type is itself an :class:`EnvSettings` (a group such as ``KafkaSettings``) is read
    from the same mapping by that group."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._mapping)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field.validation_alias is None:  # derived, or a group: not a variable of its own
            return None, field_name, False
        value, key, is_complex = super().get_field_value(field, field_name)
        if value == "" and KEEP_EMPTY not in field.metadata:
            value = None
        return value, key, is_complex

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for name, field in self.settings_cls.model_fields.items():
            group = field.annotation
            if isinstance(group, type) and issubclass(group, EnvSettings):
                data[name] = group.from_env(self._mapping)
        return data


def _message(exc: ValidationError) -> str:
    """The first error, naming the variable: ``BATCH_SIZE must be an integer``."""
    errors = [e for e in exc.errors() if e["type"] != "default_factory_not_called"] or exc.errors()
    error = errors[0]
    name = ".".join(str(part) for part in error["loc"]) or "a setting"
    cause = error.get("ctx", {}).get("error")
    text = str(cause) if isinstance(cause, ValueError) else error["msg"]
    if text.startswith("must "):
        return f"{name} {text}"
    return text if name in text else f"{name}: {text}"


class EnvSettings(BaseSettings):
    """Frozen settings whose fields name their variables (``validation_alias``)."""

    model_config = SettingsConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True,
                                      arbitrary_types_allowed=True, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller passes: the environment is read by :meth:`from_env` alone."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings read from ``env`` (default ``os.environ``); ConfigError when malformed."""
        try:
            values = _MappingSource(cls, os.environ if env is None else env)()
        except SettingsError as exc:  # a value the source itself could not read
            raise ConfigError(str(exc)) from exc
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_message(exc)) from exc

    def _derive(self, **values: Any) -> None:
        """Set fields computed from other fields (in an ``after`` validator of a frozen model)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)
