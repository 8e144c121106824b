"""KAFKA_* settings: one object, clear errors, the same connection for aiokafka and faust."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import faust
import pytest

from deploy.kafka_security import make_certificates
from services.common.errors import ConfigError
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs
from services.ops.cli import _bootstrap
from services.recovery.settings import RecoverySettings
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS


def test_plaintext_by_default() -> None:
    k = KafkaSettings.from_env({})
    assert aiokafka_kwargs(k) == {"bootstrap_servers": "localhost:9092", "security_protocol": "PLAINTEXT"}
    assert k.faust_credentials() is None
    assert aiokafka_kwargs("h:1") == {"bootstrap_servers": "h:1", "security_protocol": "PLAINTEXT"}


def test_selfcare_ops_connects_with_the_services_defaults(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """DESIGN.md: ``KAFKA_BOOTSTRAP_SERVERS`` (default ``localhost:9092``) and the ``KAFKA_*``
    security settings are "used by every service and by selfcare-ops"."""
    for name in [n for n in os.environ if n.startswith("KAFKA_")]:
        monkeypatch.delenv(name)
    ops = _bootstrap()
    service = RecoverySettings.from_env({"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
                                         "RECOVERY_API_TOKEN": "r" * 20,
                                         "SELFCARE_VAR_DIR": str(tmp_path)}).kafka
    assert ops == service == KafkaSettings.from_env({})
    assert (ops.bootstrap_servers, ops.security_protocol) == ("localhost:9092", "PLAINTEXT")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9093,broker-2:9093")
    assert _bootstrap().bootstrap_servers == "broker-1:9093,broker-2:9093"


@pytest.mark.parametrize(("env", "message"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME must be set"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
      "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM must be one of"),
    ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "does not use SASL"),
    ({"KAFKA_SSL_CA_FILE": "/etc/hostname"}, "does not use TLS"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "no such file"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/etc/hostname"}, "set together"),
])
def test_bad_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KafkaSettings.from_env(env)


def test_sasl_ssl_gives_aiokafka_and_faust_the_same_connection(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    k = KafkaSettings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2", "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_USERNAME": "registration", "KAFKA_SASL_PASSWORD": "s3cret",
        "KAFKA_SSL_CA_FILE": str(tmp_path / "ca.pem"),
    })
    kwargs = aiokafka_kwargs(k)
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "registration" and kwargs["sasl_plain_password"] == "s3cret"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    creds = k.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert k.faust_broker_url == "kafka://a:1;kafka://b:2"
    assert "s3cret" not in repr(k)


def test_mutual_tls_loads_the_client_certificate(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    k = KafkaSettings.from_env({
        "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": str(tmp_path / "ca.pem"),
        "KAFKA_SSL_CERT_FILE": str(tmp_path / "broker.pem"), "KAFKA_SSL_KEY_FILE": str(tmp_path / "broker.key"),
    })
    assert isinstance(k.faust_credentials(), faust.SSLCredentials)
    assert "sasl_mechanism" not in aiokafka_kwargs(k)
