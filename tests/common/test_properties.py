"""Property-based tests (hypothesis) of every decoder and of login normalisation."""

from __future__ import annotations

import json
import re
import string
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import EVENT_TYPES, Event
from services.common.codec import DecodeError, decode, encode
from services.common.logins import (
    InvalidLogin,
    mobile_reading,
    normalise_mobile,
    normalise_personal_account,
)
from services.recovery.domain.model import route_login
from services.registration.entrypoints.agents import InboundContractLinked, InboundContractTerminated

DECODED: list[type[Event]] = [*EVENT_TYPES.values(), InboundContractLinked, InboundContractTerminated]
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def decodes_or_dead_letters(model: type[Event], value: bytes | None) -> None:
    try:
        decode(model, value, max_bytes=4096)
    except DecodeError as exc:
        assert exc.error_class in {"empty_record", "oversized_record", "invalid_utf8",
                                   "invalid_json", "invalid_event"}


@FAST
@given(model=st.sampled_from(DECODED), value=st.none() | st.binary(max_size=5000))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(model: type[Event], value: bytes | None) -> None:
    decodes_or_dead_letters(model, value)


@FAST
@given(model=st.sampled_from(DECODED), value=json_values)
def test_arbitrary_json_never_raises_anything_but_decode_error(model: type[Event], value: Any) -> None:
    decodes_or_dead_letters(model, json.dumps(value).encode())


@FAST
@given(data=st.data())
def test_arbitrary_values_in_every_field_never_raise_anything_but_decode_error(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from(DECODED))
    fields = list(model.model_fields)
    doc = {name: data.draw(json_values | st.text(), label=name)
           for name in data.draw(st.lists(st.sampled_from(fields), unique=True))}
    decodes_or_dead_letters(model, json.dumps(doc).encode())


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "schemas" / "examples").glob("*.json"))
INBOUND = {"ContractLinked": InboundContractLinked, "ContractTerminated": InboundContractTerminated}
times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.just(UTC))


@FAST
@given(path=st.sampled_from(EXAMPLES), inbound=st.booleans(), event_id=st.uuids(), occurred_at=times,
       extra=st.dictionaries(st.text(min_size=1, max_size=10).map(lambda k: "x_" + k), json_values,
                             max_size=3))
def test_valid_events_round_trip_through_encode_and_decode(
    path: Path, inbound: bool, event_id: uuid.UUID, occurred_at: datetime, extra: dict[str, Any]
) -> None:
    name = path.name.split(".", 1)[0]
    model = INBOUND.get(name, EVENT_TYPES[name]) if inbound else EVENT_TYPES[name]
    doc = {**json.loads(path.read_text(encoding="utf-8")), **extra, "event_id": str(event_id),
           "occurred_at": occurred_at.isoformat().replace("+00:00", "Z")}
    event = decode(model, json.dumps(doc, ensure_ascii=False).encode(), max_bytes=1_000_000)
    assert (event.event_id, event.occurred_at) == (event_id, occurred_at)
    wire = encode(event, key="k", source="/test")
    assert decode(model, wire.value, max_bytes=1_000_000) == event
    assert dict(wire.headers)["ce_id"] == str(event_id).encode()


# --- logins ------------------------------------------------------------------------------------

ru_mobiles = st.tuples(st.sampled_from(["9"]), st.integers(0, 99), st.integers(0, 9_999_999)).map(
    lambda t: f"+7{t[0]}{t[1]:02d}{t[2]:07d}")


def typed_forms(e164: str) -> list[str]:
    n = e164[2:]  # ten digits
    return [
        e164, "8" + n, "7" + n, n, f"+7 {n[:3]} {n[3:6]}-{n[6:8]}-{n[8:]}",
        f"8 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}", f"+7({n[:3]}){n[3:]}", f" +7 {n} ",
        f"8-{n[:3]}-{n[3:6]}-{n[6:8]}-{n[8:]}", f"7 {n[:3]} {n[3:6]} {n[6:8]} {n[8:]}",
        f"8.{n[:3]}.{n[3:6]}.{n[6:]}",
    ]


@FAST
@given(mobile=ru_mobiles)
def test_every_typed_form_of_a_russian_mobile_normalises_to_the_same_e164(mobile: str) -> None:
    try:
        expected = normalise_mobile(mobile)
    except InvalidLogin:
        expected = None
    if expected is None:  # an unallocated range is refused in every form alike
        for form in typed_forms(mobile):
            try:
                normalise_mobile(form)
            except InvalidLogin:
                continue
            raise AssertionError(f"{form!r} taken, {mobile!r} refused")
        return
    assert expected == mobile
    assert {normalise_mobile(form) for form in typed_forms(mobile)} == {mobile}


FOREIGN_DIGITS = {"０": "0", "٠": "0", "۰": "0", "०": "0", "𝟎": "0"}


@FAST
@given(mobile=ru_mobiles, zero=st.sampled_from(sorted(FOREIGN_DIGITS)), data=st.data())
def test_digits_of_other_scripts_are_never_taken_for_ascii_digits(mobile: str, zero: str, data: st.DataObject) -> None:
    """A login typed with full-width, Arabic-Indic or other digits is refused, never mapped to
    the ASCII login it looks like (which could be another subscriber's)."""
    form = data.draw(st.sampled_from(typed_forms(mobile)))
    foreign = "".join(chr(ord(zero) + int(c)) if c.isdigit() and data.draw(st.booleans()) else c
                      for c in form)
    if foreign == form:  # at least one digit of the other script
        last = max(i for i, c in enumerate(form) if c.isdigit())
        foreign = form[:last] + chr(ord(zero) + int(form[last])) + form[last + 1:]
    for normalise in (normalise_mobile, normalise_personal_account):
        try:
            normalise(foreign)
        except InvalidLogin:
            continue
        raise AssertionError(f"{normalise.__name__} took {foreign!r}")


@FAST
@given(digits=st.text(string.digits, min_size=6, max_size=20),
       cuts=st.lists(st.sampled_from([" ", "  ", "\t", "\u00a0"]), max_size=6), data=st.data())
def test_a_personal_account_with_spaces_normalises_to_its_digits(digits: str, cuts: list[str],
                                                                 data: st.DataObject) -> None:
    text = digits
    for sep in cuts:
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + sep + text[at:]
    assert normalise_personal_account(text) == digits
    assert normalise_personal_account(normalise_personal_account(text)) == digits


@FAST
@given(text=st.text(max_size=80))
def test_arbitrary_text_is_a_login_or_invalid_login_and_normalising_is_idempotent(text: str) -> None:
    for normalise, shape in ((normalise_mobile, r"\+7[0-9]{10}"),
                             (normalise_personal_account, r"[0-9]{6,20}")):
        try:
            once = normalise(text)
        except InvalidLogin:
            continue
        assert re.fullmatch(shape, once, re.ASCII), once
        assert normalise(once) == once


SPACES = [" ", "\u00a0", "\t", "\u2009", "\u3000", "\n"]


def _reaches(text: str) -> set[tuple[str, str]]:
    """The logins ``text`` can reach an account by: (kind, normalised value)."""
    found = set()
    for kind, normalise in (("mobile", normalise_mobile), ("personal_account", normalise_personal_account)):
        try:
            found.add((kind, normalise(text)))
        except InvalidLogin:
            pass
    return found


def _spaced(text: str, data: st.DataObject) -> str:
    for sep in data.draw(st.lists(st.sampled_from(SPACES), max_size=4)):
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + sep + text[at:]
    return text


def test_a_personal_account_that_reads_as_a_mobile_routes_alike_however_spaced() -> None:
    # the same account, typed plainly and with a no-break space: one lock-out count, one partition
    assert route_login("89161110003") == route_login("8916111\u00a00003") == "+79161110003"


@FAST
@given(base=st.one_of(st.text(string.digits, min_size=6, max_size=20),
                      ru_mobiles.map(lambda m: m[2:]), ru_mobiles.map(lambda m: "8" + m[2:])),
       data=st.data())
def test_two_typings_that_reach_one_login_route_alike(base: str, data: st.DataObject) -> None:
    """Recovery keys a login's lock-out counts and its partition by ``route_login``: any two
    typings that can reach the same account (the same mobile or the same personal account)
    must get the same form, or a guesser could spread guesses over several counts."""
    forms = [_spaced(data.draw(st.sampled_from([base, *typed_forms("+7" + base[-10:])]))
                     if len(base) >= 10 else base, data) for _ in range(2)]
    if _reaches(forms[0]) & _reaches(forms[1]):
        assert route_login(forms[0]) == route_login(forms[1]), forms


@FAST
@given(digits=st.from_regex(r"[0-9]{6,20}", fullmatch=True)  # and, often enough, the readable:
       | st.from_regex(r"(7|8|78|77)?9[0-9]{9}", fullmatch=True)  # 789161110003 is +79161110003
       | st.from_regex(r"[78][0-9]{5,19}", fullmatch=True))
def test_a_personal_account_reads_as_a_mobile_exactly_when_normalise_mobile_takes_it(
        digits: str) -> None:
    """``mobile_reading`` skips the parse for most digits: it must answer as ``normalise_mobile``
    does for every personal account, or registration would miss a login that reads both ways
    (``Registry._conflicts``)."""
    try:
        expected: str | None = normalise_mobile(digits)
    except InvalidLogin:
        expected = None
    assert mobile_reading(digits) == expected
