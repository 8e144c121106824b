"""A "Get code" body's fields are validated as decoded JSON values (``code_request``), not encoded
to JSON again: for any JSON values, the model's lax rules answer as its strict JSON rules do —
the same event, or the same 400 with the same reason."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import CodeRequested
from services.common.codec import describe
from services.common.http_edge import HttpError
from services.recovery.entrypoints.http import code_request

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5)
field = (st.sampled_from(["+79161110003", "8 (916) 111-00-03", "89161110003", "sms", "email",
                          "ru", "en", "SMS", "", "1" * 65]) | json_values)
bodies = st.dictionaries(st.sampled_from(["login", "channel", "locale", "event_id", "client_ip"]),
                         field, max_size=5)


def by_json(data: dict[str, Any], address: str | None) -> tuple[str, ...]:
    """What the view did before: the fields encoded to JSON and validated strictly."""
    fields = {k: data[k] for k in ("login", "channel", "locale") if k in data}
    fields["client_ip"] = address
    try:
        e = CodeRequested.model_validate_json(json.dumps(fields))
    except ValidationError as exc:
        return ("400", describe(exc)[1])
    return ("ok", e.login, e.channel.value, e.locale.value, str(e.client_ip))


def as_decoded(data: dict[str, Any], address: str | None) -> tuple[str, ...]:
    try:
        e = code_request(data, address)
    except HttpError as exc:
        assert exc.status == 400 and exc.error == "invalid_request"
        return ("400", exc.message)
    return ("ok", e.login, e.channel.value, e.locale.value, str(e.client_ip))


@settings(max_examples=2000, deadline=None)
@given(bodies, st.sampled_from(["127.0.0.1", "2001:db8::1", None]))
def test_decoded_fields_are_judged_as_their_json_would_be(data: dict[str, Any],
                                                          address: str | None) -> None:
    assert as_decoded(data, address) == by_json(data, address)


def test_what_the_body_cannot_set_is_the_server_s() -> None:
    event = code_request({"login": "+79161110003", "channel": "sms", "client_ip": "6.6.6.6",
                          "event_id": "00000000-0000-0000-0000-000000000000"}, "127.0.0.1")
    assert event.client_ip == "127.0.0.1"
    assert str(event.event_id) != "00000000-0000-0000-0000-000000000000"
    assert event.missing_envelope() == ["event_id", "occurred_at"]  # made here, not given
