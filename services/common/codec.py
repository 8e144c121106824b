"""Wire codec: events to Kafka records and back.

Producing writes CloudEvents binary-mode headers (``ce_*`` and ``content-type``); consuming
requires none of them (the CRM and the portal may not set them). Decoding errors carry a short
class and a reason built only from field paths and error kinds — never from the input.

A value must be strict JSON (RFC 8259): ``NaN``/``Infinity`` and an object with the same key
twice are refused as ``invalid_json``, even in fields the reader ignores — another reader of
the same record could take the other of two duplicate values.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from schemas.events import Event

E = TypeVar("E", bound=Event)

CE_SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"


class DecodeError(Exception):
    """A record that is not a well-formed event: it belongs on the topic's DLQ."""

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(f"{error_class}: {reason}")
        self.error_class = error_class
        self.reason = reason


@dataclass(frozen=True)
class WireRecord:
    """A record to produce; ``value`` is None only for a tombstone (a dead letter of one)."""

    key: bytes | None
    value: bytes | None  # None: a tombstone (compacted topics drop the key's earlier records)
    headers: list[tuple[str, bytes]]


def tombstone(key: str) -> WireRecord:
    """A null value for ``key``: on a compacted topic, "this key no longer exists"."""
    return WireRecord(key=key.encode("utf-8"), value=None, headers=[])


_SPECVERSION = CE_SPECVERSION.encode()
_CONTENT_TYPE = CONTENT_TYPE.encode()


@functools.cache
def _ce_type(type_name: str) -> bytes:
    return f"selfcare.{type_name}.v1".encode()


@functools.cache
def _utf8(source: str) -> bytes:
    return source.encode()


def encode(event: Event, *, key: str | None, source: str) -> WireRecord:
    """An event as a Kafka record with CloudEvents binary-mode headers."""
    headers = [
        ("ce_specversion", _SPECVERSION),
        ("ce_id", str(event.event_id).encode()),
        ("ce_type", _ce_type(event.type_name)),
        ("ce_source", _utf8(source)),
        ("ce_time", event.occurred_at.isoformat().replace("+00:00", "Z").encode()),
        ("content-type", _CONTENT_TYPE),
    ]
    return WireRecord(
        key=None if key is None else key.encode("utf-8"),
        value=event.model_dump_json(exclude_none=True).encode("utf-8"),
        headers=headers,
    )


def decode(model: type[E], value: bytes | None, *, max_bytes: int) -> E:
    """Parse one record's value as ``model``; raise ``DecodeError`` for anything malformed."""
    if value is None:
        raise DecodeError("empty_record", "record has no value (tombstone)")
    if len(value) > max_bytes:
        raise DecodeError("oversized_record", f"{len(value)} bytes > limit {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", f"not UTF-8 at byte {exc.start}") from None
    try:
        event = model.model_validate_json(value)
        _strict_json(text)
    except ValidationError as exc:
        raise DecodeError(*describe(exc)) from None
    except RecursionError:
        raise DecodeError("invalid_json", "nested too deep") from None
    missing = event.missing_envelope()
    if missing:
        raise DecodeError("invalid_event", "; ".join(f"{name}: missing" for name in missing))
    return event


def not_in_future(max_skew_s: float, now: Callable[[], float]) -> Callable[[Event], None]:
    """A ``BatchRunner`` check: an ``occurred_at`` more than ``max_skew_s`` after ``now()`` (Unix
    seconds) is a malformed record (``invalid_event_time``)."""

    def check(event: Event) -> None:
        if event.occurred_at.timestamp() > now() + max_skew_s:
            raise DecodeError("invalid_event_time",
                              f"occurred_at: more than {max_skew_s:g} s in the future")

    return check


class _NotStrictJson(ValueError):
    pass


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (Cc)


def has_control_character(text: str) -> bool:
    """A control character (a NUL, which PostgreSQL cannot hold as text, among them): text that
    reaches a database or a header must have none."""
    return _CONTROL.search(text) is not None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _NotStrictJson("duplicate key in an object")
    return obj


def _no_constant(name: str) -> Any:
    raise _NotStrictJson(f"{name} is not JSON")


# made once: ``json.loads`` with hooks builds a decoder per call
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def _strict_json(text: str) -> None:
    """Refuses what the model's parser takes but RFC 8259 does not (it runs after the model
    accepted the value, so only well-formed, shallow JSON reaches it)."""
    try:
        _STRICT_DECODER.decode(text)
    except _NotStrictJson as exc:
        raise DecodeError("invalid_json", str(exc)) from None
    except ValueError:  # e.g. an integer longer than int's digit limit
        raise DecodeError("invalid_json", "a value json cannot represent") from None


def describe(exc: ValidationError) -> tuple[str, str]:
    """(error class, reason) of a validation error, without the offending input values."""
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    if any(err["type"] in {"json_invalid", "json_type"} for err in errors):
        return "invalid_json", "not a JSON object"
    parts: list[str] = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['type']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid_event", "; ".join(parts) + more


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None
