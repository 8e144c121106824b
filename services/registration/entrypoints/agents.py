"""The faust agents: one per inbound topic (linked, terminated, erased), each body a single
``BatchRunner.run``."""

from __future__ import annotations

from typing import Any

import faust

from schemas.topics import CONTRACT_ERASED, CONTRACT_LINKED, CONTRACT_TERMINATED
from services.common.consumer_loop import BatchRunner
from services.registration.entrypoints.messages import (
    InboundContractErased,
    InboundContractLinked,
    InboundContractTerminated,
)
from services.registration.settings import RegistrationSettings


def register_agents(
    app: faust.App,
    *,
    settings: RegistrationSettings,
    linked: BatchRunner[InboundContractLinked],
    terminated: BatchRunner[InboundContractTerminated],
    erased: BatchRunner[InboundContractErased],
) -> None:
    def topic(name: str) -> Any:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes, internal=False)

    @app.agent(topic(CONTRACT_LINKED), name="registration.contract_linked")
    async def contract_linked(stream: Any) -> None:
        await linked.run(stream)

    @app.agent(topic(CONTRACT_TERMINATED), name="registration.contract_terminated")
    async def contract_terminated(stream: Any) -> None:
        await terminated.run(stream)

    @app.agent(topic(CONTRACT_ERASED), name="registration.contract_erased")
    async def contract_erased(stream: Any) -> None:
        await erased.run(stream)
