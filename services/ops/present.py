"""How ops see records: every field masked, encrypted fields shortened, nothing personal in clear."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from schemas.events import EVENT_TYPES, Event
from schemas.topics import topic_specs
from services.common.logins import InvalidLogin, normalise_mobile
from services.common.masking import mask_digits, mask_email, mask_phone

_EVENT_OF_TOPIC = {s.name: s.event for s in topic_specs()}


def event_type_of(topic: str, prefix: str = "") -> str | None:
    name = topic.removeprefix(prefix)
    if name.endswith(".dlq"):
        return None  # dead letters are not well-formed events by definition
    return _EVENT_OF_TOPIC.get(name)


def mask_login(text: str) -> str:
    try:
        return mask_phone(normalise_mobile(text))
    except InvalidLogin:
        digits = "".join(ch for ch in text if ch.isdigit())
        return mask_digits(digits) if digits else "****"


def mask_name(full_name: str) -> str:
    return " ".join(part[0] + "." for part in full_name.split() if part)


def masked_fields(event: Event) -> dict[str, Any]:
    """The event as a dict that is safe to print."""
    data: dict[str, Any] = json.loads(event.model_dump_json(exclude_none=True))
    name = event.type_name
    if name == "ContractLinked":
        sub = data.get("subscriber", {})
        try:
            sub["mobile"] = mask_phone(normalise_mobile(sub.get("mobile", "")))
        except InvalidLogin:
            sub["mobile"] = "<invalid, hidden>"
        if "email" in sub:
            sub["email"] = mask_email(sub["email"])
        sub["full_name"] = mask_name(sub.get("full_name", ""))
        sub["passport"] = "<hidden>"
        data["personal_account"] = mask_digits(data.get("personal_account", ""))
    elif name == "CodeRequested":
        data["login"] = mask_login(data.get("login", ""))
        if "client_ip" in data:
            data["client_ip"] = _mask_ip(data["client_ip"])
    return _shorten_secrets(data)


def _mask_ip(ip: str) -> str:
    parts = ip.split(".")
    return ".".join([*parts[:2], "x", "x"]) if len(parts) == 4 else ip.split(":")[0] + ":…"


def _shorten_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<encrypted>" if k.endswith("_enc") else _shorten_secrets(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shorten_secrets(v) for v in value]
    return value


def parse(topic: str, value: bytes | None, prefix: str = "") -> Event | None:
    kind = event_type_of(topic, prefix)
    if kind is None or value is None:
        return None
    try:
        return EVENT_TYPES[kind].model_validate_json(value)
    except ValidationError:
        return None


def describe_value(topic: str, value: bytes | None, prefix: str = "") -> dict[str, Any]:
    if value is None:  # an erasure's tombstone (account, code.issued, password.changed, statuses)
        return {"type": "tombstone"}
    event = parse(topic, value, prefix)
    if event is None:
        return {"unparsed": f"<{len(value or b'')} bytes, not shown>"}
    return {"type": event.type_name, **masked_fields(event)}
