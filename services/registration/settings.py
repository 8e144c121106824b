"""Registration's settings: the common ones (DESIGN.md names) read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from services.common.settings import CommonSettings, bool_setting, int_setting


@dataclass(frozen=True, kw_only=True)
class RegistrationSettings(CommonSettings):
    """``REGISTRATION_DATABASE_URL`` (default ``sqlite:///var/registration.db``),
    ``REGISTRATION_WEB_PORT`` (default 6101), ``REGISTRATION_LINK_PROCESS`` (links validated,
    protected and written by a process of their own; default true with two or more cores, else
    false: the worker's database thread), and the common ones."""

    service: ClassVar[str] = "registration"
    key_purposes: ClassVar[frozenset[str]] = frozenset({"contact"})
    default_web_port: ClassVar[int] = 6101
    # bulk loads from the CRM: bigger batches, fewer transactions
    default_batch_within_ms: ClassVar[int] = 100

    link_process: bool = False
    identify_max: int = 5
    identify_window_s: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistrationSettings:
        env = os.environ if env is None else env
        link_process = bool_setting(env, "REGISTRATION_LINK_PROCESS", (os.cpu_count() or 1) >= 2)
        return cls(**cls.common_from_env(env), link_process=link_process,
                   identify_max=int_setting(env, "SUPPORT_IDENTIFY_MAX", 5),
                   identify_window_s=int_setting(env, "SUPPORT_IDENTIFY_WINDOW_S", 3600))
