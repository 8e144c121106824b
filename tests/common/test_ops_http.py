"""The ops routes' bearer check."""

from __future__ import annotations

from services.common.http_edge import bearer_ok as authorised

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
