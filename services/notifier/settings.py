"""The notifier's typed settings: the common ones plus the gateways and the dispatcher."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from services.common.settings import CommonSettings, ConfigError, bool_setting, int_setting
from services.common.tokens import SMS_STATUS_TOKEN, read_timeout_setting, token_setting
from services.notifier.domain.templates import notice_sms_text


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
    sms_fallback_url: str = ""
    sms_fallback_token: str = field(default="", repr=False)
    sms_gateway_ca_file: str = ""
    sms_circuit_failures: int = 5
    sms_circuit_open_s: float = 30.0
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = False
    smtp_timeout_s: float = 10.0
    smtp_ca_file: str = ""
    mail_from: str = "selfcare@localhost"
    max_in_flight: int = 200
    claim_limit: int = 500
    lease_s: float = 60.0
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    status_token: str = field(default="", repr=False)
    http_read_timeout_s: float = 10.0
    takeover_s: float = 6.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifierSettings:
        env = os.environ if env is None else env
        common = cls.common_from_env(env)
        settings = cls(
            **common,
            status_token=token_setting(env, SMS_STATUS_TOKEN, local_mode=common["local_mode"],
                                       var_dir=common["var_dir"]),
            http_read_timeout_s=read_timeout_setting(env),
            sms_gateway_url=env.get("SMS_GATEWAY_URL", "http://127.0.0.1:6199/sms"),
            sms_gateway_token=env.get("SMS_GATEWAY_TOKEN", ""),
            sms_gateway_timeout_s=_float(env, "SMS_GATEWAY_TIMEOUT_S", 5.0),
            sms_fallback_url=env.get("SMS_FALLBACK_URL", ""),
            sms_fallback_token=env.get("SMS_FALLBACK_TOKEN", ""),
            sms_gateway_ca_file=env.get("SMS_GATEWAY_CA_FILE", ""),
            sms_circuit_failures=int_setting(env, "SMS_CIRCUIT_FAILURES", 5),
            sms_circuit_open_s=_float(env, "SMS_CIRCUIT_OPEN_S", 30.0),
            smtp_host=env.get("SMTP_HOST", "localhost"),
            smtp_port=int_setting(env, "SMTP_PORT", 25),
            smtp_username=env.get("SMTP_USERNAME", ""),
            smtp_password=env.get("SMTP_PASSWORD", ""),
            smtp_starttls=bool_setting(env, "SMTP_STARTTLS", False),
            smtp_timeout_s=_float(env, "SMTP_TIMEOUT_S", 10.0),
            smtp_ca_file=env.get("SMTP_CA_FILE", ""),
            mail_from=env.get("MAIL_FROM", "selfcare@localhost"),
            max_in_flight=int_setting(env, "NOTIFIER_MAX_IN_FLIGHT", 200),
            claim_limit=int_setting(env, "NOTIFIER_CLAIM_LIMIT", 500),
            lease_s=_float(env, "NOTIFIER_LEASE_S", 60.0),
            retry_initial_s=_float(env, "NOTIFIER_RETRY_INITIAL_S", 1.0),
            retry_max_s=_float(env, "NOTIFIER_RETRY_MAX_S", 60.0),
            takeover_s=_float(env, "NOTIFIER_TAKEOVER_S", 6.0),
        )
        if settings.lease_s <= settings.sms_gateway_timeout_s or settings.lease_s <= settings.smtp_timeout_s:
            raise ConfigError("NOTIFIER_LEASE_S must exceed the gateway time-outs")
        if settings.status_token == settings.sms_gateway_token:
            raise ConfigError("SMS_STATUS_TOKEN must differ from SMS_GATEWAY_TOKEN")
        if settings.takeover_s < 1 or settings.sms_circuit_failures < 1 or settings.sms_circuit_open_s <= 0:
            raise ConfigError(
                "NOTIFIER_TAKEOVER_S, SMS_CIRCUIT_FAILURES and SMS_CIRCUIT_OPEN_S must be positive")
        for ca_file in (settings.sms_gateway_ca_file, settings.smtp_ca_file):
            if ca_file and not Path(ca_file).is_file():
                raise ConfigError(f"CA file not found: {ca_file}")
        for locale in ("ru", "en"):
            try:
                notice_sms_text(locale, settings.support_phone)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        return settings

    def plaintext_transports(self) -> list[str]:
        """The gateway connections that would carry passwords in clear."""
        found = [name for name, url in (("SMS_GATEWAY_URL", self.sms_gateway_url),
                                        ("SMS_FALLBACK_URL", self.sms_fallback_url))
                 if url and not url.lower().startswith("https://")]
        if not self.smtp_starttls:
            found.append("SMTP (SMTP_STARTTLS off)")
        return found
