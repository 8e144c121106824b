"""Recovery's typed settings: the common ones plus limits, password and argon2 parameters."""

from __future__ import annotations

import os
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, BeforeValidator, Field, InstanceOf, model_validator
from pydantic_settings import NoDecode

from services.common.env_settings import KEEP_EMPTY, CommaList, EnvInt, EnvSettings, at_least, at_most
from services.common.http_edge import TrustedProxies
from services.common.settings import CommonSettings, ConfigError, database_url, web_port
from services.common.tokens import RECOVERY_API_TOKEN, ReadTimeoutSettings, token_setting
from services.recovery.domain.model import Policy, Window

# The limits' defaults are the domain's (``Policy()``). Logins per client address: one login
# costs two argon2id verifications; see ``Policy.login_ip``.
DEFAULT = Policy()


def _e164_prefixes(items: tuple[str, ...]) -> tuple[str, ...]:
    """``SMS_ALLOWED_PREFIXES``: comma-separated E.164 prefixes such as ``+79,+7700``."""
    # ASCII digits only: str.isdigit takes "+７９" (full-width), which no E.164 number matches
    if not items or any(not (p.startswith("+") and p[1:].isascii() and p[1:].isdigit()) for p in items):
        raise ValueError("must list E.164 prefixes, e.g. +79,+7700")
    return items


def _trusted(raw: object) -> object:
    return TrustedProxies.parse(raw) if isinstance(raw, str) else raw


AtLeastOne = Annotated[EnvInt, at_least(1)]
Prefixes = Annotated[CommaList, KEEP_EMPTY, AfterValidator(_e164_prefixes)]


class LimitSettings(EnvSettings):
    """The ``LIMIT_*``, ``LOGIN_*`` and SMS-pumping limits, as the domain's :class:`Policy`. Every
    maximum and every window is at least 1: 0 or less would turn its limit off."""

    limit_login_cooldown_s: AtLeastOne = Field(default=int(DEFAULT.login_cooldown.window_s),
                                               validation_alias="LIMIT_LOGIN_COOLDOWN_S")
    limit_destination_max: AtLeastOne = Field(default=DEFAULT.per_destination.max_events,
                                          validation_alias="LIMIT_DESTINATION_MAX")
    limit_destination_window_s: AtLeastOne = Field(default=int(DEFAULT.per_destination.window_s),
                                                   validation_alias="LIMIT_DESTINATION_WINDOW_S")
    limit_ip_max: AtLeastOne = Field(default=DEFAULT.per_ip.max_events,
                                     validation_alias="LIMIT_IP_MAX")
    limit_ip_window_s: AtLeastOne = Field(default=int(DEFAULT.per_ip.window_s),
                                          validation_alias="LIMIT_IP_WINDOW_S")
    limit_account_daily_max: AtLeastOne = Field(default=DEFAULT.account_daily.max_events,
                                                validation_alias="LIMIT_ACCOUNT_DAILY_MAX")
    sms_hourly_budget: AtLeastOne = Field(default=DEFAULT.sms_hourly.max_events,
                                          validation_alias="SMS_HOURLY_BUDGET")
    sms_allowed_prefixes: Prefixes = Field(default=DEFAULT.sms_prefixes,
                                           validation_alias="SMS_ALLOWED_PREFIXES")
    login_ip_max: AtLeastOne = Field(default=DEFAULT.login_ip.max_events,
                                     validation_alias="LOGIN_IP_MAX")
    login_ip_window_s: AtLeastOne = Field(default=int(DEFAULT.login_ip.window_s),
                                          validation_alias="LOGIN_IP_WINDOW_S")
    login_lockout_failures: AtLeastOne = Field(default=DEFAULT.lockout_failures,
                                               validation_alias="LOGIN_LOCKOUT_FAILURES")
    login_global_lockout_failures: AtLeastOne = Field(default=DEFAULT.global_lockout_failures,
                                                      validation_alias="LOGIN_GLOBAL_LOCKOUT_FAILURES")
    login_lockout_s: AtLeastOne = Field(default=int(DEFAULT.lockout_s),
                                        validation_alias="LOGIN_LOCKOUT_S")

    @property
    def policy(self) -> Policy:
        return Policy(
            login_cooldown=Window(max_events=1, window_s=self.limit_login_cooldown_s),
            per_destination=Window(max_events=self.limit_destination_max,
                                   window_s=self.limit_destination_window_s),
            per_ip=Window(max_events=self.limit_ip_max, window_s=self.limit_ip_window_s),
            account_daily=Window(max_events=self.limit_account_daily_max,
                                 window_s=DEFAULT.account_daily.window_s),
            sms_hourly=Window(max_events=self.sms_hourly_budget, window_s=DEFAULT.sms_hourly.window_s),
            sms_prefixes=self.sms_allowed_prefixes,
            login_ip=Window(max_events=self.login_ip_max, window_s=self.login_ip_window_s),
            lockout_failures=self.login_lockout_failures,
            global_lockout_failures=self.login_global_lockout_failures,
            lockout_s=self.login_lockout_s,
        )


class Argon2Params(EnvSettings):
    """argon2id cost (OWASP: m=19 MiB, t=2, p=1): ``ARGON2_TIME_COST``, ``ARGON2_MEMORY_KIB``,
    ``ARGON2_PARALLELISM``; below OWASP's minimum is refused."""

    time_cost: EnvInt = Field(default=2, validation_alias="ARGON2_TIME_COST")
    memory_kib: EnvInt = Field(default=19456, validation_alias="ARGON2_MEMORY_KIB")
    parallelism: EnvInt = Field(default=1, validation_alias="ARGON2_PARALLELISM")

    @model_validator(mode="after")
    def _owasp_minimum(self) -> Self:
        if self.time_cost < 2 or self.memory_kib < 19456 or self.parallelism < 1:
            raise ConfigError("argon2id parameters below OWASP's minimum (t=2, m=19456 KiB, p=1)")
        return self


class PasswordSettings(EnvSettings):
    """The passwords made (``PASSWORD_LENGTH``) and how they are hashed."""

    password_length: Annotated[EnvInt, at_least(8)] = Field(default=12, validation_alias="PASSWORD_LENGTH")
    argon2: Argon2Params = Field(default_factory=lambda: Argon2Params())
    hash_workers: AtLeastOne = Field(default_factory=lambda: os.cpu_count() or 1,
                                     validation_alias="RECOVERY_HASH_WORKERS")
    # how much lower the hashing threads' CPU priority is (Linux nice, added to the process's):
    # the event loop and the database thread, which every request also needs, go first
    hash_nice: Annotated[EnvInt, at_least(0), at_most(19)] = Field(
        default=10, validation_alias="RECOVERY_HASH_NICE")


class RecoveryHttpSettings(ReadTimeoutSettings):
    """The public API: its bearer token, the proxies trusted for ``X-Forwarded-For``."""

    api_token: str = Field(default="", validation_alias=RECOVERY_API_TOKEN, repr=False)
    trusted_proxies: Annotated[InstanceOf[TrustedProxies], NoDecode, BeforeValidator(_trusted)] = Field(
        default_factory=lambda: TrustedProxies(), validation_alias="TRUSTED_PROXIES")
    max_http_body: int = 4096


class RecoverySettings(CommonSettings, LimitSettings, PasswordSettings, RecoveryHttpSettings):
    service: ClassVar[str] = "recovery"

    web_port: EnvInt = web_port("recovery", 6102)
    database_url: str = database_url("recovery")

    @model_validator(mode="after")
    def _derive_token(self) -> Self:
        self._derive(api_token=token_setting(self.api_token, RECOVERY_API_TOKEN,
                                             local_mode=self.local_mode, var_dir=self.var_dir))
        if self.ops_api_token and self.ops_api_token == self.api_token:
            # the login page's backend holds the API token: it would open every service's ops routes
            raise ConfigError("OPS_API_TOKEN must differ from RECOVERY_API_TOKEN: the ops routes' "
                              "token is never one the portal holds")
        return self
