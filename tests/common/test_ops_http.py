"""The ops routes' bearer check and their text fields."""

from __future__ import annotations

import pytest

from services.common.http_edge import bearer_ok as authorised
from services.common.ops_http import OpsError, text_field

TOKEN = "ops-token-0123456789abcdef"


def test_only_the_exact_bearer_token_is_authorised() -> None:
    assert authorised(f"Bearer {TOKEN}", TOKEN)
    assert authorised(f"bearer {TOKEN}", TOKEN)  # the scheme is case-insensitive (RFC 9110)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                   "Bearer ", "Bearer \udcff", f"Bearer {TOKEN.upper()}"):
        assert not authorised(header, TOKEN), header


def test_no_token_authorises_nothing() -> None:
    assert not authorised("Bearer ", "")
    assert not authorised("Bearer x", "")


@pytest.mark.parametrize("value", ["77-00\x0012345", "op\r\nX-Injected: 1", "a\x1bb", "a\x85b"])
def test_a_field_with_a_control_character_is_refused_before_any_lookup(value: str) -> None:
    """A NUL, which PostgreSQL cannot hold as text (the lookup failed with a 500 and a traceback
    holding the typed value), and every other control character."""
    with pytest.raises(OpsError) as refused:
        text_field({"contract": value}, "contract", limit=32)
    assert (refused.value.status, refused.value.error) == (400, "invalid_request")
    assert text_field({"contract": "77-0012345"}, "contract", limit=32) == "77-0012345"
