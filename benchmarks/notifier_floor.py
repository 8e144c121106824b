"""The floor under the notifier's sends/s: a faust agent that makes one gateway call per record.

    python -m benchmarks.notifier_floor worker   (started by ``benchmarks.notifier``)

Each worker joins one consumer group on the benchmark's ``code-issued`` topic and, for every
record, makes the notifier's own SMS call: ``HttpSmsGateway`` with the notifier's settings (URL,
token, time-out, connection limit), at most ``NOTIFIER_MAX_IN_FLIGHT`` calls at once, the record's
key as the ``client_ref``. Nothing is decrypted, rendered, recorded, leased or published. So it
is what the notifier's workers would reach if everything they do besides consuming and calling
cost nothing; ``benchmarks.notifier`` prints the notifier's rate as a share of it. The app is the
services' own (``make_app``, the notifier's settings), so the broker settings are the workers'.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from schemas.topics import CODE_ISSUED
from services.common.app import make_app
from services.common.metrics import ServiceMetrics
from services.common.process import tune_gc_for_workers
from services.notifier.adapters.sms_http import HttpSmsGateway
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.settings import NotifierSettings


def main() -> None:
    env = dict(os.environ)
    env["NOTIFIER_WEB_PORT"] = env.get("NOTIFIER_FLOOR_WEB_PORT", "6110")
    settings = NotifierSettings.from_env(env)
    app = make_app(settings=settings, metrics=ServiceMetrics("notifier_floor"),
                   app_id=f"{settings.topic_prefix}notifier-floor")
    gateway = HttpSmsGateway(url=settings.sms_gateway_url, token=settings.sms_gateway_token,
                             timeout_s=settings.sms_gateway_timeout_s,
                             max_connections=settings.max_in_flight)
    issued = app.topic(settings.topic(CODE_ISSUED), key_type=bytes, value_type=bytes, internal=False)

    @app.agent(issued, name="floor.send")
    async def send(stream: Any) -> None:
        slots = asyncio.Semaphore(settings.max_in_flight)
        calls: set[asyncio.Task[object]] = set()

        async def call(ref: str) -> None:
            try:
                await gateway.send(OutgoingMessage(code_id=ref, channel="sms", to="+79160000000",
                                                   text="floor"))
            finally:
                slots.release()

        async for event in stream.events():
            await slots.acquire()
            task = asyncio.ensure_future(call(event.key.decode()))
            calls.add(task)
            task.add_done_callback(calls.discard)

    tune_gc_for_workers()  # as the services' workers do
    app.main()


if __name__ == "__main__":
    main()
