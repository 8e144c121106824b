"""Start a service as a real faust worker process: the launch helpers live in ``deploy.launch``
(the benchmarks use them too); the tests import them from here."""

from __future__ import annotations

from deploy.launch import (
    ROOT,
    TEST_HASH_PEPPER,
    TEST_RECOVERY_API_TOKEN,
    TEST_SECRET_KEYS,
    TEST_SMS_STATUS_TOKEN,
    Worker,
    free_port,
    service_env,
)

__all__ = [
    "ROOT", "TEST_HASH_PEPPER", "TEST_RECOVERY_API_TOKEN", "TEST_SECRET_KEYS",
    "TEST_SMS_STATUS_TOKEN", "Worker", "free_port", "service_env",
]
