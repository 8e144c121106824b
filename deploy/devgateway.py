"""A local stand-in for the SMS gateway (DESIGN.md's call), for tests, the benchmark and the demo.

``POST /sms`` with ``{"to", "text", "client_ref"}``, the bearer token and ``Idempotency-Key:
<client_ref>`` answers ``200 {"message_id"}``. As DESIGN.md asks of a gateway, ``client_ref`` is
an idempotency key: a second call for an accepted reference is counted as a replay (a
duplicate) and answered with the first message id, and no second SMS "goes out". An
``Idempotency-Key`` that differs from ``client_ref`` is refused (400). Behaviour is scripted per
destination, one step per call (the last step repeats): ``ok``, ``500`` (or any 5xx), ``429:<retry-after
s>``, ``400``, ``slow:<s>`` (answer after ``s`` seconds), ``hang:<s>`` (accept at once, answer
after ``s`` seconds); ``override`` applies one step to every call (``503`` for an outage).
``delay_s`` delays every answer. ``GET /_control/state`` shows what arrived.

Run alone: ``python -m deploy.devgateway --port 6199 --delay-ms 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    to: str
    text: str
    client_ref: str
    message_id: str
    at: float  # monotonic, for latencies within this process
    wall_ms: float = 0.0  # wall clock (ms), to line up with the broker's record timestamps


@dataclass
class GatewayState:
    token: str = ""
    delay_s: float = 0.0
    scripts: dict[str, list[str]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # every call, by client_ref
    call_log: list[tuple[str, str, float]] = field(default_factory=list)  # (client_ref, step, time)
    accepted: dict[str, Received] = field(default_factory=dict)  # the SMS that "went out"
    duplicates: int = 0  # replays of an accepted client_ref
    override: str | None = None  # a step for every call (an outage), before the scripts
    without_idempotency_key: int = 0
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def next_step(self, to: str) -> str:
        if self.override:
            return self.override
        steps = self.scripts.get(to)
        if not steps:
            return "ok"
        return steps.pop(0) if len(steps) > 1 else steps[0]

    def accept(self, to: str, text: str, client_ref: str) -> str:
        if client_ref in self.accepted:
            self.duplicates += 1
            return self.accepted[client_ref].message_id
        message_id = f"m-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        self.accepted[client_ref] = Received(to, text, client_ref, message_id, time.monotonic(),
                                               time.time() * 1000)
        return message_id


def make_gateway_app(state: GatewayState) -> web.Application:
    async def sms(request: web.Request) -> web.Response:
        if state.token and request.headers.get("Authorization") != f"Bearer {state.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            body = await request.json()
            to, text, ref = str(body["to"]), str(body["text"]), str(body["client_ref"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "bad request"}, status=400)
        key = request.headers.get("Idempotency-Key")
        if key is None:
            state.without_idempotency_key += 1
        elif key != ref:
            return web.json_response({"error": "Idempotency-Key differs from client_ref"}, status=400)
        step = state.next_step(to)
        state.calls[ref] += 1
        state.call_log.append((ref, step, time.monotonic()))
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        kind, _, arg = step.partition(":")
        if kind.isdigit() and int(kind) >= 500:
            return web.json_response({"error": "unavailable"}, status=int(kind))
        if kind == "429":
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": arg or "1"})
        if kind == "400":
            return web.json_response({"error": "invalid destination"}, status=400)
        if kind == "hang":
            message_id = state.accept(to, text, ref)
            await asyncio.sleep(float(arg or 5))
            return web.json_response({"message_id": message_id})
        if kind == "slow":
            await asyncio.sleep(float(arg or 5))
        return web.json_response({"message_id": state.accept(to, text, ref)})

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response({
            "calls": dict(state.calls), "duplicates": state.duplicates,
            "accepted": len(state.accepted), "distinct_client_refs": len(state.calls),
            "without_idempotency_key": state.without_idempotency_key,
        })

    app = web.Application()
    app.router.add_post("/sms", sms)
    app.router.add_get("/_control/state", get_state)
    return app


class DevGateway:
    """The gateway in a background thread with its own loop (usable from sync tests)."""

    def __init__(
        self, *, token: str = "", delay_s: float = 0.0, host: str = "127.0.0.1", port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state = GatewayState(token=token, delay_s=delay_s)
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="devgateway", daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/sms"

    def start(self) -> DevGateway:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(make_gateway_app(self.state), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def call(self, fn: Any) -> Any:
        """Run ``fn(state)`` on the gateway's loop (a consistent snapshot or change)."""
        async def _do() -> Any:
            return fn(self.state)
        return asyncio.run_coroutine_threadsafe(_do(), self._loop).result(10)

    def script(self, to: str, steps: list[str]) -> None:
        self.call(lambda s: s.scripts.__setitem__(to, list(steps)))

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6199)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    state = GatewayState(token=args.token, delay_s=args.delay_ms / 1000)
    web.run_app(make_gateway_app(state), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
