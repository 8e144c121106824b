"""The client side of the services' ops routes: where they are and the token.

``OPS_API_TOKEN`` (in a local/demo set-up, when unset, the one generated into
``$SELFCARE_VAR_DIR/local-keys.json``); ``REGISTRATION_OPS_URL``, ``RECOVERY_OPS_URL``,
``NOTIFIER_OPS_URL`` (defaults: ``http://127.0.0.1:6101`` / ``6102`` / ``6103``, the web ports).
No redirect is followed: the token goes to that URL only, never to a ``Location`` an answer names.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import IO, Any

DEFAULT_URLS = {"registration": "http://127.0.0.1:6101", "recovery": "http://127.0.0.1:6102",
                "notifier": "http://127.0.0.1:6103"}


class OpsApiError(Exception):
    """The service could not be reached or refused the call; the message says which."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer stays an answer (an ``HTTPError``): urllib would otherwise send the request,
    ``Authorization`` included, on to whatever host the ``Location`` names."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> None:
        return None


# The token goes only to the service's own address: no redirect is followed, and no proxy the
# environment names (``HTTP_PROXY`` …) is used — a proxy would be sent the bearer token.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def token(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("OPS_API_TOKEN"):
        return env["OPS_API_TOKEN"]
    local = Path(env.get("SELFCARE_VAR_DIR", "var")) / "local-keys.json"
    if local.exists():
        return str(json.loads(local.read_text()).get("ops_api_token", ""))
    raise OpsApiError("OPS_API_TOKEN is unset (and no local-keys.json of a local set-up)")


def base_url(service: str, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(f"{service.upper()}_OPS_URL", DEFAULT_URLS[service]).rstrip("/")


def call(service: str, path: str, body: dict[str, Any], *, timeout_s: float = 60.0,
         env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """POSTs ``body`` to a service's ops route; (status, JSON answer). 2xx and 429 are answers;
    a 3xx is an error (no redirect is followed)."""
    url = base_url(service, env) + path
    if not url.startswith(("http://", "https://")):
        raise OpsApiError(f"{service.upper()}_OPS_URL must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token(env)}"})
    try:
        with _OPENER.open(request, timeout=timeout_s) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        data = exc.read()
        if 300 <= exc.code < 400:
            raise OpsApiError(
                f"{service}: HTTP {exc.code} redirect not followed (Location "
                f"{exc.headers.get('Location')!r}): redirects are never followed, set "
                f"{service.upper()}_OPS_URL to the service's own address") from None
        if exc.code == 429:
            return 429, json.loads(data or b"{}")
        if exc.code == 401:
            raise OpsApiError(f"{service}: unauthorized (check OPS_API_TOKEN)") from None
        if exc.code == 404:
            raise OpsApiError(f"{service}: no ops route (is OPS_API_TOKEN set on the service?)") from None
        raise OpsApiError(f"{service}: HTTP {exc.code} {data[:200]!r}") from None
    except OSError as exc:
        raise OpsApiError(f"{service}: not reachable at {base_url(service, env)} ({exc})") from None
