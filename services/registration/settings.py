"""Registration's settings: the common ones (DESIGN.md names) read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from services.common.settings import CommonSettings, ConfigError, int_setting


@dataclass(frozen=True, kw_only=True)
class RegistrationSettings(CommonSettings):
    """``REGISTRATION_DATABASE_URL`` (default ``sqlite:///var/registration.db``),
    ``REGISTRATION_WEB_PORT`` (default 6101), ``REGISTRATION_PREPARE_PROCESSES`` (processes
    that validate and protect links; default 1 with two or more cores, else 0: a thread of the
    worker itself), and the common ones."""

    service: ClassVar[str] = "registration"
    default_web_port: ClassVar[int] = 6101
    # bulk loads from the CRM: bigger batches, fewer transactions
    default_batch_within_ms: ClassVar[int] = 100

    prepare_processes: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistrationSettings:
        env = os.environ if env is None else env
        default = 1 if (os.cpu_count() or 1) >= 2 else 0
        processes = int_setting(env, "REGISTRATION_PREPARE_PROCESSES", default)
        if processes < 0:
            raise ConfigError("REGISTRATION_PREPARE_PROCESSES must be 0 or more")
        return cls(**cls.common_from_env(env), prepare_processes=processes)
