"""The notifier's typed settings: the common ones plus the gateways and the dispatcher."""

from __future__ import annotations

from email.errors import MessageError
from email.headerregistry import Address
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, model_validator

from services.common.codec import has_control_character
from services.common.env_settings import (
    EnvBool,
    EnvFloat,
    EnvInt,
    EnvSettings,
    PositiveInt,
    Text,
)
from services.common.settings import CommonSettings, ConfigError, database_url, web_port
from services.common.tokens import SMS_STATUS_TOKEN, ReadTimeoutSettings, token_setting
from services.notifier.domain.messages import notice_sms_text
from services.notifier.domain.model import RetryPolicy


class SmsSettings(ReadTimeoutSettings):
    """The SMS gateway, its fallback, their circuit, and the delivery-status webhook's token."""

    sms_gateway_url: Text = Field(default="http://127.0.0.1:6199/sms", validation_alias="SMS_GATEWAY_URL")
    sms_gateway_token: str = Field(default="", validation_alias="SMS_GATEWAY_TOKEN", repr=False)
    sms_gateway_timeout_s: EnvFloat = Field(default=5.0, validation_alias="SMS_GATEWAY_TIMEOUT_S")
    sms_fallback_url: str = Field(default="", validation_alias="SMS_FALLBACK_URL")
    sms_fallback_token: str = Field(default="", validation_alias="SMS_FALLBACK_TOKEN", repr=False)
    sms_gateway_ca_file: str = Field(default="", validation_alias="SMS_GATEWAY_CA_FILE")
    sms_circuit_failures: EnvInt = Field(default=5, validation_alias="SMS_CIRCUIT_FAILURES")
    sms_circuit_open_s: EnvFloat = Field(default=30.0, validation_alias="SMS_CIRCUIT_OPEN_S")
    status_token: str = Field(default="", validation_alias=SMS_STATUS_TOKEN, repr=False)
    # reports kept for a message id no delivery has yet (a day at most); beyond: 503, sent again
    sms_parked_reports_max: PositiveInt = Field(default=100_000,
                                                validation_alias="SMS_PARKED_REPORTS_MAX")


def bare_address(value: str) -> bool:
    """``value`` is one address ``local@domain`` as an envelope sender and a From header take it."""
    if not value or has_control_character(value) or any(ch.isspace() for ch in value):
        return False
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, MessageError):
        return False
    return bool(address.username and address.domain) and address.addr_spec == value


class SmtpSettings(EnvSettings):
    smtp_host: Text = Field(default="localhost", validation_alias="SMTP_HOST")
    smtp_port: EnvInt = Field(default=25, validation_alias="SMTP_PORT")
    smtp_username: str = Field(default="", validation_alias="SMTP_USERNAME")
    smtp_password: str = Field(default="", validation_alias="SMTP_PASSWORD", repr=False)
    smtp_starttls: EnvBool = Field(default=False, validation_alias="SMTP_STARTTLS")
    smtp_timeout_s: EnvFloat = Field(default=10.0, validation_alias="SMTP_TIMEOUT_S")
    smtp_ca_file: str = Field(default="", validation_alias="SMTP_CA_FILE")
    mail_from: Text = Field(default="selfcare@localhost", validation_alias="MAIL_FROM")


class DispatchSettings(EnvSettings):
    """The dispatcher: deliveries in flight, claims and leases, retries, the takeover."""

    max_in_flight: EnvInt = Field(default=200, validation_alias="NOTIFIER_MAX_IN_FLIGHT")
    claim_limit: EnvInt = Field(default=500, validation_alias="NOTIFIER_CLAIM_LIMIT")
    lease_s: EnvFloat = Field(default=60.0, validation_alias="NOTIFIER_LEASE_S")
    retry_initial_s: EnvFloat = Field(default=RetryPolicy.initial_s,
                                      validation_alias="NOTIFIER_RETRY_INITIAL_S")
    retry_max_s: EnvFloat = Field(default=RetryPolicy.max_s, validation_alias="NOTIFIER_RETRY_MAX_S")
    takeover_s: EnvFloat = Field(default=6.0, validation_alias="NOTIFIER_TAKEOVER_S")


class NotifierSettings(CommonSettings, SmsSettings, SmtpSettings, DispatchSettings):
    service: ClassVar[str] = "notifier"
    key_purposes: ClassVar[frozenset[str]] = frozenset({"delivery"})
    needs_pepper: ClassVar[bool] = False

    web_port: EnvInt = web_port("notifier", 6103)
    database_url: str = database_url("notifier")

    @model_validator(mode="after")
    def _derive_and_check(self) -> Self:
        self._derive(status_token=token_setting(self.status_token, SMS_STATUS_TOKEN,
                                                local_mode=self.local_mode, var_dir=self.var_dir))
        if self.lease_s <= self.sms_gateway_timeout_s or self.lease_s <= self.smtp_timeout_s:
            raise ConfigError("NOTIFIER_LEASE_S must exceed the gateway time-outs")
        if bool(self.smtp_username) != bool(self.smtp_password):
            # a login with one half missing fails at every send, which retries it until the code
            # expires: refused at start instead
            raise ConfigError("SMTP_USERNAME and SMTP_PASSWORD go together: set both for a relay "
                              "that requires a login, neither for one that does not")
        if not bare_address(self.mail_from):
            # the envelope sender and the From header: one that no message can carry (a newline,
            # a display name, no domain) failed every email as internal_error until it expired
            raise ConfigError("MAIL_FROM must be a bare address, local@domain (no display name, "
                              "no spaces or control characters)")
        for gateway_token, name in ((self.sms_gateway_token, "SMS_GATEWAY_TOKEN"),
                                    (self.sms_fallback_token, "SMS_FALLBACK_TOKEN")):
            # the webhook's token is never one we send to a gateway: either gateway could use it
            # to forge delivery reports
            if self.status_token == gateway_token:
                raise ConfigError(f"SMS_STATUS_TOKEN must differ from {name}: the webhook's token "
                                  "is never one we send to a gateway")
        if self.sms_gateway_token and self.sms_gateway_token == self.sms_fallback_token:
            # each gateway would be sent the other's credential
            raise ConfigError("SMS_FALLBACK_TOKEN must differ from SMS_GATEWAY_TOKEN: each gateway "
                              "is sent only its own token")
        for gateway_held, name in ((self.status_token, SMS_STATUS_TOKEN),
                                   (self.sms_gateway_token, "SMS_GATEWAY_TOKEN"),
                                   (self.sms_fallback_token, "SMS_FALLBACK_TOKEN")):
            # a gateway holds each of these: it could call the ops routes of every service
            if self.ops_api_token and self.ops_api_token == gateway_held:
                raise ConfigError(f"OPS_API_TOKEN must differ from {name}: the ops routes' token "
                                  "is never one a gateway holds")
        if self.takeover_s < 1 or self.sms_circuit_failures < 1 or self.sms_circuit_open_s <= 0:
            raise ConfigError(
                "NOTIFIER_TAKEOVER_S, SMS_CIRCUIT_FAILURES and SMS_CIRCUIT_OPEN_S must be positive")
        for ca_file in (self.sms_gateway_ca_file, self.smtp_ca_file):
            if ca_file and not Path(ca_file).is_file():
                raise ConfigError(f"CA file not found: {ca_file}")
        for locale in ("ru", "en"):
            try:
                notice_sms_text(locale, self.support_phone)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        return self

    def plaintext_transports(self) -> list[str]:
        """The gateway connections that would carry passwords in clear."""
        found = [name for name, url in (("SMS_GATEWAY_URL", self.sms_gateway_url),
                                        ("SMS_FALLBACK_URL", self.sms_fallback_url))
                 if url and not url.lower().startswith("https://")]
        if not self.smtp_starttls:
            found.append("SMTP (SMTP_STARTTLS off)")
        return found
