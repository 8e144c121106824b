"""Handler of ``LogIn``: the current password, or the newest pending code, which then becomes it.

1. One transaction: the client address's login window (beyond it: refused with no hashing and
   nothing counted), then a place in the failure counts — per login and client address, then
   per login — taken *before* any hashing, and the account's hashes. While the login is locked
   everywhere no place is taken at all: nothing is judged then, so the subscriber typing the
   right password at home does not lock home out past the lock everywhere.
2. Exactly two argon2id verifications, whatever happened in step 1: a missing hash is replaced
   by the dummy hash, and a locked login verifies its real hashes too, so neither an unknown
   login nor a lock shows in the time of the answer.
3. Refused if either count gave no place (a lock, or attempts still in flight fill it). A wrong
   guess writes nothing: its place stays taken. A success gives back its places (see
   ``FailureCounts.release``) and, when it activates a pending code, stages ``PasswordChanged`` in
   the outbox in the same transaction.

Since every attempt is counted before it is verified, simultaneous attempts on any number of
workers can never verify more wrong guesses than the limits allow, and no write of a later
attempt can undo a lock. Unknown logins are counted the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from schemas.events import AccountStatus
from schemas.topics import PASSWORD_CHANGED
from services.common.crypto import Keyring
from services.common.logins import candidate_keys
from services.recovery.domain.commands import LogIn
from services.recovery.domain.model import Account, Policy, resolve, route_key
from services.recovery.service_layer.codes import password_changed
from services.recovery.service_layer.metrics import RecoveryMetrics
from services.recovery.service_layer.ports import Clock, PasswordHasher, Repositories, UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class _Subjects:
    pair: str  # the login from this client address
    login: str  # the login from anywhere


@dataclass(frozen=True, kw_only=True)
class _Loaded:
    throttled: bool = False  # the client address is over its login window
    pair_place: int | None = None
    login_place: int | None = None
    account: Account | None = None
    current: str | None = None
    pending: tuple[str, str] | None = None  # code_id, hash

    @property
    def allowed(self) -> bool:
        return self.pair_place is not None and self.login_place is not None


class LogInHandler:
    def __init__(self, *, uow: UnitOfWork, keyring: Keyring, hasher: PasswordHasher, clock: Clock,
                 policy: Policy, metrics: RecoveryMetrics,
                 flush: Callable[[], Awaitable[object]] | None = None,
                 delivery_keyring: Keyring | None = None) -> None:
        """``keyring``: the contact keys (keyed hashes, opening contacts); ``delivery_keyring``
        seals the notice's contacts for the notifier (the same keyring when not given)."""
        self.uow = uow
        self.keyring = keyring
        self.delivery_keyring = delivery_keyring or keyring
        self.hasher = hasher
        self.clock = clock
        self.policy = policy
        self.metrics = metrics
        self.flush = flush  # publishes what the outbox holds (the relay), after a notice
        self._background: set[asyncio.Future[None]] = set()  # work after the answer

    async def __call__(self, command: LogIn) -> str | None:
        """The account id on success, ``None`` on any failure (the caller answers 401)."""
        now = self.clock.now()
        route = route_key(self.keyring, command.login)
        subjects = _Subjects(
            pair=self.keyring.keyed_hash("lockout", f"{route}|{command.client_ip or '-'}"),
            login=self.keyring.keyed_hash("lockout", route))
        loaded = await self.uow.run(lambda r: self._load(r, command, subjects, now))
        if loaded.throttled:
            self.metrics.logins.labels("throttled").inc()
            return None
        dummy = await self.hasher.dummy_hash()
        current_ok, pending_ok = await self.hasher.verify_many([
            (loaded.current or dummy, command.password),
            (loaded.pending[1] if loaded.pending else dummy, command.password),
        ])
        current_ok = current_ok and loaded.current is not None
        pending_ok = pending_ok and loaded.pending is not None
        if not loaded.allowed:
            self.metrics.logins.labels("locked").inc()
            return None
        if not (current_ok or pending_ok):
            self.metrics.logins.labels("failure").inc()
            return None
        account_id, noticed = await self.uow.run(
            lambda r: self._succeed(r, loaded, subjects, current_ok, pending_ok, now))
        if noticed:
            self.metrics.notices.inc()
            if self.flush is not None:  # published now, but the answer does not wait for it
                self._after_answer(self._publish_notice(self.flush))
        outcome = "failure" if account_id is None else ("activated" if noticed or not current_ok
                                                        else "success")
        self.metrics.logins.labels(outcome).inc()
        return account_id

    def _after_answer(self, work: Awaitable[None]) -> None:
        running = asyncio.ensure_future(work)
        self._background.add(running)
        running.add_done_callback(self._background.discard)

    @staticmethod
    async def _publish_notice(flush: Callable[[], Awaitable[object]]) -> None:
        """The notice is committed in the outbox with the activation: a broker away delays it
        (the relay's sweep publishes it later) and changes nothing of the login's answer."""
        try:
            await flush()
        except Exception as exc:
            log.warning("a password notice waits for the outbox sweep (%s)", type(exc).__name__)

    def _load(self, repos: Repositories, command: LogIn, subjects: _Subjects,
              now: float) -> _Loaded:
        policy = self.policy
        if command.client_ip is not None:
            address = self.keyring.keyed_hash("limit", "login-ip:" + command.client_ip)
            if repos.windows.take(address, policy.login_ip, now) is not None:
                return _Loaded(throttled=True)
        # the same statements either way, here and below: a lock must not answer faster
        _, locked_until = repos.failures.failures(subjects.login)
        if locked_until is not None and locked_until > now:  # everywhere: nothing is judged
            repos.failures.touch(subjects.pair, now=now)
            pair_place = None
        else:
            pair_place = repos.failures.reserve(subjects.pair, limit=policy.lockout_failures,
                                                lock_s=policy.lockout_s, now=now,
                                                login=subjects.login)
        login_place = None
        if pair_place is not None:  # refusals at one address do not count against the login
            login_place = repos.failures.reserve(subjects.login,
                                                 limit=policy.global_lockout_failures,
                                                 lock_s=policy.lockout_s, now=now)
        else:
            repos.failures.touch(subjects.login, now=now)
        candidates = candidate_keys(self.keyring, command.login)
        account = resolve(candidates, repos.accounts.by_keys([candidates]))
        usable = account is not None and account.status is AccountStatus.ACTIVE
        # an unknown login runs the same lookups (on no account): no difference in time
        account_id = account.account_id if account is not None and usable else ""
        current = repos.credentials.current(account_id)
        pending = repos.codes.newest_pending(account_id, now)
        if not usable:
            return _Loaded(pair_place=pair_place, login_place=login_place)
        return _Loaded(pair_place=pair_place, login_place=login_place, account=account,
                       current=current, pending=pending)

    def _succeed(self, repos: Repositories, loaded: _Loaded, subjects: _Subjects,
                 current_ok: bool, pending_ok: bool, now: float) -> tuple[str | None, bool]:
        """(account id or ``None``, whether a notice was staged).

        The hashes were verified outside any transaction, which takes seconds under load: the
        account is locked and read again first. Closed or erased meanwhile, it is not logged
        into; a password replaced or revoked meanwhile (a new holder, an activated code) no
        longer counts. A pending code is checked by its activation (a change of holder or of
        contacts voids it)."""
        assert loaded.account is not None
        assert loaded.pair_place is not None and loaded.login_place is not None
        aid = loaded.account.account_id
        account_id: str | None = None
        noticed = False
        repos.accounts.lock_versions([aid])
        still = repos.accounts.by_ids([aid])
        if not still or still[0].status is not AccountStatus.ACTIVE:
            return None, False
        current_ok = current_ok and repos.credentials.current(aid) == loaded.current
        if current_ok:
            account_id = aid
        elif pending_ok and loaded.pending is not None:
            code_id, hash_ = loaded.pending
            activated = repos.codes.activate(code_id, now)
            if activated is not None:
                account_id, code_hash, locale = activated
                repos.codes.void_pending(account_id, except_code=code_id)
                repos.credentials.set(account_id, code_hash, now)
                notice = password_changed(loaded.account, code_id=code_id,
                                          locale=locale, contact_keyring=self.keyring,
                                          delivery_keyring=self.delivery_keyring)
                if notice is not None:
                    repos.outbox.stage(PASSWORD_CHANGED, [notice])
                    noticed = True
            elif repos.credentials.current(loaded.account.account_id) == hash_:
                account_id = loaded.account.account_id  # a simultaneous login activated it
        if account_id is None:
            return None, False
        repos.failures.release(subjects.pair, loaded.pair_place,
                               limit=self.policy.lockout_failures)
        repos.failures.release(subjects.login, loaded.login_place,
                               limit=self.policy.global_lockout_failures)
        return account_id, noticed
