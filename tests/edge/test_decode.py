"""Bodies at the HTTP edge (services.common.http_edge): a JSON object or a 400, never an exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.http_edge import HttpError, bearer_ok, decode_object

HOSTILE = {
    "deep_arrays": b"[" * 1000,
    "deep_objects": b'{"a":' * 5000,
    "deep_closed": b"[" * 3000 + b"]" * 3000,
    "lone_surrogate_value": b'{"login": "x", "password": "\\udfff"}',
    "lone_surrogate_key": b'{"\\ud800": 1}',
    "invalid_utf8": b'{"login": "\xff\xfe"}',
    "overlong_utf8": b'{"login": "\xc0\xaf"}',
    "utf16": '{"login": "x"}'.encode("utf-16"),
    "nan": b'{"login": NaN}',
    "infinity": b'{"n": -Infinity}',
    "huge_float": b'{"n": 1e999}',
    "huge_int": b'{"n": ' + b"9" * 5000 + b"}",
    "duplicate_keys": b'{"login": "a", "login": "b"}',
    "array": b"[]",
    "string": b'"login"',
    "number": b"42",
    "null": b"null",
    "empty": b"",
    "truncated": b'{"login": "a"',
    "trailing": b'{"login": "a"} x',
    "nul_byte": b'\x00{"login": "a"}',
    "bom": b'\xef\xbb\xbf{"login": "a"}',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_are_400(body: bytes) -> None:
    with pytest.raises(HttpError) as caught:
        decode_object(body)
    assert caught.value.status == 400 and caught.value.error == "invalid_json"


def test_good_objects_pass_unchanged() -> None:
    body = {"login": "+7 916 123-45-67", "password": "пароль 🔑", "n": 1.5, "nested": [{"a": None}]}
    assert decode_object(json.dumps(body).encode()) == body
    assert decode_object(json.dumps(body, ensure_ascii=False).encode()) == body


@given(st.binary(max_size=300))
def test_any_bytes_give_an_object_or_a_400(body: bytes) -> None:
    try:
        assert isinstance(decode_object(body), dict)
    except HttpError as exc:
        assert exc.status == 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_any_json_object_of_valid_text_round_trips(value: dict[str, object]) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        value_text_ok = json.dumps(value, ensure_ascii=False).encode("utf-8") is not None
    except UnicodeEncodeError:
        value_text_ok = False
    if value_text_ok:
        assert decode_object(raw) == value
    else:
        with pytest.raises(HttpError):
            decode_object(raw)


def test_bearer_token_comparison() -> None:
    assert bearer_ok("Bearer s3cret-token-0123456789", "s3cret-token-0123456789")
    assert bearer_ok("bearer s3cret-token-0123456789", "s3cret-token-0123456789")  # RFC 9110
    for header in (None, "", "Bearer", "Bearer s3cret-token-012345678", "Bearer s3cret-token-0123456789x",
                   "Basic s3cret-token-0123456789", "s3cret-token-0123456789", "Bearer \udfff"):
        assert not bearer_ok(header, "s3cret-token-0123456789")
    assert not bearer_ok("Bearer ", "")  # an empty token admits nobody
