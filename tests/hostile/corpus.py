"""Malformed records for every inbound topic, each with its expected fate.

A case names the topic, the key and value bytes, and the fate: ``dlq:<dlq_error_class>`` (the
record goes to ``<topic>.dlq`` unchanged, with that class in its headers) or ``answer:<reason>``
(a well-formed event the contract answers: ``ContractRejected`` or ``CodeRejected`` with that
reason, or ``answer:processed`` for a record that is simply processed), or ``erasure`` (a
tombstone of the compacted account topic: its consumers erase what they keep of that key), or
``ignored`` (a tombstone on a topic an erasure tombstones: accepted, nothing done, no dead
letter).

Decisions recorded here:
- full-width (``０-９``) and Arabic-Indic (``٠-٩``) digits are never normalised to ASCII digits
  (``services/common/logins.py``): a login typed with them is no login (``invalid_event`` on
  ``CodeRequested``, whose ``login`` allows ASCII digits only), a CRM mobile or personal account
  with them is ``invalid_mobile`` / ``invalid_personal_account``;
- a value that is not strict JSON (NaN, Infinity, a duplicate key) is ``invalid_json``;
- a time without an offset, or without a UTC datetime, is ``invalid_event``.

Every value carries ``MARKER`` (or a phone number from ``SECRET_DIGITS``) where it holds text,
so a test can prove that no payload value reaches a DLQ header or a log line.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REQUESTED,
    CONTRACT_ERASED,
    CONTRACT_LINKED,
    CONTRACT_TERMINATED,
    PASSWORD_CHANGED,
    REQUESTS_BY_LOGIN,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
MAX_RECORD_BYTES = 65536  # the services' default MAX_RECORD_BYTES
MARKER = "Zq9MARKERxv"  # a payload value that must never be seen in a header or a log
SECRET_DIGITS = "9167770099"  # a phone number inside bad records

INBOUND_TOPICS = (CONTRACT_LINKED, CONTRACT_TERMINATED, CONTRACT_ERASED, ACCOUNT_CHANGED,
                  CODE_REQUESTED, REQUESTS_BY_LOGIN, CODE_ISSUED, PASSWORD_CHANGED)

# inbound topics that an erasure tombstones (compacted as well as deleted): their consumer (the
# notifier) takes a tombstone as the erasure of its key's deliveries again; a key with none (every
# key of the corpus) changes nothing, and nothing goes to the DLQ
TOMBSTONED_AT_ERASURE = (CODE_ISSUED, PASSWORD_CHANGED)


@dataclass(frozen=True)
class Case:
    name: str
    topic: str
    value: bytes | None
    fate: str
    event_id: str | None = None  # for an ``answer:`` case: the event the answer names
    key: bytes | None = field(default=None)

    @property
    def record_key(self) -> bytes:
        """Every case has a key of its own, so its dead letter can be found by it."""
        return self.key if self.key is not None else f"hostile/{self.name}".encode()


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def base(topic: str) -> dict[str, Any]:
    """A well-formed event of ``topic`` with a fresh ``event_id`` and text fields marked."""
    if topic == CONTRACT_LINKED:
        doc = _example("ContractLinked.design")
        doc["contract_number"] = "HX-" + uuid.uuid4().hex[:10]
        doc["operator_id"] = MARKER
        doc["subscriber"]["full_name"] = MARKER
    elif topic == CONTRACT_TERMINATED:
        doc = _example("ContractTerminated.basic")
        doc["contract_number"] = "HX-" + uuid.uuid4().hex[:10]
    elif topic == ACCOUNT_CHANGED:
        doc = _example("AccountChanged.interactive")
        doc["contract_number"] = "HX-" + uuid.uuid4().hex[:10]
    elif topic == CONTRACT_ERASED:
        doc = _example("ContractErased.basic")
        doc["contract_number"] = "HX-" + uuid.uuid4().hex[:10]
    elif topic == CODE_ISSUED:
        doc = _example("CodeIssued.sms")
        doc["code_id"] = str(uuid.uuid4())
    elif topic == PASSWORD_CHANGED:
        doc = _example("PasswordChanged.two-contacts")
        doc["code_id"] = str(uuid.uuid4())
    else:
        doc = _example("CodeRequested.design")
        doc["login"] = "+7 " + SECRET_DIGITS
    doc["event_id"] = str(uuid.uuid4())
    return copy.deepcopy(doc)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


def _drop(doc: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    del node[last]
    return doc


def _tombstone_fate(topic: str) -> str:
    """On the compacted account topic a tombstone is an erasure (DESIGN.md); on the topics that
    recovery tombstones at an erasure it is accepted (an erasure of deliveries the corpus's keys do
not have: "ignored"); elsewhere it is no event."""
    if topic == ACCOUNT_CHANGED:
        return "erasure"
    if topic in TOMBSTONED_AT_ERASURE:
        return "ignored"
    return "dlq:empty_record"


def _generic(topic: str) -> list[tuple[str, bytes | None, str]]:
    """Malformed the same way on any topic: (kind, value, fate)."""
    good = dumps(base(topic))
    inner = good[:-1]
    deep = b"[" * 10_000 + b"]" * 10_000
    return [
        ("tombstone", None, _tombstone_fate(topic)),
        ("empty-value", b"", "dlq:invalid_json"),
        ("not-json", f"contract {MARKER} +7{SECRET_DIGITS}".encode(), "dlq:invalid_json"),
        ("truncated-json", good[: len(good) // 2], "dlq:invalid_json"),
        ("invalid-utf8", inner + b', "x": "\xff\xfe' + MARKER.encode() + b'"}', "dlq:invalid_utf8"),
        ("cesu8-surrogate-bytes", inner + b', "x": "\xed\xa0\x80"}', "dlq:invalid_utf8"),
        ("escaped-lone-surrogate", inner + b', "x": "\\ud800' + MARKER.encode() + b'"}', "dlq:invalid_json"),
        ("utf8-bom", b"\xef\xbb\xbf" + good, "dlq:invalid_json"),
        ("utf16-value", good.decode().encode("utf-16"), "dlq:invalid_utf8"),
        ("json-array", b"[" + good + b"]", "dlq:invalid_event"),
        ("json-string", json.dumps(MARKER).encode(), "dlq:invalid_event"),
        ("json-null", b"null", "dlq:invalid_event"),
        ("json-number", b"1e999", "dlq:invalid_event"),
        ("empty-object", b"{}", "dlq:invalid_event"),
        ("nested-10000-deep", deep, "dlq:invalid_json"),
        ("nested-10000-deep-in-field", inner + b', "x": ' + deep + b"}", "dlq:invalid_json"),
        ("nan-in-extra-field", inner + b', "x": NaN}', "dlq:invalid_json"),
        ("infinity-in-extra-field", inner + b', "x": -Infinity}', "dlq:invalid_json"),
        ("huge-integer", inner + b', "x": 1' + b"0" * 5000 + b"}", "dlq:invalid_json"),
        ("duplicate-event-id", inner + b', "event_id": "' + str(uuid.uuid4()).encode() + b'"}',
         "dlq:invalid_json"),
        ("two-objects", good + good, "dlq:invalid_json"),
        ("trailing-garbage", good + b" " + MARKER.encode(), "dlq:invalid_json"),
        ("oversized", inner + b', "pad": "' + (MARKER * (MAX_RECORD_BYTES // len(MARKER) + 1)).encode()
         + b'"}', "dlq:oversized_record"),
        ("missing-event-id", dumps(_drop(base(topic), "event_id")), "dlq:invalid_event"),
        ("missing-occurred-at", dumps(_drop(base(topic), "occurred_at")), "dlq:invalid_event"),
        ("event-id-not-uuid", dumps(_set(base(topic), "event_id", MARKER)), "dlq:invalid_event"),
        ("event-id-braced", dumps(_set(base(topic), "event_id", "{" + str(uuid.uuid4()) + "}")),
         "dlq:invalid_event"),
        ("event-id-number", dumps(_set(base(topic), "event_id", 12345)), "dlq:invalid_event"),
        ("occurred-at-naive", dumps(_set(base(topic), "occurred_at", "2026-11-24T09:30:00")),
         "dlq:invalid_event"),
        ("occurred-at-year-0", dumps(_set(base(topic), "occurred_at", "0000-01-01T00:00:00Z")),
         "dlq:invalid_event"),
        ("occurred-at-beyond-9999-in-utc",
         dumps(_set(base(topic), "occurred_at", "9999-12-31T23:59:59-01:00")), "dlq:invalid_event"),
        ("occurred-at-before-year-1-in-utc",
         dumps(_set(base(topic), "occurred_at", "0001-01-01T00:00:00+01:00")), "dlq:invalid_event"),
        ("occurred-at-number", dumps(_set(base(topic), "occurred_at", 1764000000)), "dlq:invalid_event"),
    ]


Mutation = Callable[[dict[str, Any]], dict[str, Any]]


def _specific() -> list[tuple[str, str, Mutation, str]]:
    """Field by field, per topic: (topic, kind, mutation of a good event, fate)."""
    s, d = _set, _drop
    L, T, A, R, B, N = (CONTRACT_LINKED, CONTRACT_TERMINATED, ACCOUNT_CHANGED, CODE_REQUESTED,
                        REQUESTS_BY_LOGIN, CODE_ISSUED)
    E, P = CONTRACT_ERASED, PASSWORD_CHANGED
    inv = "dlq:invalid_event"
    return [
        (L, "missing-contract-number", lambda x: d(x, "contract_number"), inv),
        (L, "missing-personal-account", lambda x: d(x, "personal_account"), inv),
        (L, "missing-tv-product", lambda x: d(x, "tv_product"), inv),
        (L, "missing-subscriber", lambda x: d(x, "subscriber"), inv),
        (L, "missing-full-name", lambda x: d(x, "subscriber.full_name"), inv),
        (L, "missing-mobile", lambda x: d(x, "subscriber.mobile"), inv),
        (L, "missing-passport", lambda x: d(x, "subscriber.passport"), inv),
        (L, "missing-passport-number", lambda x: d(x, "subscriber.passport.number"), inv),
        (L, "contract-number-number", lambda x: s(x, "contract_number", 771234567), inv),
        (L, "contract-number-control-chars", lambda x: s(x, "contract_number", "77\x00\n1"), inv),
        (L, "personal-account-number", lambda x: s(x, "personal_account", 123456789012), inv),
        (L, "unknown-tv-product", lambda x: s(x, "tv_product", "cable"), inv),
        (L, "tv-product-wrong-case", lambda x: s(x, "tv_product", "Interactive"), inv),
        (L, "subscriber-string", lambda x: s(x, "subscriber", MARKER), inv),
        (L, "mobile-number-type", lambda x: s(x, "subscriber.mobile", 79167770099), inv),
        (L, "mobile-active-string", lambda x: s(x, "mobile_active", "true"), inv),
        (L, "mobile-active-null", lambda x: s(x, "mobile_active", None), inv),
        (L, "full-name-50k", lambda x: s(x, "subscriber.full_name", MARKER * 5000), inv),
        (L, "passport-series-list", lambda x: s(x, "subscriber.passport.series", ["45", "10"]), inv),
        (L, "mobile-full-width-digits", lambda x: s(x, "subscriber.mobile", "+７ ９１６ ７７７-００-９９"),
         "answer:invalid_mobile"),
        (L, "mobile-arabic-indic-digits", lambda x: s(x, "subscriber.mobile", "+٧ ٩١٦ ٧٧٧-٠٠-٩٩"),
         "answer:invalid_mobile"),
        (L, "mobile-no-break-space", lambda x: s(x, "subscriber.mobile", "+7\u00a0916\u00a07770099"),
         "answer:invalid_mobile"),
        (L, "personal-account-full-width", lambda x: s(x, "personal_account", "１２３４５６７８９０"),
         "answer:invalid_personal_account"),
        (L, "personal-account-arabic-indic", lambda x: s(x, "personal_account", "١٢٣٤٥٦٧٨٩٠"),
         "answer:invalid_personal_account"),
        (L, "email-without-at", lambda x: s(x, "subscriber.email", MARKER), "answer:invalid_email"),
        (T, "missing-contract-number", lambda x: d(x, "contract_number"), inv),
        (T, "contract-number-object", lambda x: s(x, "contract_number", {"n": "77-1"}), inv),
        (T, "contract-number-33-chars", lambda x: s(x, "contract_number", "7" * 33), inv),
        (T, "contract-number-blank", lambda x: s(x, "contract_number", " "), inv),
        (T, "unknown-contract", lambda x: x, "answer:unknown_contract"),
        (T, "extra-field-60k", lambda x: s(x, "note", MARKER * 5000), "answer:unknown_contract"),
        (A, "unknown-status", lambda x: s(x, "status", "deleted"), inv),
        (A, "version-zero", lambda x: s(x, "version", 0), inv),
        (A, "version-string", lambda x: s(x, "version", "3"), inv),
        (A, "version-float", lambda x: s(x, "version", 3.0), inv),
        (A, "version-bool", lambda x: s(x, "version", True), inv),
        (A, "account-id-not-uuid", lambda x: s(x, "account_id", MARKER), inv),
        (A, "login-key-uppercase", lambda x: s(x, "login_keys.mobile", "AB" * 32), inv),
        (A, "mobile-in-clear", lambda x: s(x, "contacts.mobile_enc", "+7" + SECRET_DIGITS), inv),
        (A, "channels-sms-string", lambda x: s(x, "channels.sms", "yes"), inv),
        (A, "missing-linked-at", lambda x: d(x, "linked_at"), inv),
        (A, "linked-at-naive", lambda x: s(x, "linked_at", "2026-11-24T09:30:00"), inv),
        (R, "login-full-width-digits", lambda x: s(x, "login", "+７ ９１６ ７７７-００-９９"), inv),
        (R, "login-arabic-indic-digits", lambda x: s(x, "login", "٨ ٩١٦ ٧٧٧ ٠٠ ٩٩"), inv),
        (R, "login-letters", lambda x: s(x, "login", MARKER), inv),
        (R, "login-number-type", lambda x: s(x, "login", 89167770099), inv),
        (R, "login-65-chars", lambda x: s(x, "login", "1" * 65), inv),
        (R, "login-newline", lambda x: s(x, "login", "+7" + SECRET_DIGITS + "\n"), inv),
        (R, "unknown-channel", lambda x: s(x, "channel", "push"), inv),
        (R, "missing-channel", lambda x: d(x, "channel"), inv),
        (R, "unknown-locale", lambda x: s(x, "locale", "de"), inv),
        (R, "client-ip-not-an-address", lambda x: s(x, "client_ip", "999.1.1." + MARKER), inv),
        (R, "login-neither-mobile-nor-account", lambda x: s(x, "login", "12345"),
         "answer:invalid_request"),
        (B, "unknown-channel", lambda x: s(x, "channel", "pigeon"), inv),
        (B, "login-full-width-digits", lambda x: s(x, "login", "８９１６７７７００９９"), inv),
        (B, "login-neither-mobile-nor-account", lambda x: s(x, "login", "(12) 34"),
         "answer:invalid_request"),
        (N, "password-in-clear", lambda x: s(x, "password_enc", MARKER), inv),
        (N, "missing-destination-enc", lambda x: d(x, "destination_enc"), inv),
        (N, "unknown-channel", lambda x: s(x, "channel", "fax"), inv),
        (N, "expires-at-naive", lambda x: s(x, "expires_at", "2026-11-24T10:30:00"), inv),
        (N, "code-id-not-uuid", lambda x: s(x, "code_id", MARKER), inv),
        (E, "missing-contract-number", lambda x: d(x, "contract_number"), inv),
        (E, "contract-number-list", lambda x: s(x, "contract_number", ["77", MARKER]), inv),
        (P, "no-contacts", lambda x: s(x, "contacts", []), inv),
        (P, "five-contacts", lambda x: s(x, "contacts", x["contacts"] * 3), inv),
        (P, "contact-in-clear", lambda x: s(x, "contacts", [{**x["contacts"][0],
                                                             "destination_enc": "+7" + SECRET_DIGITS}]), inv),
        (P, "contact-unknown-channel", lambda x: s(x, "contacts", [{**x["contacts"][0], "channel": "fax"}]),
         inv),
        (P, "account-id-not-uuid", lambda x: s(x, "account_id", MARKER), inv),
        (P, "missing-code-id", lambda x: d(x, "code_id"), inv),
    ]


def corpus() -> list[Case]:
    """Every case, generic ones on every inbound topic and field cases per topic."""
    cases: list[Case] = []
    for topic in INBOUND_TOPICS:
        for kind, value, fate in _generic(topic):
            cases.append(Case(name=f"{topic}/{kind}", topic=topic, value=value, fate=fate))
    for topic, kind, mutate, fate in _specific():
        doc = mutate(base(topic))
        cases.append(Case(name=f"{topic}/{kind}", topic=topic, value=dumps(doc), fate=fate,
                          event_id=str(doc.get("event_id"))))
    far = _set(base(CONTRACT_LINKED), "occurred_at", "2099-01-01T00:00:00Z")
    cases.append(Case(
        name=f"{CONTRACT_LINKED}/occurred-at-far-future", topic=CONTRACT_LINKED, value=dumps(far),
        fate="answer:invalid_event_time", event_id=far["event_id"],
    ))
    return cases


def kinds(cases: list[Case]) -> set[str]:
    return {case.name.split("/", 1)[1] for case in cases}
