"""The client of the ops routes follows no redirect: the bearer token goes only to the URL named
by ``<SERVICE>_OPS_URL``, never to a ``Location`` an answer names."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from services.ops.cli import app as ops_cli
from services.ops.ops_api import OpsApiError, call

TOKEN = "ops-api-test-token-0123456789"


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    """Where a redirect points: records every Authorization it is sent."""

    seen: ClassVar[list[str | None]] = []

    def _answer(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = b'{"accounts": 0, "resealed": 0, "unreadable": 0, "newest_key_id": "00000000"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # http.server's names

    def log_message(self, *args: object) -> None:
        pass


def _redirecting(status: int, location: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Redirecting


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.HTTPServer:
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def elsewhere() -> Iterator[str]:
    _Elsewhere.seen = []
    server = _serve(_Elsewhere)
    yield f"http://127.0.0.1:{server.server_port}/collect"
    server.shutdown()
    server.server_close()


@pytest.fixture(params=[301, 302, 303, 307, 308])
def redirecting_service(request: pytest.FixtureRequest, elsewhere: str) -> Iterator[tuple[int, str]]:
    server = _serve(_redirecting(request.param, elsewhere))
    yield request.param, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_redirect_is_an_error_and_the_token_is_not_sent_on(redirecting_service: tuple[int, str]) -> None:
    status, url = redirecting_service
    with pytest.raises(OpsApiError, match=f"^registration: HTTP {status} redirect not followed"):
        call("registration", "/ops/v1/keys/reseal", {},
             env={"OPS_API_TOKEN": TOKEN, "REGISTRATION_OPS_URL": url})
    assert _Elsewhere.seen == []


def test_the_cli_exits_2_on_a_redirect_naming_the_status(redirecting_service: tuple[int, str]) -> None:
    status, url = redirecting_service
    result = CliRunner().invoke(ops_cli, ["keys", "reseal"],
                                env={"OPS_API_TOKEN": TOKEN, "REGISTRATION_OPS_URL": url})
    assert result.exit_code == 2, result.output
    assert f"HTTP {status} redirect not followed" in result.output
    assert _Elsewhere.seen == []


def test_a_direct_answer_still_works(elsewhere: str) -> None:
    url = elsewhere.removesuffix("/collect")
    status, answer = call("registration", "/ops/v1/keys/reseal", {},
                          env={"OPS_API_TOKEN": TOKEN, "REGISTRATION_OPS_URL": url})
    assert status == 200 and answer["accounts"] == 0
    assert _Elsewhere.seen == [f"Bearer {TOKEN}"]


class _Proxy(_Elsewhere):
    """A proxy the environment names: records every Authorization it is sent."""

    seen: ClassVar[list[str | None]] = []


def test_no_proxy_of_the_environment_is_sent_the_token(
        elsewhere: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _Proxy.seen = []
    proxy = _serve(_Proxy)
    try:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_port}")
        url = elsewhere.removesuffix("/collect")
        status, _ = call("registration", "/ops/v1/keys/reseal", {},
                         env={"OPS_API_TOKEN": TOKEN, "REGISTRATION_OPS_URL": url})
        assert status == 200
        assert _Proxy.seen == []
        assert _Elsewhere.seen == [f"Bearer {TOKEN}"]
    finally:
        proxy.shutdown()
        proxy.server_close()
