"""The secured local cluster of ``deploy/broker.py --secure``: TLS material, SCRAM users, ACLs.

- A CA and one broker certificate (``CN=broker``, SAN ``IP:127.0.0.1``, ``DNS:localhost``)
  made with ``openssl`` under ``<var>/kafka/tls/``. The broker reads them as PEM
  (``ssl.keystore.type=PEM``); clients trust ``ca.pem`` (``KAFKA_SSL_CA_FILE``).
- Clients connect to ``SASL_SSL`` listeners with SCRAM-SHA-512. One user per principal of
  :func:`deploy.access.grants` (the services, ``ops``, the outside producers ``crm`` and
  ``portal``) plus ``admin``, the super user of the tooling and of the brokers among
  themselves. The users are created when the storage is formatted (``--add-scram``); their
  generated passwords are in ``<var>/kafka/credentials.json`` (mode 0600).
- The controller listener takes mutual TLS only: a peer must show a certificate of the local
  CA, and the broker's own (``User:CN=broker``) is the only other super user.
- ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a principal may do only
  what an ACL from :func:`deploy.access.grants` allows — Read/Describe on the topics it reads,
  Write/Describe on those it writes, Read/Describe on its consumer group(s); ops also
  Describe on the services' groups (``selfcare-ops lag``) and DescribeConfigs on every topic
  (``selfcare-ops topics describe``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.access import OPS, grants
from services.common.kafka_config import KafkaSettings

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
BROKER_PRINCIPAL = "User:CN=broker"
CERT_DAYS = 825


@dataclass(frozen=True)
class Security:
    """What a secured node's configuration needs: TLS files and the users' passwords."""

    kafka_dir: Path
    passwords: dict[str, str]

    @property
    def tls_dir(self) -> Path:
        return self.kafka_dir / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.tls_dir / "broker-keystore.pem"

    def server_settings(self, client_port: int, controller_port: int) -> list[tuple[str, object]]:
        admin = self.passwords[ADMIN]
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="{ADMIN}" password="{admin}";')
        return [
            ("listeners", f"SASL_SSL://127.0.0.1:{client_port},CONTROLLER://127.0.0.1:{controller_port}"),
            ("advertised.listeners", f"SASL_SSL://127.0.0.1:{client_port}"),
            ("listener.security.protocol.map", "CONTROLLER:SSL,SASL_SSL:SASL_SSL"),
            ("inter.broker.listener.name", "SASL_SSL"),
            ("sasl.enabled.mechanisms", MECHANISM),
            ("sasl.mechanism.inter.broker.protocol", MECHANISM),
            ("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", jaas),
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", self.keystore),
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.location", self.ca_file),
            ("ssl.enabled.protocols", "TLSv1.3,TLSv1.2"),
            ("listener.name.controller.ssl.client.auth", "required"),
            ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
            ("allow.everyone.if.no.acl.found", "false"),
            ("super.users", f"User:{ADMIN};{BROKER_PRINCIPAL}"),
        ]

    def scram_arguments(self) -> list[str]:
        """``StorageTool format --add-scram`` values, one per user."""
        return [f"{MECHANISM}=[name={user},password={pw}]" for user, pw in self.passwords.items()]


def principals() -> list[str]:
    return [ADMIN, *grants()]


def _openssl(*args: str | Path) -> None:
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed: {proc.stderr.strip()}")


def make_certificates(tls_dir: Path) -> None:
    """A CA and the broker's certificate signed by it (kept if already there)."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    tls_dir.chmod(0o700)
    ca_key, ca, key, csr = (tls_dir / n for n in ("ca.key", "ca.pem", "broker.key", "broker.csr"))
    cert, keystore, ext = tls_dir / "broker.pem", tls_dir / "broker-keystore.pem", tls_dir / "broker.ext"
    if keystore.is_file() and ca.is_file():
        return
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", str(CERT_DAYS), "-subj", "/CN=selfcare-local-kafka-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=broker")
    ext.write_text("basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", str(CERT_DAYS), "-sha256", "-extfile", ext)
    # the PEM keystore: the (unencrypted PKCS#8) key, then the certificate chain
    keystore.write_text(key.read_text() + cert.read_text() + ca.read_text())
    for f in (ca_key, key, keystore):
        f.chmod(0o600)
    csr.unlink()


def credentials_file(kafka_dir: Path) -> Path:
    return kafka_dir / "credentials.json"


def prepare(kafka_dir: Path, bootstrap: str) -> Security:
    """TLS files and passwords for a secured cluster; both are made once and then reused (the
    SCRAM users exist only in storage formatted with these passwords)."""
    make_certificates(kafka_dir / "tls")
    path = credentials_file(kafka_dir)
    if path.is_file():
        data = json.loads(path.read_text())
        passwords = dict(data["passwords"])
    else:
        passwords = {}
    for name in principals():
        passwords.setdefault(name, secrets.token_hex(24))
    security = Security(kafka_dir=kafka_dir, passwords=passwords)
    path.write_text(json.dumps({
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": MECHANISM,
        "ssl_ca_file": str(security.ca_file),
        "passwords": passwords,
    }, indent=2) + "\n")
    path.chmod(0o600)
    return security


def client_env(kafka_dir: Path, principal: str) -> dict[str, str]:
    """The ``KAFKA_*`` environment of ``principal`` on the secured cluster under ``kafka_dir``."""
    data = json.loads(credentials_file(kafka_dir).read_text())
    if principal not in data["passwords"]:
        raise KeyError(f"no user {principal!r}; users: {', '.join(sorted(data['passwords']))}")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": data["bootstrap_servers"],
        "KAFKA_SECURITY_PROTOCOL": data["security_protocol"],
        "KAFKA_SASL_MECHANISM": data["sasl_mechanism"],
        "KAFKA_SASL_USERNAME": principal,
        "KAFKA_SASL_PASSWORD": data["passwords"][principal],
        "KAFKA_SSL_CA_FILE": data["ssl_ca_file"],
    }


def client_settings(kafka_dir: Path, principal: str) -> KafkaSettings:
    return KafkaSettings.from_env(client_env(kafka_dir, principal))


# Kafka's wire codes (org.apache.kafka.common.resource / .acl)
_RESOURCE = {"topic": 2, "group": 3}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"Read": 3, "Write": 4, "Describe": 8, "DescribeConfigs": 10}
_ALLOW = 3


@dataclass(frozen=True)
class Acl:
    principal: str  # "User:<name>"
    resource: str  # "topic" | "group"
    name: str
    pattern: str  # "literal" | "prefixed"
    operation: str  # "Read" | "Write" | "Describe" | "DescribeConfigs"


def acls(prefix: str = "") -> list[Acl]:
    """Every ACL binding that :func:`deploy.access.grants` implies for ``prefix``: Read and
    Describe on the topics a principal reads and on its groups, Write and Describe on the
    topics it writes, Describe alone on the groups it may only watch (ops: the services'),
    DescribeConfigs on the topics whose settings it may read (ops: all). Nothing else: no
    Create, no Delete, no AlterConfigs, no cluster-wide right."""
    out: set[Acl] = set()
    for name, g in grants(prefix=prefix).items():
        user = f"User:{name}"
        for topic in g.read:
            out |= {Acl(user, "topic", topic, "literal", op) for op in ("Read", "Describe")}
        for topic in g.write:
            out |= {Acl(user, "topic", topic, "literal", op) for op in ("Write", "Describe")}
        for group in g.groups:
            out |= {Acl(user, "group", group, "literal", op) for op in ("Read", "Describe")}
        for group in g.group_prefixes:
            out |= {Acl(user, "group", group, "prefixed", op) for op in ("Read", "Describe")}
        for group in g.describe_groups:
            out.add(Acl(user, "group", group, "literal", "Describe"))
        for topic in g.describe_configs:
            out |= {Acl(user, "topic", topic, "literal", op) for op in ("DescribeConfigs", "Describe")}
    return sorted(out, key=lambda a: (a.principal, a.resource, a.name, a.operation))


async def create_acls(admin_kafka: KafkaSettings, prefix: str = "") -> int:
    """Add :func:`acls` to the cluster as ``admin`` (CreateAcls requests; adding an ACL that
    exists changes nothing); returns how many bindings. Raises RuntimeError on any refusal."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    from services.common.kafka_config import aiokafka_kwargs

    wanted = acls(prefix)
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(admin_kafka), request_timeout_ms=30000)
    await admin.start()
    try:
        answers = await asyncio.gather(*(
            admin._send_request(CreateAclsRequest(
                _RESOURCE[a.resource], a.name, _PATTERN[a.pattern], a.principal, "*",
                _OPERATION[a.operation], _ALLOW))
            for a in wanted
        ))
    finally:
        await admin.close()
    errors = [(a, r.creation_responses) for a, r in zip(wanted, answers, strict=True)
              if any(code != 0 for code, _ in r.creation_responses)]
    if errors:
        raise RuntimeError(f"{len(errors)} ACLs refused, e.g. {errors[0]}")
    return len(wanted)


__all__ = ["ADMIN", "OPS", "Security", "acls", "client_env", "client_settings", "create_acls", "prepare"]
