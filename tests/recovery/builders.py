"""Records and commands as recovery's tests build them (no database)."""

from __future__ import annotations

import json
from typing import Any

from schemas.events import AccountChanged, CodeRequested
from services.common.consumer_loop import Inbound, RawRecord
from services.common.crypto import Keyring, contact_aad
from services.recovery.domain.model import Policy, Window

POLICY = Policy(login_cooldown=Window(max_events=1, window_s=60),
                per_destination=Window(max_events=3, window_s=600),
                per_ip=Window(max_events=4, window_s=300), lockout_failures=3, lockout_s=900)


def inbound(event: Any, topic: str = "t") -> Inbound[Any]:
    raw = RawRecord(topic=topic, partition=0, offset=0, key=None,
                    value=event.model_dump_json().encode(), headers=[])
    return Inbound(event=event, raw=raw)


def mobile_of(keyring: Keyring, acc: AccountChanged) -> str:
    return keyring.decrypt(acc.contacts.mobile_enc, aad=contact_aad(str(acc.account_id), "mobile"))


def request(login: str, channel: str = "sms", **extra: Any) -> CodeRequested:
    return CodeRequested.model_validate_json(json.dumps({"login": login, "channel": channel,
                                                         **extra}))
