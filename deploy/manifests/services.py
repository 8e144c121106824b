"""What the generator knows about each service: port, secrets, settings and its size.

Sizes come from the benchmark figures of ``docs/performance.md`` (one worker on a 2-core machine;
``docs/scaling.md`` explains the arithmetic):

- registration: 0.23–0.36 ms of CPU per link over the worker and its linking process; at about
  3,700–4,000 links/s the worker used ~81 % of a core and the linking process ~60 %; peak RSS
  ≤ 313 MB over both processes. Request 1 CPU / 384 Mi, limit 2 CPU / 768 Mi.
- recovery: argon2id (m = 19 MiB, t = 2) costs 20–28 ms of CPU per hash (95–101 hashes/s on two
  cores, 64–73 on a loaded day); a code is one hash and a login attempt two, so a worker with one
  core issues ~30 codes/s or checks ~15 logins/s. Each hashing thread holds 19 MiB while it
  hashes. Request 1 CPU / 384 Mi (145 Mi idle RSS + 2 threads × 19 MiB + headroom), limit 2 CPU.
- notifier: 0.48–0.81 ms of CPU per send, one process bounded by one core (~1,200 sends/s at the
  higher cost). Request 1 CPU / 256 Mi, limit 1 CPU (more CPU does not help a process bound by
  the GIL).

Replicas: never more than the partitions of the topics a service consumes (4): a fifth
worker of a group gets no partition and idles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.access import group_of
from schemas.topics import topic_specs


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def render(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


# the readiness path that answers 200 only while the worker holds partitions
# (services/common/app.py); "/readyz/http" answers without them
READY_WITH_PARTITIONS = "/readyz"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    replicas: int
    resources: Resources
    secrets: tuple[str, ...]  # keys of the secret selfcare-<name>
    # keys the Secret may lack (secretKeyRef optional); OPS_API_TOKEN for every service: without
    # it a service serves no ops route (404), so ops access is opt-in per Secret (docs/scaling.md)
    optional_secrets: tuple[str, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)  # ConfigMap selfcare-<name>
    # what the readiness probe asks: a service that takes HTTP from outside (the portal's API,
    # the gateway's delivery reports) is ready to serve it without partitions ("/readyz/http");
    # "/readyz" (READY_WITH_PARTITIONS) also waits for partitions, which a standby worker or a
    # rebalance lacks
    ready_path: str = READY_WITH_PARTITIONS

    @property
    def ready_needs_partitions(self) -> bool:
        return self.ready_path == READY_WITH_PARTITIONS

    @property
    def group(self) -> str:
        return group_of(self.name)

    @property
    def secret_name(self) -> str:
        return f"selfcare-{self.name}"


SERVICE_SPECS: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="registration", port=6101, replicas=2,
        resources=Resources("1", "384Mi", "2", "768Mi"),
        secrets=("REGISTRATION_DATABASE_URL", "CONTACT_KEYS", "HASH_PEPPER"),
        optional_secrets=("OPS_API_TOKEN",),
        settings={"MAX_CLOCK_SKEW_S": "300", "REGISTRATION_LINK_PROCESS": "true"},
    ),
    ServiceSpec(
        name="recovery", port=6102, replicas=2, ready_path="/readyz/http",
        resources=Resources("1", "384Mi", "2", "768Mi"),
        secrets=("RECOVERY_DATABASE_URL", "CONTACT_KEYS", "DELIVERY_KEYS", "HASH_PEPPER",
                 "RECOVERY_API_TOKEN"),
        optional_secrets=("OPS_API_TOKEN",),
        settings={
            "RECOVERY_HASH_WORKERS": "2",
            "TRUSTED_PROXIES": "",
            "SMS_ALLOWED_PREFIXES": "+79",
            "LIMIT_ACCOUNT_DAILY_MAX": "10",
            "SMS_HOURLY_BUDGET": "10000",
            "LOGIN_LOCKOUT_FAILURES": "5",
            "LOGIN_LOCKOUT_S": "900",
            "LOGIN_GLOBAL_LOCKOUT_FAILURES": "100",
            "MAX_CLOCK_SKEW_S": "300",
        },
    ),
    ServiceSpec(
        name="notifier", port=6103, replicas=2, ready_path="/readyz/http",
        resources=Resources("1", "256Mi", "1", "512Mi"),
        # no HASH_PEPPER: the notifier hashes no login, and with the pepper the login keys of the
        # AccountChanged records its principal may read would give up the mobile numbers
        secrets=("NOTIFIER_DATABASE_URL", "DELIVERY_KEYS", "SMS_GATEWAY_TOKEN", "SMS_STATUS_TOKEN"),
        # the relay's login, both or neither (the notifier refuses one without the other)
        optional_secrets=("SMS_FALLBACK_TOKEN", "SMTP_USERNAME", "SMTP_PASSWORD", "OPS_API_TOKEN"),
        settings={
            "SMS_GATEWAY_URL": "https://sms-gateway.invalid/api/v1/messages",
            "SMS_FALLBACK_URL": "",
            "SMTP_HOST": "smtp.invalid",
            "SMTP_PORT": "587",
            "SMTP_STARTTLS": "true",
            "MAIL_FROM": "selfcare@operator.invalid",
        },
    ),
)

# settings every service reads (ConfigMap selfcare-common)
COMMON_SETTINGS = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SSL_CA_FILE": "/etc/selfcare/kafka-ca/ca.crt",
    "WEB_BIND_HOST": "0.0.0.0",  # noqa: S104 - in a pod, the probes and Prometheus come from outside
    "SELFCARE_VAR_DIR": "/var/lib/selfcare",
    "LOG_LEVEL": "INFO",
    "SUPPORT_PHONE": "8 800 250-08-90",
    "CODE_TTL_S": "3600",
    "RETENTION_DAYS": "30",
}


def max_replicas(service: str) -> int:
    """The fewest partitions among the topics ``service`` consumes: more workers would idle."""
    return min(s.partitions for s in topic_specs() if service in s.consumers)
