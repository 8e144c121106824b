"""Every default DESIGN.md names is each settings class's default: one row per default, citing
the contract's words. (Defaults of variables DESIGN.md does not fix are documented in
docs/operations.md, not pinned here.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from services.common.settings import CommonSettings
from services.notifier.settings import NotifierSettings
from services.recovery.settings import RecoverySettings
from services.registration.settings import RegistrationSettings
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS

# what a service needs to start outside local mode; nothing else is set
REQUIRED = {"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
            "RECOVERY_API_TOKEN": "r" * 20, "SMS_STATUS_TOKEN": "s" * 20}


DATABASE = ("`REGISTRATION_DATABASE_URL`, `RECOVERY_DATABASE_URL`, `NOTIFIER_DATABASE_URL` (each "
            "default a SQLite file of that service under `./var/`)")


@dataclass(frozen=True)
class Default:
    variable: str
    read: Callable[[Any], object]
    expected: object
    design: str  # the words of DESIGN.md that fix it


EVERY_SERVICE = [
    Default("KAFKA_BOOTSTRAP_SERVERS", lambda s: s.kafka.bootstrap_servers, "localhost:9092",
            "`KAFKA_BOOTSTRAP_SERVERS` (default `localhost:9092`)"),
    Default("KAFKA_SECURITY_PROTOCOL", lambda s: s.kafka.security_protocol, "PLAINTEXT",
            "`KAFKA_SECURITY_PROTOCOL` (`PLAINTEXT` default, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`)"),
    Default("KAFKA_SASL_MECHANISM", lambda s: s.kafka.sasl_mechanism, "SCRAM-SHA-512",
            "`KAFKA_SASL_MECHANISM` (`SCRAM-SHA-512` default, `PLAIN`)"),
    Default("SUPPORT_PHONE", lambda s: s.support_phone, "8 800 250-08-90",
            "the subscriber must call support (`8 800 250-08-90`, configurable)"),
    Default("CODE_TTL_S", lambda s: s.code_ttl_s, 3600, "within its lifetime (`CODE_TTL_S`, default 3600)"),
    Default("RETENTION_DAYS", lambda s: s.retention_days, 30,
            "Bookkeeping rows ... are pruned after `RETENTION_DAYS` (default 30)"),
    Default("MAX_CLOCK_SKEW_S", lambda s: s.max_clock_skew_s, 300,
            "more than `MAX_CLOCK_SKEW_S` (default 300) in the future is refused"),
]
BY_SERVICE: dict[type[CommonSettings], list[Default]] = {
    RegistrationSettings: [
        Default("REGISTRATION_DATABASE_URL", lambda s: s.database_url, "sqlite:///var/registration.db", DATABASE),
        Default("REGISTRATION_WEB_PORT", lambda s: s.web_port, 6101, "`REGISTRATION_WEB_PORT` (default 6101)"),
    ],
    RecoverySettings: [
        Default("RECOVERY_DATABASE_URL", lambda s: s.database_url, "sqlite:///var/recovery.db", DATABASE),
        Default("RECOVERY_WEB_PORT", lambda s: s.web_port, 6102, "`RECOVERY_WEB_PORT` (6102)"),
        Default("LIMIT_LOGIN_COOLDOWN_S", lambda s: s.policy.login_cooldown, (1, 60),
                "Limits (defaults, all configurable): one code per login per 60 s"),
        Default("LIMIT_DESTINATION_MAX, LIMIT_DESTINATION_WINDOW_S", lambda s: s.policy.per_destination,
                (5, 600), "at most 5 codes per destination per 10 min"),
        Default("LIMIT_IP_MAX, LIMIT_IP_WINDOW_S", lambda s: s.policy.per_ip, (30, 300),
                "at most 30 requests per client IP per 5 min"),
        Default("LOGIN_LOCKOUT_FAILURES", lambda s: s.policy.lockout_failures, 5,
                "5 consecutive failed logins for one login from one client address refuse that login "
                "from that address for 15 min (`LOGIN_LOCKOUT_FAILURES`, `LOGIN_LOCKOUT_S`)"),
        Default("LOGIN_LOCKOUT_S", lambda s: s.policy.lockout_s, 900,
                "... refuse that login from that address for 15 min (`LOGIN_LOCKOUT_FAILURES`, "
                "`LOGIN_LOCKOUT_S`); 100 consecutive failures ... refuse it everywhere for 15 min"),
        Default("LOGIN_GLOBAL_LOCKOUT_FAILURES", lambda s: s.policy.global_lockout_failures, 100,
                "100 consecutive failures for one login from any addresses refuse it everywhere for "
                "15 min (`LOGIN_GLOBAL_LOCKOUT_FAILURES`)"),
        Default("SMS_ALLOWED_PREFIXES", lambda s: s.policy.sms_prefixes, ("+79",),
                "`SMS_ALLOWED_PREFIXES` (default `+79`)"),
        Default("LIMIT_ACCOUNT_DAILY_MAX", lambda s: s.policy.account_daily, (10, 86400),
                "At most `LIMIT_ACCOUNT_DAILY_MAX` (default 10) codes per account per 24 h"),
        Default("SMS_HOURLY_BUDGET", lambda s: s.policy.sms_hourly, (10000, 3600),
                "at most `SMS_HOURLY_BUDGET` (default 10000) SMS per hour over all accounts"),
        Default("ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM",
                lambda s: (s.argon2.memory_kib, s.argon2.time_cost, s.argon2.parallelism), (19 * 1024, 2, 1),
                "argon2id hashes (OWASP parameters: m=19 MiB, t=2, p=1)"),
        Default("TRUSTED_PROXIES", lambda s: len(s.trusted_proxies.networks), 0,
                "Client address: by default the socket peer"),
    ],
    NotifierSettings: [
        Default("NOTIFIER_DATABASE_URL", lambda s: s.database_url, "sqlite:///var/notifier.db", DATABASE),
        Default("NOTIFIER_WEB_PORT", lambda s: s.web_port, 6103, "`NOTIFIER_WEB_PORT` (6103)"),
        Default("SMS_CIRCUIT_FAILURES", lambda s: s.sms_circuit_failures, 5,
                "After 5 consecutive definite failures of a gateway (connection refused, 5xx, 429) its "
                "circuit opens for 30 s"),
        Default("SMS_CIRCUIT_OPEN_S", lambda s: s.sms_circuit_open_s, 30,
                "its circuit opens for 30 s and sends go to the other one"),
        Default("SMTP_STARTTLS, SMTP_USERNAME, SMTP_PASSWORD",
                lambda s: (s.smtp_starttls, s.smtp_username, s.smtp_password), (False, "", ""),
                "SMTP to `$SMTP_HOST:$SMTP_PORT` (STARTTLS and login when configured)"),
    ],
}
CASES = ([(cls, row) for cls in BY_SERVICE for row in EVERY_SERVICE]
         + [(cls, row) for cls, rows in BY_SERVICE.items() for row in rows])


def windows(value: object) -> object:
    """A limit's window as (max events, seconds), to compare with the table."""
    max_events, window_s = getattr(value, "max_events", None), getattr(value, "window_s", None)
    return value if max_events is None else (max_events, window_s)


@pytest.mark.parametrize(("cls", "row"), CASES, ids=[f"{c.service}-{r.variable}" for c, r in CASES])
def test_each_default_is_the_one_design_md_names(cls: type[CommonSettings], row: Default) -> None:
    settings = cls.from_env(REQUIRED)  # nothing but what a start needs: every other value defaulted
    assert windows(row.read(settings)) == row.expected, f"DESIGN.md: {row.design}"
