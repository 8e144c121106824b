"""The notifier's typed settings: the common ones plus the gateways and the dispatcher."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from services.common.settings import CommonSettings, ConfigError, bool_setting, int_setting


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc


@dataclass(frozen=True, kw_only=True)
class NotifierSettings(CommonSettings):
    service: ClassVar[str] = "notifier"
    key_purposes: ClassVar[frozenset[str]] = frozenset({"delivery"})
    needs_pepper: ClassVar[bool] = False
    default_web_port: ClassVar[int] = 6103

    sms_gateway_url: str = "http://127.0.0.1:6199/sms"
    sms_gateway_token: str = field(default="", repr=False)
    sms_gateway_timeout_s: float = 5.0
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = False
    smtp_timeout_s: float = 10.0
    mail_from: str = "selfcare@localhost"
    max_in_flight: int = 200
    claim_limit: int = 500
    lease_s: float = 60.0
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    max_attempts: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifierSettings:
        env = os.environ if env is None else env
        settings = cls(
            **cls.common_from_env(env),
            sms_gateway_url=env.get("SMS_GATEWAY_URL", "http://127.0.0.1:6199/sms"),
            sms_gateway_token=env.get("SMS_GATEWAY_TOKEN", ""),
            sms_gateway_timeout_s=_float(env, "SMS_GATEWAY_TIMEOUT_S", 5.0),
            smtp_host=env.get("SMTP_HOST", "localhost"),
            smtp_port=int_setting(env, "SMTP_PORT", 25),
            smtp_username=env.get("SMTP_USERNAME", ""),
            smtp_password=env.get("SMTP_PASSWORD", ""),
            smtp_starttls=bool_setting(env, "SMTP_STARTTLS", False),
            smtp_timeout_s=_float(env, "SMTP_TIMEOUT_S", 10.0),
            mail_from=env.get("MAIL_FROM", "selfcare@localhost"),
            max_in_flight=int_setting(env, "NOTIFIER_MAX_IN_FLIGHT", 200),
            claim_limit=int_setting(env, "NOTIFIER_CLAIM_LIMIT", 500),
            lease_s=_float(env, "NOTIFIER_LEASE_S", 60.0),
            retry_initial_s=_float(env, "NOTIFIER_RETRY_INITIAL_S", 1.0),
            retry_max_s=_float(env, "NOTIFIER_RETRY_MAX_S", 60.0),
            max_attempts=int_setting(env, "NOTIFIER_MAX_ATTEMPTS", 20),
        )
        if settings.lease_s <= settings.sms_gateway_timeout_s or settings.lease_s <= settings.smtp_timeout_s:
            raise ConfigError("NOTIFIER_LEASE_S must exceed the gateway time-outs")
        return settings
