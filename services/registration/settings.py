"""Registration's settings: the common ones (DESIGN.md names) and its own, from the environment."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import Field

from services.common.env_settings import EnvBool, EnvInt, EnvSettings, PositiveInt
from services.common.settings import CommonSettings, batch_linger, database_url, web_port
from services.common.tokens import ReadTimeoutSettings


class IdentifySettings(EnvSettings):
    """The support desk's identify look-ups: at most ``SUPPORT_IDENTIFY_MAX`` per account in
    ``SUPPORT_IDENTIFY_WINDOW_S``; both positive (0 or less would turn the limit off)."""

    identify_max: PositiveInt = Field(default=5, validation_alias="SUPPORT_IDENTIFY_MAX")
    identify_window_s: PositiveInt = Field(default=3600, validation_alias="SUPPORT_IDENTIFY_WINDOW_S")


class RegistrationSettings(CommonSettings, IdentifySettings, ReadTimeoutSettings):
    """``REGISTRATION_DATABASE_URL`` (default ``sqlite:///var/registration.db``),
    ``REGISTRATION_WEB_PORT`` (default 6101), ``REGISTRATION_LINK_PROCESS`` (links validated,
    protected and written by a process of their own; default true with two or more cores, else
    false: the worker's database thread), ``HTTP_READ_TIMEOUT_S`` (its web port serves support's
    ops routes), and the common ones."""

    service: ClassVar[str] = "registration"
    key_purposes: ClassVar[frozenset[str]] = frozenset({"contact"})

    web_port: EnvInt = web_port("registration", 6101)
    database_url: str = database_url("registration")
    # bulk loads from the CRM: bigger batches, fewer transactions
    batch_within_ms: EnvInt = batch_linger(100)
    link_process: EnvBool = Field(default_factory=lambda: (os.cpu_count() or 1) >= 2,
                                  validation_alias="REGISTRATION_LINK_PROCESS")
