"""Every variable of DESIGN.md is read by its name, a bad value names its variable, and the
table of variables in docs/operations.md lists exactly the variables the settings read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.common.env_settings import EnvSettings
from services.common.errors import ConfigError
from services.common.settings import CommonSettings
from services.notifier.settings import NotifierSettings
from services.recovery.settings import RecoverySettings
from services.registration.settings import RegistrationSettings
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS

TOKENS = {"RECOVERY_API_TOKEN": "r" * 20, "SMS_STATUS_TOKEN": "s" * 20}
KEYS = {"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER}

# (variable, value that is not the default, how to read it back, expected)
COMMON: list[tuple[str, str, Any, Any]] = [
    ("KAFKA_BOOTSTRAP_SERVERS", "a:1,b:2", lambda s: s.kafka_broker_url, "kafka://a:1;kafka://b:2"),
    ("KAFKA_SESSION_TIMEOUT_S", "45", lambda s: s.kafka_session_timeout_s, 45),
    ("KAFKA_GROUP_INSTANCE_ID", "pod-0", lambda s: s.kafka_group_instance_id, "pod-0"),
    ("WEB_BIND_HOST", "0.0.0.0", lambda s: s.web_host, "0.0.0.0"),
    ("TOPIC_PREFIX", "t1-", lambda s: s.topic("x"), "t1-x"),
    ("OPS_API_TOKEN", "o" * 16, lambda s: s.ops_api_token, "o" * 16),
    ("MAX_RECORD_BYTES", "1000", lambda s: s.max_record_bytes, 1000),
    ("BATCH_SIZE", "7", lambda s: s.batch_size, 7),
    ("BATCH_WITHIN_MS", "250", lambda s: s.batch_within_s, 0.25),
    ("OUTBOX_SWEEP_S", "0.5", lambda s: s.outbox_sweep_s, 0.5),
    ("SUPPORT_PHONE", "0611", lambda s: s.support_phone, "0611"),
    ("CODE_TTL_S", "60", lambda s: s.code_ttl_s, 60),
    ("LOG_LEVEL", "debug", lambda s: s.log_level, "DEBUG"),
    ("RETENTION_DAYS", "10", lambda s: s.retention_days, 10),
    ("MAX_CLOCK_SKEW_S", "5", lambda s: s.max_clock_skew_s, 5),
    ("SELFCARE_ENV", "demo", lambda s: s.local_mode, True),
    ("SELFCARE_VAR_DIR", "/srv/selfcare", lambda s: s.var_dir, Path("/srv/selfcare")),
]
KAFKA: list[tuple[str, str, Any, Any]] = [
    ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext", lambda s: s.kafka.security_protocol, "SASL_PLAINTEXT"),
    ("KAFKA_SASL_MECHANISM", "plain", lambda s: s.kafka.sasl_mechanism, "PLAIN"),
    ("KAFKA_SASL_USERNAME", "u", lambda s: s.kafka.sasl_username, "u"),
    ("KAFKA_SASL_PASSWORD", "p", lambda s: s.kafka.sasl_password, "p"),
]
REGISTRATION: list[tuple[str, str, Any, Any]] = [
    ("REGISTRATION_DATABASE_URL", "sqlite:///x.db", lambda s: s.database_url, "sqlite:///x.db"),
    ("REGISTRATION_WEB_PORT", "7101", lambda s: s.web_port, 7101),
    ("REGISTRATION_LINK_PROCESS", "off", lambda s: s.link_process, False),
    ("SUPPORT_IDENTIFY_MAX", "9", lambda s: s.identify_max, 9),
    ("SUPPORT_IDENTIFY_WINDOW_S", "99", lambda s: s.identify_window_s, 99),
    ("HTTP_READ_TIMEOUT_S", "2.5", lambda s: s.http_read_timeout_s, 2.5),
]
RECOVERY: list[tuple[str, str, Any, Any]] = [
    ("RECOVERY_DATABASE_URL", "sqlite:///y.db", lambda s: s.database_url, "sqlite:///y.db"),
    ("RECOVERY_WEB_PORT", "7102", lambda s: s.web_port, 7102),
    ("RECOVERY_API_TOKEN", "a" * 20, lambda s: s.api_token, "a" * 20),
    ("RECOVERY_HASH_WORKERS", "3", lambda s: s.hash_workers, 3),
    ("RECOVERY_HASH_NICE", "0", lambda s: s.hash_nice, 0),
    ("HTTP_READ_TIMEOUT_S", "2.5", lambda s: s.http_read_timeout_s, 2.5),
    ("TRUSTED_PROXIES", "10.0.0.0/8", lambda s: len(s.trusted_proxies.networks), 1),
    ("LIMIT_LOGIN_COOLDOWN_S", "7", lambda s: s.policy.login_cooldown.window_s, 7),
    ("LIMIT_DESTINATION_MAX", "8", lambda s: s.policy.per_destination.max_events, 8),
    ("LIMIT_DESTINATION_WINDOW_S", "9", lambda s: s.policy.per_destination.window_s, 9),
    ("LIMIT_IP_MAX", "11", lambda s: s.policy.per_ip.max_events, 11),
    ("LIMIT_IP_WINDOW_S", "12", lambda s: s.policy.per_ip.window_s, 12),
    ("LIMIT_ACCOUNT_DAILY_MAX", "13", lambda s: s.policy.account_daily.max_events, 13),
    ("SMS_HOURLY_BUDGET", "14", lambda s: s.policy.sms_hourly.max_events, 14),
    ("SMS_ALLOWED_PREFIXES", "+7495, +7499", lambda s: s.policy.sms_prefixes, ("+7495", "+7499")),
    ("LOGIN_IP_MAX", "15", lambda s: s.policy.login_ip.max_events, 15),
    ("LOGIN_IP_WINDOW_S", "16", lambda s: s.policy.login_ip.window_s, 16),
    ("LOGIN_LOCKOUT_FAILURES", "17", lambda s: s.policy.lockout_failures, 17),
    ("LOGIN_GLOBAL_LOCKOUT_FAILURES", "18", lambda s: s.policy.global_lockout_failures, 18),
    ("LOGIN_LOCKOUT_S", "19", lambda s: s.policy.lockout_s, 19),
    ("PASSWORD_LENGTH", "20", lambda s: s.password_length, 20),
    ("ARGON2_TIME_COST", "3", lambda s: s.argon2.time_cost, 3),
    ("ARGON2_MEMORY_KIB", "20000", lambda s: s.argon2.memory_kib, 20000),
    ("ARGON2_PARALLELISM", "2", lambda s: s.argon2.parallelism, 2),
]
NOTIFIER: list[tuple[str, str, Any, Any]] = [
    ("NOTIFIER_DATABASE_URL", "sqlite:///z.db", lambda s: s.database_url, "sqlite:///z.db"),
    ("NOTIFIER_WEB_PORT", "7103", lambda s: s.web_port, 7103),
    ("SMS_STATUS_TOKEN", "b" * 20, lambda s: s.status_token, "b" * 20),
    ("SMS_GATEWAY_URL", "https://gw/sms", lambda s: s.sms_gateway_url, "https://gw/sms"),
    ("SMS_GATEWAY_TOKEN", "g" * 20, lambda s: s.sms_gateway_token, "g" * 20),
    ("SMS_GATEWAY_TIMEOUT_S", "2", lambda s: s.sms_gateway_timeout_s, 2.0),
    ("SMS_FALLBACK_URL", "https://fb/sms", lambda s: s.sms_fallback_url, "https://fb/sms"),
    ("SMS_FALLBACK_TOKEN", "f" * 20, lambda s: s.sms_fallback_token, "f" * 20),
    ("SMS_CIRCUIT_FAILURES", "3", lambda s: s.sms_circuit_failures, 3),
    ("SMS_CIRCUIT_OPEN_S", "4.5", lambda s: s.sms_circuit_open_s, 4.5),
    ("SMS_PARKED_REPORTS_MAX", "500", lambda s: s.sms_parked_reports_max, 500),
    ("SMTP_HOST", "mail", lambda s: s.smtp_host, "mail"),
    ("SMTP_PORT", "587", lambda s: s.smtp_port, 587),
    ("SMTP_STARTTLS", "yes", lambda s: s.smtp_starttls, True),
    ("SMTP_TIMEOUT_S", "3", lambda s: s.smtp_timeout_s, 3.0),
    ("MAIL_FROM", "a@b.c", lambda s: s.mail_from, "a@b.c"),
    ("NOTIFIER_MAX_IN_FLIGHT", "20", lambda s: s.max_in_flight, 20),
    ("NOTIFIER_CLAIM_LIMIT", "50", lambda s: s.claim_limit, 50),
    ("NOTIFIER_LEASE_S", "30", lambda s: s.lease_s, 30.0),
    ("NOTIFIER_RETRY_INITIAL_S", "2", lambda s: s.retry_initial_s, 2.0),
    ("NOTIFIER_RETRY_MAX_S", "120", lambda s: s.retry_max_s, 120.0),
    ("NOTIFIER_TAKEOVER_S", "9", lambda s: s.takeover_s, 9.0),
    ("HTTP_READ_TIMEOUT_S", "3.5", lambda s: s.http_read_timeout_s, 3.5),
    # a CA file must exist: this file stands in for one
    ("SMS_GATEWAY_CA_FILE", __file__, lambda s: s.sms_gateway_ca_file, __file__),
    ("SMTP_CA_FILE", __file__, lambda s: s.smtp_ca_file, __file__),
]
CASES = ([(RegistrationSettings, *c) for c in COMMON + REGISTRATION]
         + [(RecoverySettings, *c) for c in COMMON + RECOVERY]
         + [(NotifierSettings, *c) for c in COMMON + NOTIFIER])
SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}


def base(tmp_path: Path) -> dict[str, str]:
    return {**KEYS, **TOKENS, "SELFCARE_VAR_DIR": str(tmp_path)}


@pytest.mark.parametrize(("cls", "name", "value", "read", "expected"), CASES,
                         ids=[f"{c[0].service}-{c[1]}" for c in CASES])
def test_each_variable_is_read_by_its_name(cls: type[CommonSettings], name: str, value: str, read: Any,
                                           expected: Any, tmp_path: Path) -> None:
    default = read(cls.from_env(base(tmp_path)))
    assert default != expected  # the value chosen differs from the default
    assert read(cls.from_env({**base(tmp_path), name: value})) == expected


@pytest.mark.parametrize(("name", "value", "read", "expected"), KAFKA, ids=[c[0] for c in KAFKA])
def test_each_kafka_variable_is_read_by_its_name(name: str, value: str, read: Any, expected: Any,
                                                 tmp_path: Path) -> None:
    settings = RecoverySettings.from_env({**base(tmp_path), **SASL, name: value})
    assert read(settings) == expected


def test_the_database_default_and_files_follow_the_var_dir(tmp_path: Path) -> None:
    for cls, port in ((RegistrationSettings, 6101), (RecoverySettings, 6102), (NotifierSettings, 6103)):
        s = cls.from_env(base(tmp_path))
        assert s.database_url == f"sqlite:///{tmp_path}/{cls.service}.db" and s.web_port == port
        assert cls.from_env({**base(tmp_path), f"{cls.service.upper()}_DATABASE_URL": ""}).database_url == (
            s.database_url)  # empty is unset
    assert RegistrationSettings.from_env(base(tmp_path)).batch_within_s == 0.1
    assert RecoverySettings.from_env(base(tmp_path)).batch_within_s == 0.005


@pytest.mark.parametrize("cls", [RegistrationSettings, RecoverySettings, NotifierSettings])
@pytest.mark.parametrize(("name", "value", "message"), [
    ("BATCH_SIZE", "many", "BATCH_SIZE must be an integer"),
    ("RETENTION_DAYS", "0", "RETENTION_DAYS must be at least 7"),
    ("RETENTION_DAYS", "6", "RETENTION_DAYS must be at least 7"),
    ("MAX_CLOCK_SKEW_S", "-1", "MAX_CLOCK_SKEW_S must be a positive integer"),
    ("OPS_API_TOKEN", "short", "OPS_API_TOKEN must be at least 16 characters"),
    ("KAFKA_SECURITY_PROTOCOL", "TLS", "KAFKA_SECURITY_PROTOCOL must be one of"),
    ("KAFKA_SESSION_TIMEOUT_S", "1.5", "KAFKA_SESSION_TIMEOUT_S must be an integer"),
    ("SUPPORT_PHONE", "", "SUPPORT_PHONE must be 1 to 64 characters"),
    ("SUPPORT_PHONE", "8" * 65, "SUPPORT_PHONE must be 1 to 64 characters"),
    # every code would be issued already expired (and spend the limits)
    ("CODE_TTL_S", "0", "CODE_TTL_S must be a positive integer"),
    ("CODE_TTL_S", "-3600", "CODE_TTL_S must be a positive integer"),
    ("CODE_TTL_S", "1000000000000", r"CODE_TTL_S must be at most 604800 seconds \(a week\)"),
])
def test_bad_common_values_name_their_variable(cls: type[CommonSettings], name: str, value: str, message: str,
                                               tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        cls.from_env({**base(tmp_path), name: value})


@pytest.mark.parametrize(("cls", "name", "value", "message"), [
    (RegistrationSettings, "REGISTRATION_WEB_PORT", "http", "REGISTRATION_WEB_PORT must be an integer"),
    (RegistrationSettings, "REGISTRATION_LINK_PROCESS", "maybe", "REGISTRATION_LINK_PROCESS must be a boolean"),
    (RegistrationSettings, "SUPPORT_IDENTIFY_MAX", "x", "SUPPORT_IDENTIFY_MAX must be an integer"),
    (RegistrationSettings, "SUPPORT_IDENTIFY_MAX", "0", "SUPPORT_IDENTIFY_MAX must be a positive integer"),
    (RegistrationSettings, "SUPPORT_IDENTIFY_MAX", "-1", "SUPPORT_IDENTIFY_MAX must be a positive integer"),
    (RegistrationSettings, "SUPPORT_IDENTIFY_WINDOW_S", "0",
     "SUPPORT_IDENTIFY_WINDOW_S must be a positive integer"),
    (RegistrationSettings, "SUPPORT_IDENTIFY_WINDOW_S", "-60",
     "SUPPORT_IDENTIFY_WINDOW_S must be a positive integer"),
    (RecoverySettings, "LIMIT_IP_MAX", "lots", "LIMIT_IP_MAX must be an integer"),
    (RecoverySettings, "LOGIN_LOCKOUT_FAILURES", "0", "LOGIN_LOCKOUT_FAILURES must be at least 1"),
    (RecoverySettings, "LOGIN_LOCKOUT_S", "0", "LOGIN_LOCKOUT_S must be at least 1"),
    (RecoverySettings, "LIMIT_IP_MAX", "0", "LIMIT_IP_MAX must be at least 1"),
    (RecoverySettings, "LIMIT_DESTINATION_MAX", "-1", "LIMIT_DESTINATION_MAX must be at least 1"),
    (RecoverySettings, "LOGIN_IP_MAX", "0", "LOGIN_IP_MAX must be at least 1"),
    (RecoverySettings, "SMS_HOURLY_BUDGET", "0", "SMS_HOURLY_BUDGET must be at least 1"),
    (RecoverySettings, "RECOVERY_HASH_WORKERS", "0", "RECOVERY_HASH_WORKERS must be at least 1"),
    (RecoverySettings, "RECOVERY_HASH_NICE", "-1", "RECOVERY_HASH_NICE must be at least 0"),
    (RecoverySettings, "RECOVERY_HASH_NICE", "20", "RECOVERY_HASH_NICE must be at most 19"),
    (RecoverySettings, "PASSWORD_LENGTH", "6", "PASSWORD_LENGTH must be at least 8"),
    (RecoverySettings, "SMS_ALLOWED_PREFIXES", "", "SMS_ALLOWED_PREFIXES must list E.164 prefixes"),
    (RecoverySettings, "SMS_ALLOWED_PREFIXES", "79", "SMS_ALLOWED_PREFIXES must list E.164 prefixes"),
    (RecoverySettings, "SMS_ALLOWED_PREFIXES", '["+79"]', "SMS_ALLOWED_PREFIXES must list E.164 prefixes"),
    # digits that str.isdigit takes but no E.164 number has: full-width, Arabic-Indic
    (RecoverySettings, "SMS_ALLOWED_PREFIXES", "+\uff17\uff19", "SMS_ALLOWED_PREFIXES must list E.164 prefixes"),
    (RecoverySettings, "SMS_ALLOWED_PREFIXES", "+79,+\u0667\u0669",
     "SMS_ALLOWED_PREFIXES must list E.164 prefixes"),
    # a window of 0 s or less would turn its limit off
    (RecoverySettings, "LIMIT_LOGIN_COOLDOWN_S", "0", "LIMIT_LOGIN_COOLDOWN_S must be at least 1"),
    (RecoverySettings, "LIMIT_LOGIN_COOLDOWN_S", "-60", "LIMIT_LOGIN_COOLDOWN_S must be at least 1"),
    (RecoverySettings, "LIMIT_DESTINATION_WINDOW_S", "-600", "LIMIT_DESTINATION_WINDOW_S must be at least 1"),
    (RecoverySettings, "LIMIT_DESTINATION_WINDOW_S", "0", "LIMIT_DESTINATION_WINDOW_S must be at least 1"),
    (RecoverySettings, "LIMIT_IP_WINDOW_S", "-300", "LIMIT_IP_WINDOW_S must be at least 1"),
    (RecoverySettings, "LIMIT_IP_WINDOW_S", "0", "LIMIT_IP_WINDOW_S must be at least 1"),
    (RecoverySettings, "LOGIN_IP_WINDOW_S", "0", "LOGIN_IP_WINDOW_S must be at least 1"),
    (RecoverySettings, "LOGIN_IP_WINDOW_S", "-60", "LOGIN_IP_WINDOW_S must be at least 1"),
    (RecoverySettings, "LIMIT_ACCOUNT_DAILY_MAX", "0", "LIMIT_ACCOUNT_DAILY_MAX must be at least 1"),
    (RecoverySettings, "LOGIN_GLOBAL_LOCKOUT_FAILURES", "0", "LOGIN_GLOBAL_LOCKOUT_FAILURES must be at least 1"),
    (RecoverySettings, "ARGON2_MEMORY_KIB", "1024", "argon2id parameters below OWASP's minimum"),
    (RecoverySettings, "ARGON2_TIME_COST", "two", "ARGON2_TIME_COST must be an integer"),
    (RecoverySettings, "TRUSTED_PROXIES", "proxy.local", "TRUSTED_PROXIES entry 'proxy.local'"),
    (RecoverySettings, "HTTP_READ_TIMEOUT_S", "soon", "HTTP_READ_TIMEOUT_S must be a number"),
    (RecoverySettings, "HTTP_READ_TIMEOUT_S", "301", "HTTP_READ_TIMEOUT_S must be between 0 and 300"),
    (RecoverySettings, "RECOVERY_API_TOKEN", "short", "RECOVERY_API_TOKEN must be at least 16"),
    (NotifierSettings, "SMTP_STARTTLS", "sometimes", "SMTP_STARTTLS must be a boolean"),
    (NotifierSettings, "SMTP_PORT", "smtp", "SMTP_PORT must be an integer"),
    (NotifierSettings, "SMS_GATEWAY_TIMEOUT_S", "5s", "SMS_GATEWAY_TIMEOUT_S must be a number"),
    (NotifierSettings, "NOTIFIER_LEASE_S", "4", "NOTIFIER_LEASE_S must exceed the gateway time-outs"),
    (NotifierSettings, "SMS_CIRCUIT_FAILURES", "0", "SMS_CIRCUIT_FAILURES and SMS_CIRCUIT_OPEN_S must be"),
    (NotifierSettings, "SMS_PARKED_REPORTS_MAX", "0", "SMS_PARKED_REPORTS_MAX must be a positive"),
    (NotifierSettings, "SMTP_CA_FILE", "/nonexistent.pem", "CA file not found"),
    (NotifierSettings, "MAIL_FROM", "selfcare@example.ru\nBcc: all@example.ru", "MAIL_FROM must be a bare"),
    (NotifierSettings, "MAIL_FROM", "Selfcare <selfcare@example.ru>", "MAIL_FROM must be a bare"),
    (NotifierSettings, "MAIL_FROM", "selfcare", "MAIL_FROM must be a bare"),
    (NotifierSettings, "MAIL_FROM", "selfcare@", "MAIL_FROM must be a bare"),
    (NotifierSettings, "MAIL_FROM", "self care@example.ru", "MAIL_FROM must be a bare"),
    (NotifierSettings, "MAIL_FROM", "a@b@example.ru", "MAIL_FROM must be a bare"),
    (NotifierSettings, "SMTP_USERNAME", "selfcare", "SMTP_USERNAME and SMTP_PASSWORD go together"),
    (NotifierSettings, "SMTP_PASSWORD", "s3cret", "SMTP_USERNAME and SMTP_PASSWORD go together"),
    (NotifierSettings, "SMS_GATEWAY_TOKEN", TOKENS["SMS_STATUS_TOKEN"],
     "SMS_STATUS_TOKEN must differ from SMS_GATEWAY_TOKEN"),
    (NotifierSettings, "SMS_FALLBACK_TOKEN", TOKENS["SMS_STATUS_TOKEN"],
     "SMS_STATUS_TOKEN must differ from SMS_FALLBACK_TOKEN"),
])
def test_bad_service_values_name_their_variable(cls: type[CommonSettings], name: str, value: str, message: str,
                                                tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        cls.from_env({**base(tmp_path), name: value})


def test_a_bare_mail_from_is_kept_as_given(tmp_path: Path) -> None:
    for value in ("selfcare@localhost", "no-reply@selfcare.example.ru", "codes+sms@example.ru"):
        assert NotifierSettings.from_env({**base(tmp_path), "MAIL_FROM": value}).mail_from == value


def test_the_smtp_login_is_read_by_its_two_names(tmp_path: Path) -> None:
    default = NotifierSettings.from_env(base(tmp_path))
    assert (default.smtp_username, default.smtp_password) == ("", "")
    s = NotifierSettings.from_env({**base(tmp_path), "SMTP_USERNAME": "user", "SMTP_PASSWORD": "pw"})
    assert (s.smtp_username, s.smtp_password) == ("user", "pw")


def test_empty_numbers_and_flags_are_unset_and_lists_stay_comma_separated(tmp_path: Path) -> None:
    s = RecoverySettings.from_env({**base(tmp_path), "BATCH_SIZE": "", "LIMIT_IP_MAX": "",
                                   "SMS_ALLOWED_PREFIXES": "+79,+7700"})
    assert s.batch_size == 500 and s.policy.per_ip.max_events == 30
    assert s.policy.sms_prefixes == ("+79", "+7700")


def test_building_directly_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.kafka_config import KafkaSettings

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert KafkaSettings(bootstrap_servers="h:1").security_protocol == "PLAINTEXT"
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME must be set"):
        KafkaSettings.from_env()  # os.environ


# --- the documented variables ----------------------------------------------------------------

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# variables read back in a test of their own rather than in the cases above
READ_BACK_ELSEWHERE = {
    "SECRET_KEYS": "tests/common/test_keys_by_purpose.py",
    "CONTACT_KEYS": "tests/common/test_keys_by_purpose.py",
    "DELIVERY_KEYS": "tests/common/test_keys_by_purpose.py",
    "HASH_PEPPER": "tests/common/test_keys_by_purpose.py",
    "KAFKA_SSL_CA_FILE": "tests/common/test_kafka_config.py",
    "KAFKA_SSL_CERT_FILE": "tests/common/test_kafka_config.py",
    "KAFKA_SSL_KEY_FILE": "tests/common/test_kafka_config.py",
    "SMTP_USERNAME": "tests/common/test_settings_variables.py",  # go together: a test below
    "SMTP_PASSWORD": "tests/common/test_settings_variables.py",
}


def variables(model: type[EnvSettings]) -> set[str]:
    """The variables a settings model reads: each field's alias, and those of its groups (a
    field without an alias is derived, not read)."""
    found: set[str] = set()
    for field in model.model_fields.values():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, EnvSettings):
            found |= variables(group)
        elif field.validation_alias is not None:
            assert isinstance(field.validation_alias, str), field
            found.add(field.validation_alias)
    return found


def documented_variables(text: str) -> set[str]:
    """The names in the first column of the table headed ``| variable | default | meaning |``."""
    start = text.index("| variable | default | meaning |")
    end = text.find("\n\n", start)
    rows = text[start:end if end >= 0 else len(text)].splitlines()[2:]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


READ = variables(RegistrationSettings) | variables(RecoverySettings) | variables(NotifierSettings)


def test_the_operations_table_lists_exactly_the_variables_the_settings_read() -> None:
    documented = documented_variables(OPERATIONS.read_text(encoding="utf-8"))
    assert len(READ) > 70  # the walk found the groups' variables too
    assert {"KAFKA_SASL_PASSWORD", "ARGON2_MEMORY_KIB", "SMTP_CA_FILE"} <= READ
    assert sorted(READ - documented) == [], "read by the settings, missing from docs/operations.md"
    assert sorted(documented - READ) == [], "in docs/operations.md, read by no settings model"


def test_the_table_parser_sees_a_missing_or_an_extra_row() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `LOGIN_LOCKOUT_FAILURES`"))
    assert documented_variables(text) - documented_variables(text.replace(row + "\n", "")) == {
        "LOGIN_LOCKOUT_FAILURES", "LOGIN_LOCKOUT_S"}
    extra = text.replace(row, row + "\n| `NOT_A_SETTING` | 1 | nothing |")
    assert documented_variables(extra) - documented_variables(text) == {"NOT_A_SETTING"}


def test_every_variable_is_read_back_here_or_in_a_test_of_its_own() -> None:
    here = {case[0] for case in COMMON + KAFKA + REGISTRATION + RECOVERY + NOTIFIER}
    root = Path(__file__).resolve().parents[2]
    for name, path in READ_BACK_ELSEWHERE.items():
        assert name in (root / path).read_text(encoding="utf-8"), (name, path)
    assert sorted(READ - here - set(READ_BACK_ELSEWHERE)) == []
