"""Handler of ``TerminateContract``: close accounts, a batch in one transaction.

An unknown contract is answered with ``ContractRejected(unknown_contract)``; a termination older
than the account's newest event changes nothing (the newer link wins). One dated after
``not_after`` is refused (``invalid_event_time``).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from schemas.events import ContractRejectReason
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.registration.domain.commands import TerminateContract
from services.registration.domain.model import Outcome, Protector
from services.registration.domain.registry import Registry
from services.registration.service_layer.outbound import account_changed, contract_rejected
from services.registration.service_layer.ports import AccountRepository, UnitOfWork


async def terminate_contracts(
    commands: Sequence[TerminateContract], *, uow: UnitOfWork, protector: Protector,
    not_after: datetime,
) -> Counter[Outcome]:
    ordered = sorted(commands, key=lambda c: c.occurred_at)

    def work(repo: AccountRepository) -> Counter[Outcome]:
        seen = repo.seen({c.event_id for c in ordered})
        fresh: dict[uuid.UUID, TerminateContract] = {}
        for command in ordered:
            if command.event_id not in seen:
                fresh.setdefault(command.event_id, command)
        registry = Registry(
            accounts=repo.by_contracts({c.contract_number for c in fresh.values()}),
            holders={},
            protector=protector,
        )
        for _ in range(len(ordered) - len(fresh)):
            registry.duplicate()
        for command in fresh.values():
            if command.occurred_at > not_after:
                registry.reject(command.contract_number, command.event_id,
                                ContractRejectReason.INVALID_EVENT_TIME)
            else:
                registry.terminate(command)
        repo.save(registry.to_save())
        repo.mark_processed(fresh.keys())
        repo.stage(ACCOUNT_CHANGED, [account_changed(a) for a in registry.to_publish()])
        repo.stage(CONTRACT_REJECTED, [contract_rejected(r) for r in registry.rejections])
        return registry.outcomes

    return await uow.run(work)
