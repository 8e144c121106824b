"""The ops routes' bearer check and their text fields."""

from __future__ import annotations

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.common.http_edge import bearer_ok as authorised
from services.common.ops_http import OpsError, register_ops_routes, text_field

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


async def answered(data: dict[str, object]) -> tuple[int, dict[str, object]]:
    return 200, {"ok": True}


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE", "PUT", "SEARCH", "PROPFIND", "TRACE"])
async def test_without_the_token_every_method_and_path_under_ops_is_401(method: str) -> None:
    """An unauthenticated caller learns nothing from the method or the path: no 405 for a route
    that exists, no 404 for one that does not. With the token, routing answers as usual."""
    app = faust.App(f"ops-methods-{method.lower()}", broker="kafka://127.0.0.1:1",
                    web_router_enabled=False, web_tables_enabled=False)
    register_ops_routes(app, token=TOKEN, routes={"/ops/v1/login": answered}, read_timeout_s=1.0)
    app.web.init_server()
    async with TestClient(TestServer(app.web.web_app)) as client:
        for path in ("/ops/v1/login", "/ops/v1/nothing-here"):
            assert (await client.request(method, path)).status == 401, path
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        known = await client.request(method, "/ops/v1/login", headers=bearer, json={})
        assert known.status == (200 if method == "POST" else 405)
        assert (await client.request(method, "/ops/v1/nothing-here", headers=bearer)).status == 404
        assert (await client.request(method, "/livez")).status == 404  # not under /ops/: as ever
