"""Handler of ``LinkContract``: a batch of links in one transaction.

1. refuse a link dated after ``not_after`` (now + ``MAX_CLOCK_SKEW_S``: it would win against
   every later real re-link), validate and normalise every link, hash its logins (a rejection is
   an outcome, not an error);
2. in one transaction: claim the batch's event ids (those processed before are duplicates), load
   the batch's accounts, their erasure markers and the active holders of its logins, apply the
   links in ``occurred_at`` order, save, and stage ``AccountChanged`` / ``ContractRejected`` in the
   outbox.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from schemas.events import ContractRejectReason
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.common.logins import LoginKind
from services.registration.domain.commands import LinkContract
from services.registration.domain.model import Outcome, ProtectedLink, Protector
from services.registration.domain.registry import Registry, Rejection
from services.registration.domain.validation import LinkRejected, normalise_link
from services.registration.service_layer.outbound import account_changed, contract_rejected
from services.registration.service_layer.ports import AccountRepository, UnitOfWork


async def link_contracts(
    commands: Sequence[LinkContract],
    *,
    uow: UnitOfWork,
    protector: Protector,
    not_after: datetime,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Counter[Outcome]:
    return await uow.run(lambda repo: link_batch(repo, commands, protector, not_after, new_id))


def link_batch(
    repo: AccountRepository,
    commands: Sequence[LinkContract],
    protector: Protector,
    not_after: datetime,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Counter[Outcome]:
    """Steps 1 and 2 in the caller's transaction (a worker's database thread, or the linking
    process of ``adapters.linking``)."""
    prepared = [_prepare(c, protector, not_after)
                for c in sorted(commands, key=lambda c: c.occurred_at)]
    return _apply(repo, prepared, protector, new_id)


def _prepare(command: LinkContract, protector: Protector,
             not_after: datetime) -> ProtectedLink | Rejection:
    if command.occurred_at > not_after:
        return Rejection(contract_number=command.contract_number, event_id=command.event_id,
                         reason=ContractRejectReason.INVALID_EVENT_TIME)
    try:
        return protector.protect(normalise_link(command))
    except LinkRejected as exc:
        return Rejection(
            contract_number=command.contract_number, event_id=command.event_id, reason=exc.reason
        )


def _apply(
    repo: AccountRepository,
    prepared: list[ProtectedLink | Rejection],
    protector: Protector,
    new_id: Callable[[], uuid.UUID],
) -> Counter[Outcome]:
    ids = {p.event_id for p in prepared}
    seen = ids - repo.claim(ids)
    fresh: list[ProtectedLink | Rejection] = []
    fresh_ids: set[uuid.UUID] = set()
    for item in prepared:
        if item.event_id not in seen and item.event_id not in fresh_ids:
            fresh_ids.add(item.event_id)
            fresh.append(item)
    links = [p for p in fresh if isinstance(p, ProtectedLink)]
    numbers = {p.contract_number for p in links}
    repo.hold_contracts(numbers)  # a termination, an erasure or a reseal of one waits, or went first
    # the mobiles the batch's logins read as: an interactive account's login, a personal
    # account's alias; held so that a conflict by reading is seen across workers too
    repo.hold({key for p in links if (key := p.reads_as_mobile) is not None})
    registry = Registry(
        accounts=repo.by_contracts(numbers),
        erasures=repo.erasures(numbers),
        # the logins, and what they read as when typed (``Registry._conflicts``)
        holders=repo.active_holders({p.login_key for p in links}
                                    | {p.alias_key for p in links if p.alias_key is not None}),
        # only a mobile login can be another account's alias (login keys are kept apart by kind)
        alias_holders=repo.alias_holders({p.login_key for p in links
                                          if p.link.login_kind is LoginKind.MOBILE}),
        protector=protector,
        new_id=new_id,
    )
    for _ in range(len(prepared) - len(fresh)):
        registry.duplicate()
    for item in fresh:
        if isinstance(item, Rejection):
            registry.reject(item.contract_number, item.event_id, item.reason)
        else:
            registry.link(item)
    repo.save(registry.to_save())
    repo.stage(ACCOUNT_CHANGED, [account_changed(a) for a in registry.to_publish()])
    repo.stage(CONTRACT_REJECTED, [contract_rejected(r) for r in registry.rejections])
    return registry.outcomes
