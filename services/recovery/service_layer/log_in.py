"""Handler of a login: the current password, or the newest pending code, which then becomes it.

Every attempt verifies exactly two hashes (the dummy hash stands in for a missing one), so an
unknown login costs the same time as a known one. Failures count per login; after
``lockout_failures`` in a row the login is refused for ``lockout_s`` (unknown logins too).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from schemas.events import AccountStatus
from services.common.crypto import Keyring
from services.common.db import Database
from services.common.logins import candidate_keys
from services.recovery.adapters import credentials, repository
from services.recovery.adapters.metrics import RecoveryMetrics
from services.recovery.domain.limits import Policy
from services.recovery.domain.resolve import resolve, route_key
from services.recovery.service_layer.ports import Clock, PasswordHasher


@dataclass(frozen=True, kw_only=True)
class LogInCommand:
    login: str
    password: str
    client_ip: str | None = None


@dataclass(frozen=True)
class _Known:
    locked: bool
    account_id: str | None
    current: str | None
    pending: tuple[str, str] | None  # code_id, hash


class LogIn:
    def __init__(self, *, db: Database, keyring: Keyring, hasher: PasswordHasher, clock: Clock,
                 policy: Policy, metrics: RecoveryMetrics) -> None:
        self.db = db
        self.keyring = keyring
        self.hasher = hasher
        self.clock = clock
        self.policy = policy
        self.metrics = metrics

    async def __call__(self, command: LogInCommand) -> str | None:
        """The account id on success, ``None`` on any failure (the caller answers 401)."""
        now = self.clock.now()
        subject = self.keyring.keyed_hash("lockout", route_key(self.keyring, command.login))
        known = await self.db.run(lambda s: self._load(s, command.login, subject, now))
        if known.locked:
            self.metrics.logins.labels("locked").inc()
            return None
        dummy = await self.hasher.dummy_hash()
        current_ok, pending_ok = await self.hasher.verify_many([
            (known.current or dummy, command.password),
            (known.pending[1] if known.pending else dummy, command.password),
        ])
        current_ok = current_ok and known.current is not None
        pending_ok = pending_ok and known.pending is not None
        account_id = await self.db.run(
            lambda s: self._settle(s, known, subject, current_ok, pending_ok, now))
        outcome = "failure" if account_id is None else ("activated" if pending_ok and not current_ok
                                                         else "success")
        self.metrics.logins.labels(outcome).inc()
        return account_id

    def _load(self, session: Session, login: str, subject: str, now: float) -> _Known:
        _count, locked_until = credentials.failures(session, subject)
        if locked_until is not None and locked_until > now:
            return _Known(locked=True, account_id=None, current=None, pending=None)
        candidates = candidate_keys(self.keyring, login)
        account = resolve(candidates, repository.accounts_by_keys(session, [candidates]))
        if account is None or account.status is not AccountStatus.ACTIVE:
            return _Known(locked=False, account_id=None, current=None, pending=None)
        return _Known(
            locked=False, account_id=account.account_id,
            current=credentials.current_password(session, account.account_id),
            pending=credentials.newest_pending(session, account.account_id, now),
        )

    def _settle(self, session: Session, known: _Known, subject: str, current_ok: bool,
                pending_ok: bool, now: float) -> str | None:
        account_id: str | None = None
        if current_ok:
            account_id = known.account_id
        elif pending_ok and known.pending is not None:
            account_id = credentials.activate_code(session, known.pending[0], now)
        if account_id is not None:
            credentials.save_failures(session, subject, 0, None)
            return account_id
        count, _ = credentials.failures(session, subject)
        count += 1
        if count >= self.policy.lockout_failures:
            credentials.save_failures(session, subject, 0, now + self.policy.lockout_s)
        else:
            credentials.save_failures(session, subject, count, None)
        return None
