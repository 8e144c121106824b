"""Handlers of ``ProjectAccount`` and ``EraseAccount``: keep the accounts projection up to date.

* The newest version of each account wins; older or equal versions change nothing. A newer
  version whose ``holder_epoch`` is higher than the stored one revokes the password and voids
  pending codes (a new holder, or a reopened contract); a higher ``contacts_epoch`` voids
  pending codes (they went to the old contacts). The epochs are state, so replaying the
  compacted topic after a rebuild revokes nothing twice: a new row starts at the newest epochs.
* An erased account loses its row and everything kept for it: credentials, codes, its
  request-log rows, its rate-limit events and the lock-out of its mobile login. The last two
  are keyed by keyed hashes of the account id, the destinations and the login: what can be
  derived from the row goes with it (a personal-account login's lock-out cannot be, nor the
  lock-outs of a login from each client address: they are keyed hashes and counts, and age
  out by retention).
* An erased account also gets a tombstone, keyed by its id, on the topics recovery publishes
  under that key (``code.issued`` and ``password.changed``, compacted as well as deleted):
  compaction then drops its sealed codes and notices before their retention ends. Only known
  accounts get them: an erasure redelivered after its row is gone stages nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.events import Channel
from schemas.topics import CODE_ISSUED, PASSWORD_CHANGED
from services.common.codec import tombstone
from services.common.crypto import DecryptError, Keyring, contact_aad
from services.recovery.domain.commands import EraseAccount, ProjectAccount
from services.recovery.domain.model import Account, route_key
from services.recovery.service_layer.ports import Clock, Repositories, UnitOfWork

# published topics keyed by the account id: an erasure tombstones the account's key on each
ERASED_BY_ACCOUNT = (CODE_ISSUED, PASSWORD_CHANGED)


class ProjectAccounts:
    def __init__(self, *, uow: UnitOfWork, clock: Clock, keyring: Keyring) -> None:
        self.uow = uow
        self.clock = clock
        self.keyring = keyring

    async def __call__(self, changes: Sequence[ProjectAccount]) -> int:
        """How many accounts changed."""
        now = self.clock.now()
        return await self.uow.run(lambda repos: project_accounts(repos, changes, now))

    async def erase(self, commands: Sequence[EraseAccount]) -> int:
        """How many of the erased accounts were known."""
        ids = sorted({c.account_id for c in commands})
        if not ids:
            return 0
        return await self.uow.run(lambda repos: erase_accounts(repos, ids, self.keyring))


def project_accounts(repos: Repositories, changes: Sequence[ProjectAccount], now: float) -> int:
    newest: dict[str, ProjectAccount] = {}
    for change in changes:
        if change.account_id not in newest or change.version > newest[change.account_id].version:
            newest[change.account_id] = change
    stored = repos.accounts.epochs(newest.keys())
    fresh = [c for key, c in newest.items() if key not in stored]
    repos.accounts.insert(fresh, now)
    applied = len(fresh)
    for key, change in newest.items():
        if key not in stored:
            continue
        version, holder, contacts = stored[key]
        if change.version <= version:
            continue
        if change.holder_epoch > holder:
            repos.credentials.delete_for([key])
            repos.codes.void_pending(key)
        elif change.contacts_epoch > contacts:
            repos.codes.void_pending(key)
        repos.accounts.update(change, now)
        applied += 1
    return applied


def erase_accounts(repos: Repositories, account_ids: Sequence[str], keyring: Keyring) -> int:
    repos.accounts.lock_versions(account_ids)  # first, as every writer of an account does
    known = repos.accounts.by_ids(account_ids)
    limits: set[str] = set()
    lockouts: set[str] = set()
    routes: set[str] = set()
    for account in known:
        derived = _derived_subjects(account, keyring)
        limits |= derived.limits
        lockouts |= derived.lockouts
        routes |= derived.routes
    repos.rate_events.delete_subjects(limits)
    repos.windows.delete_subjects(limits)
    repos.failures.delete_subjects(lockouts)
    repos.codes.delete_for(account_ids)
    repos.request_log.delete_for(account_ids)
    repos.request_log.delete_logins(routes)  # also the mobile's requests made before it was linked
    repos.credentials.delete_for(account_ids)
    repos.accounts.delete(account_ids)
    tombstones = [tombstone(account.account_id) for account in known]
    for topic in ERASED_BY_ACCOUNT:
        repos.outbox.stage(topic, tombstones)
    return len(known)


@dataclass(frozen=True)
class Derived:
    """What an account's rows elsewhere are keyed by, as far as the account gives it away."""

    limits: set[str]  # rate-limit subjects
    lockouts: set[str]  # lock-out subjects
    routes: set[str]  # route keys of its logins (support's request log)


def _derived_subjects(account: Account, keyring: Keyring) -> Derived:
    aid = account.account_id
    derived = Derived(limits={keyring.keyed_hash("limit", "account:" + aid),
                              keyring.keyed_hash("limit", "account-day:" + aid)},
                      lockouts=set(), routes=set())
    for channel, field, token in ((Channel.SMS, "mobile", account.mobile_enc),
                                  (Channel.EMAIL, "email", account.email_enc)):
        if not token:
            continue
        try:
            value = keyring.decrypt(token, aad=contact_aad(aid, field))
        except DecryptError:  # a retired key: nothing derivable, the rows age out
            continue
        derived.limits.add(keyring.keyed_hash("limit", f"destination:{channel.value}:{value.lower()}"))
        if field == "mobile":
            route = route_key(keyring, value)
            derived.routes.add(route)
            derived.lockouts.add(keyring.keyed_hash("lockout", route))
    return derived
