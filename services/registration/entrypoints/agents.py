"""The edge of registration: wire events in, commands out, handlers called, outcomes counted.
The bootstrap gives each inbound topic (linked, terminated, erased) a ``BatchRunner`` over one of
these handlers, and each runner an agent (``services.common.consumer_loop.register_agents``).

The inbound models are the public ones with one stricter field: a contract number must look
like one (letters, digits, ``-``, ``/``, ``.``), so a blank or control-character contract
number is a malformed record (DLQ), not an account.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import Field

from schemas.events import ContractErased, ContractLinked, ContractTerminated, utc_now
from services.common.consumer_loop import Finish, Inbound
from services.registration.domain.commands import EraseContract, LinkContract, TerminateContract
from services.registration.domain.model import Protector
from services.registration.service_layer.erase_contract import erase_contracts
from services.registration.service_layer.metrics import RegistrationMetrics
from services.registration.service_layer.ports import Linker, UnitOfWork
from services.registration.service_layer.terminate_contract import terminate_contracts

ContractNumber = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z][0-9A-Za-z/._-]*$")
]


class InboundContractLinked(ContractLinked):
    contract_number: ContractNumber


class InboundContractTerminated(ContractTerminated):
    contract_number: ContractNumber


class InboundContractErased(ContractErased):
    contract_number: ContractNumber


def to_link(event: ContractLinked) -> LinkContract:
    s = event.subscriber
    return LinkContract(
        event_id=event.event_id, occurred_at=event.occurred_at,
        contract_number=event.contract_number, personal_account=event.personal_account,
        tv_product=event.tv_product, full_name=s.full_name, mobile=s.mobile, email=s.email,
        passport_series=s.passport.series, passport_number=s.passport.number,
        mobile_active=event.mobile_active,
    )


def to_termination(event: ContractTerminated) -> TerminateContract:
    return TerminateContract(
        event_id=event.event_id, occurred_at=event.occurred_at, contract_number=event.contract_number
    )


def to_erasure(event: ContractErased) -> EraseContract:
    return EraseContract(
        event_id=event.event_id, occurred_at=event.occurred_at, contract_number=event.contract_number
    )


class ContractHandlers:
    """The three batch handlers the agents' ``BatchRunner``s call.

    An event dated more than ``max_clock_skew_s`` after ``clock()`` is refused
    (``invalid_event_time``): it would win against every later real event of its contract."""

    def __init__(
        self, *, uow: UnitOfWork, protector: Protector, linker: Linker, metrics: RegistrationMetrics,
        max_clock_skew_s: float = 300, clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.uow = uow
        self.protector = protector
        self.linker = linker
        self.metrics = metrics
        self.max_clock_skew = timedelta(seconds=max_clock_skew_s)
        self.clock = clock

    def not_after(self) -> datetime:
        return self.clock() + self.max_clock_skew

    async def contracts_linked(self, items: list[Inbound[InboundContractLinked]]) -> Finish:
        """Hands the batch to the linker and returns the wait for its transaction as the
        completion, so the runner takes the next batch meanwhile. The linker runs transactions
        in the order asked for; the rules are order-safe anyway (``occurred_at`` decides)."""
        commands = [to_link(i.event) for i in items]
        not_after = self.not_after()
        started = [self.linker.link(commands, not_after)]  # in flight for an erasure from now

        async def transaction() -> None:
            # a retry (the database was away) asks the linker again
            running = started.pop() if started else self.linker.link(commands, not_after)
            self.metrics.count("link", await running)

        return transaction

    async def contracts_terminated(self, items: list[Inbound[InboundContractTerminated]]) -> None:
        commands = [to_termination(item.event) for item in items]
        await self.linker.settled()  # the links before it reach the topic before it
        self.metrics.count("terminate", await terminate_contracts(
            commands, uow=self.uow, protector=self.protector, not_after=self.not_after()))

    async def contracts_erased(self, items: list[Inbound[InboundContractErased]]) -> None:
        commands = [to_erasure(item.event) for item in items]
        await self.linker.settled()  # the links before it reach the topic before its tombstones
        self.metrics.count("erase", await erase_contracts(
            commands, uow=self.uow, protector=self.protector, not_after=self.not_after()))
