"""Recovery's typed settings: the common ones plus limits, password and argon2 parameters."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from services.common.settings import CommonSettings, ConfigError, int_setting
from services.recovery.domain.limits import Policy, Window

# Logins per client address: one login costs two argon2id verifications. ``python -m
# benchmarks.login`` measured 5.2-6.3 logins/s of argon2id capacity on the 2-core development
# machine (shared, under load). 30 a minute (0.5/s) keeps one address under a tenth of that,
# and is far above what one person types.
LOGIN_IP_MAX = 30
LOGIN_IP_WINDOW_S = 60


def _prefixes(raw: str) -> tuple[str, ...]:
    """``SMS_ALLOWED_PREFIXES``: comma-separated E.164 prefixes such as ``+79,+7700``."""
    items = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not items or any(not (p.startswith("+") and p[1:].isdigit()) for p in items):
        raise ConfigError("SMS_ALLOWED_PREFIXES must list E.164 prefixes, e.g. +79,+7700")
    return items


@dataclass(frozen=True, kw_only=True)
class Argon2Params:
    """argon2id cost (OWASP: m=19 MiB, t=2, p=1)."""

    time_cost: int = 2
    memory_kib: int = 19456
    parallelism: int = 1


@dataclass(frozen=True, kw_only=True)
class RecoverySettings(CommonSettings):
    service: ClassVar[str] = "recovery"
    default_web_port: ClassVar[int] = 6102

    policy: Policy = field(default_factory=Policy)
    password_length: int = 12
    argon2: Argon2Params = field(default_factory=Argon2Params)
    hash_workers: int = 2
    max_http_body: int = 4096

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RecoverySettings:
        env = os.environ if env is None else env
        policy = Policy(
            login_cooldown=Window(max_events=1,
                                  window_s=int_setting(env, "LIMIT_LOGIN_COOLDOWN_S", 60)),
            per_destination=Window(
                max_events=int_setting(env, "LIMIT_DESTINATION_MAX", 5),
                window_s=int_setting(env, "LIMIT_DESTINATION_WINDOW_S", 600),
            ),
            per_ip=Window(
                max_events=int_setting(env, "LIMIT_IP_MAX", 30),
                window_s=int_setting(env, "LIMIT_IP_WINDOW_S", 300),
            ),
            account_daily=Window(max_events=int_setting(env, "LIMIT_ACCOUNT_DAILY_MAX", 10),
                                 window_s=86400),
            sms_hourly=Window(max_events=int_setting(env, "SMS_HOURLY_BUDGET", 10000),
                              window_s=3600),
            sms_prefixes=_prefixes(env.get("SMS_ALLOWED_PREFIXES", "+79")),
            login_ip=Window(max_events=int_setting(env, "LOGIN_IP_MAX", LOGIN_IP_MAX),
                            window_s=int_setting(env, "LOGIN_IP_WINDOW_S", LOGIN_IP_WINDOW_S)),
            lockout_failures=int_setting(env, "LOGIN_LOCKOUT_FAILURES", 5),
            global_lockout_failures=int_setting(env, "LOGIN_GLOBAL_LOCKOUT_FAILURES", 100),
            lockout_s=int_setting(env, "LOGIN_LOCKOUT_S", 900),
        )
        for name, value in (("LOGIN_LOCKOUT_FAILURES", policy.lockout_failures),
                            ("LOGIN_GLOBAL_LOCKOUT_FAILURES", policy.global_lockout_failures),
                            ("LIMIT_ACCOUNT_DAILY_MAX", policy.account_daily.max_events),
                            ("SMS_HOURLY_BUDGET", policy.sms_hourly.max_events)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1")
        length = int_setting(env, "PASSWORD_LENGTH", 12)
        if length < 8:
            raise ConfigError("PASSWORD_LENGTH must be at least 8")
        workers = int_setting(env, "RECOVERY_HASH_WORKERS", os.cpu_count() or 1)
        if workers < 1:
            raise ConfigError("RECOVERY_HASH_WORKERS must be at least 1")
        argon2 = Argon2Params(
            time_cost=int_setting(env, "ARGON2_TIME_COST", 2),
            memory_kib=int_setting(env, "ARGON2_MEMORY_KIB", 19456),
            parallelism=int_setting(env, "ARGON2_PARALLELISM", 1),
        )
        if argon2.time_cost < 2 or argon2.memory_kib < 19456 or argon2.parallelism < 1:
            raise ConfigError("argon2id parameters below OWASP's minimum (t=2, m=19456 KiB, p=1)")
        return cls(
            **cls.common_from_env(env),
            policy=policy,
            password_length=length,
            argon2=argon2,
            hash_workers=workers,
        )
