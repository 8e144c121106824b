"""Handler of ``EraseContract``: erase subscribers' personal data, a batch in one transaction.

The account's row (every sealed, masked and hashed field of the subscriber with it) is deleted;
an erasure marker keeps the contract number, the account id and the erasure time, so that a
link not newer than the erasure stays stale. A tombstone for the account's key goes to
``selfcare.account.changed.v1`` through the outbox, in the same transaction: recovery and the
notifier then delete what they keep, and compaction drops the account's earlier records.
Idempotent: a second erasure finds no account and changes nothing.

An erasure dated more than ``MAX_CLOCK_SKEW_S`` ahead is carried out all the same (it is the
subscriber's right; a link or a termination so dated is refused), as if dated at that limit
(``not_after``): its marker then cannot hold off the contract's real re-links for longer.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.registration.domain.commands import EraseContract
from services.registration.domain.model import Outcome, Protector
from services.registration.domain.registry import Registry, fresh_commands
from services.registration.service_layer.outbound import account_erased, contract_rejected
from services.registration.service_layer.ports import AccountRepository, UnitOfWork

log = logging.getLogger(__name__)


async def erase_contracts(
    commands: Sequence[EraseContract], *, uow: UnitOfWork, protector: Protector,
    not_after: datetime,
) -> Counter[Outcome]:
    ahead = {c.event_id for c in commands if c.occurred_at > not_after}
    ordered = sorted((replace(c, occurred_at=min(c.occurred_at, not_after)) for c in commands),
                     key=lambda c: c.occurred_at)
    carried: list[uuid.UUID] = []  # the fresh erasures dated ahead, of the attempt that commits

    def work(repo: AccountRepository) -> Counter[Outcome]:
        ids = {c.event_id for c in ordered}
        fresh = fresh_commands(ordered, ids - repo.claim(ids))
        carried[:] = [event_id for event_id in fresh if event_id in ahead]
        numbers = {c.contract_number for c in fresh.values()}
        repo.hold_contracts(numbers)  # a link batch of one of them waits, or went first
        registry = Registry(
            accounts=repo.by_contracts(numbers), erasures=repo.erasures(numbers), holders={},
            protector=protector,
        )
        registry.end_each(fresh.values(), duplicates=len(ordered) - len(fresh),
                          not_after=not_after, end=registry.erase)
        erased = registry.to_erase()
        repo.erase(erased, registry.new_erasures(),
                   counted=[protector.contract_subject(a.contract_number) for a in erased])
        repo.stage(ACCOUNT_CHANGED, [account_erased(a) for a in erased])
        repo.stage(CONTRACT_REJECTED, [contract_rejected(r) for r in registry.rejections])
        return registry.outcomes

    outcomes = await uow.run(work)
    # once the batch has committed, and only for erasures not processed before: a redelivered
    # one, or an attempt the database rolled back, says nothing
    for event_id in carried:
        log.warning("erasure dated ahead of the clock: carried out, dated at the skew limit",
                    extra={"event_id": str(event_id)})
    return outcomes
