"""Registration's settings: the common ones (DESIGN.md names) read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from services.common.settings import CommonSettings


@dataclass(frozen=True, kw_only=True)
class RegistrationSettings(CommonSettings):
    """``REGISTRATION_DATABASE_URL`` (default ``sqlite:///var/registration.db``),
    ``REGISTRATION_WEB_PORT`` (default 6101), and the common ones."""

    service: ClassVar[str] = "registration"
    default_web_port: ClassVar[int] = 6101
    # bulk loads from the CRM: bigger batches, fewer transactions
    default_batch_within_ms: ClassVar[int] = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistrationSettings:
        return cls(**cls.common_from_env(os.environ if env is None else env))
