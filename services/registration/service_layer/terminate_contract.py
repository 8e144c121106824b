"""Handler of ``TerminateContract``: close accounts, a batch in one transaction.

An unknown contract is answered with ``ContractRejected(unknown_contract)``; a termination older
than the account's newest event changes nothing (the newer link wins). One dated after
``not_after`` is refused (``invalid_event_time``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.registration.domain.commands import TerminateContract
from services.registration.domain.model import Outcome, Protector
from services.registration.domain.registry import Registry, fresh_commands
from services.registration.service_layer.outbound import account_changed, contract_rejected
from services.registration.service_layer.ports import AccountRepository, UnitOfWork


async def terminate_contracts(
    commands: Sequence[TerminateContract], *, uow: UnitOfWork, protector: Protector,
    not_after: datetime,
) -> Counter[Outcome]:
    ordered = sorted(commands, key=lambda c: c.occurred_at)

    def work(repo: AccountRepository) -> Counter[Outcome]:
        ids = {c.event_id for c in ordered}
        fresh = fresh_commands(ordered, ids - repo.claim(ids))
        numbers = {c.contract_number for c in fresh.values()}
        repo.hold_contracts(numbers)  # a link batch of one of them waits, or went first
        registry = Registry(
            accounts=repo.by_contracts(numbers), erasures=repo.erasures(numbers), holders={},
            protector=protector,
        )
        registry.end_each(fresh.values(), duplicates=len(ordered) - len(fresh),
                          not_after=not_after, end=registry.terminate)
        repo.save(registry.to_save())
        repo.stage(ACCOUNT_CHANGED, [account_changed(a) for a in registry.to_publish()])
        repo.stage(CONTRACT_REJECTED, [contract_rejected(r) for r in registry.rejections])
        return registry.outcomes

    return await uow.run(work)
