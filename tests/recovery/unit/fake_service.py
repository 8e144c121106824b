"""Recovery's handlers over ``FakeUnitOfWork``, a fake clock and a fake hasher: decisions with
no database."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.events import AccountChanged
from services.common.consumer_loop import InOrder
from services.common.crypto import Keyring, code_aad
from services.common.metrics import ServiceMetrics
from services.recovery.domain.commands import IssueCode, LogIn
from services.recovery.domain.model import Policy
from services.recovery.entrypoints.agents import deciding, issue_code, project_account
from services.recovery.service_layer.codes import IssueCodes, IssueConfig
from services.recovery.service_layer.log_in import LogInHandler
from services.recovery.service_layer.metrics import RecoveryMetrics
from services.recovery.service_layer.project_accounts import ProjectAccounts
from tests.recovery.builders import POLICY, request
from tests.recovery.conftest import FakeClock, FakeHasher, make_keyring
from tests.recovery.fakes import FakeUnitOfWork


@dataclass
class FakeService:
    policy: Policy = POLICY
    keyring: Keyring = field(default_factory=make_keyring)
    uow: FakeUnitOfWork = field(default_factory=FakeUnitOfWork)
    clock: FakeClock = field(default_factory=FakeClock)
    hasher: FakeHasher = field(default_factory=FakeHasher)
    metrics: RecoveryMetrics = field(
        default_factory=lambda: RecoveryMetrics(ServiceMetrics("recovery")))

    def __post_init__(self) -> None:
        self.projection = ProjectAccounts(uow=self.uow, clock=self.clock, keyring=self.keyring)
        self.issue_codes = IssueCodes(
            uow=self.uow, keyring=self.keyring, hasher=self.hasher, clock=self.clock,
            metrics=self.metrics, config=IssueConfig(policy=self.policy, code_ttl_s=600,
                                                     password_length=10,
                                                     support_phone="8 800 250-08-90"))
        self.in_order = InOrder(deciding(self.issue_codes), transient=self.uow.transient)
        self.log_in = LogInHandler(uow=self.uow, keyring=self.keyring, hasher=self.hasher,
                                   clock=self.clock, policy=self.policy, metrics=self.metrics)

    async def accounts(self, *events: AccountChanged) -> None:
        await self.projection([project_account(e) for e in events])

    def command(self, login: str, channel: str = "sms", **extra: Any) -> IssueCode:
        return issue_code(request(login, channel, **extra))

    async def decide(self, *commands: IssueCode) -> Callable[[], Awaitable[None]]:
        return await self.in_order(list(commands))

    async def issue(self, *commands: IssueCode) -> None:
        complete = await self.decide(*commands)
        await complete()

    async def login(self, login: str, password: str, ip: str | None = None) -> str | None:
        return await self.log_in(LogIn(login=login, password=password, client_ip=ip))

    def published(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(r.value or b"null") for t, r in self.uow.published
                if topic is None or t == topic]

    def outcome(self, command: IssueCode) -> dict[str, Any]:
        [got] = [v for v in self.published() if v is not None and v.get("request_event_id") ==
                 command.request_event_id]
        return got

    def password(self, issued: dict[str, Any]) -> str:
        return self.keyring.decrypt(str(issued["password_enc"]),
                                    aad=code_aad(str(issued["code_id"]), "password"))
