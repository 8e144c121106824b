"""A termination or an erasure that the worker takes while link batches are still in its linking
process waits for them (``Linker.settled``): they committed first (it holds their contracts), so
their ``AccountChanged`` must reach the relay first. Were it handed over first, an erasure's
tombstone would precede a link's record of the same account, and compaction and recovery would
keep the link's."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from services.common.consumer_loop import Inbound, RawRecord
from services.common.metrics import ServiceMetrics
from services.registration.adapters.linking import Calls
from services.registration.adapters.protection import KeyringProtector
from services.registration.domain.commands import LinkContract
from services.registration.domain.model import Outcome
from services.registration.entrypoints.agents import (
    ContractHandlers,
    InboundContractErased,
    InboundContractLinked,
    InboundContractTerminated,
)
from services.registration.service_layer.link_contract import link_contracts
from services.registration.service_layer.metrics import RegistrationMetrics
from tests.registration.events import erased, linked, terminated
from tests.registration.fakes import FakeUnitOfWork


class HeldLinker:
    """Links on the fake unit of work once ``release`` is set, as the linking process would."""

    def __init__(self, uow: FakeUnitOfWork, protector: KeyringProtector) -> None:
        self.uow, self.protector = uow, protector
        self.release = asyncio.Event()
        self.calls = Calls()

    def link(self, commands: Sequence[LinkContract],
             not_after: datetime) -> asyncio.Future[Counter[Outcome]]:
        async def held() -> Counter[Outcome]:
            await self.release.wait()
            return await link_contracts(commands, uow=self.uow, protector=self.protector,
                                        not_after=not_after)
        return self.calls.start(held())

    async def settled(self) -> None:
        await self.calls.settled()


def inbound(model: type, event: dict[str, object]) -> Inbound:  # type: ignore[type-arg]
    raw = RawRecord(topic="t", partition=0, offset=0, key=None, value=None, headers=())
    return Inbound(raw=raw, event=model.model_validate_json(json.dumps(event)))


async def test_a_termination_and_an_erasure_wait_for_the_link_batches_before_them(
        protector: KeyringProtector) -> None:
    uow = FakeUnitOfWork()
    linker = HeldLinker(uow, protector)
    handlers = ContractHandlers(uow=uow, protector=protector, linker=linker,
                                metrics=RegistrationMetrics(ServiceMetrics("registration")))
    finish = await handlers.contracts_linked([inbound(InboundContractLinked, linked("H-1"))])
    ending = asyncio.ensure_future(asyncio.gather(
        handlers.contracts_terminated([inbound(InboundContractTerminated,
                                               terminated("H-1", minutes=5))]),
        handlers.contracts_erased([inbound(InboundContractErased, erased("H-2", minutes=5))])))
    await asyncio.sleep(0.05)
    assert not ending.done() and uow.repo.staged == []  # neither ran ahead of the link
    linker.release.set()
    await finish()
    await ending
    versions = [json.loads(r.value or b"null") for _, r in uow.repo.staged]
    assert [(v["version"], v["status"]) for v in versions if v is not None][:2] == [
        (1, "active"), (2, "closed")]



async def test_an_erasure_woken_before_the_links_first_step_still_waits_for_it(
        protector: KeyringProtector) -> None:
    """faust hands a link batch and an erasure to their agents in one turn of the loop: the
    erasure's agent may run first, before the link's call has taken a step. The link is in
    flight all the same (handed to the linker), and the erasure's tombstone must come after its
    AccountChanged, as the last record of the contract."""
    uow = FakeUnitOfWork()
    linker = HeldLinker(uow, protector)
    handlers = ContractHandlers(uow=uow, protector=protector, linker=linker,
                                metrics=RegistrationMetrics(ServiceMetrics("registration")))
    erasing = asyncio.ensure_future(handlers.contracts_erased(  # scheduled first
        [inbound(InboundContractErased, erased("H-3", minutes=5))]))
    finish = await handlers.contracts_linked([inbound(InboundContractLinked, linked("H-3"))])
    await asyncio.sleep(0.05)
    assert not erasing.done() and uow.repo.staged == []  # the erasure waits for the link
    linker.release.set()
    await finish()
    await erasing
    staged = [r.value for _, r in uow.repo.staged]
    assert staged[0] is not None and staged[-1] is None  # the account, then its tombstone
