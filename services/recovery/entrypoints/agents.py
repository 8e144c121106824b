"""The three agents; each body hands its stream to a BatchRunner (decode, handle, DLQ, ack)."""

from __future__ import annotations

from typing import Any

import faust

from services.common.consumer_loop import BatchRunner
from services.recovery.settings import RecoverySettings


def register_agents(app: faust.App, settings: RecoverySettings,
                    runners: list[BatchRunner[Any]]) -> None:
    for runner in runners:
        topic = app.topic(settings.topic(runner.topic), key_type=bytes, value_type=bytes,
                          internal=False)

        async def agent(stream: Any, runner: BatchRunner[Any] = runner) -> None:
            await runner.run(stream)

        agent.__name__ = agent.__qualname__ = "recovery_" + runner.topic.replace(".", "_").replace(
            "-", "_")
        app.agent(topic, name=agent.__name__)(agent)
