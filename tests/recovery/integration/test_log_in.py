"""Password lifecycle and lock-out, over SQLite and PostgreSQL, with a fake clock and hasher."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.events import AccountStatus
from services.common.crypto import Keyring, code_aad
from tests.recovery.builders import mobile_of, request
from tests.recovery.conftest import account_changed
from tests.recovery.integration.harness import Harness, harness


@pytest.fixture
def h(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    made = harness(database_url, keyring, ttl=600)
    yield made
    made.db.close()


async def issue(h: Harness, login: str) -> str:
    """Request a code for ``login`` and return its password (decrypted as the notifier would)."""
    before = len(h.staged())
    await h.requests(request(login))
    _, issued = h.staged()[before]
    return h.keyring.decrypt(str(issued["password_enc"]),
                             aad=code_aad(str(issued["code_id"]), "password"))


async def test_pending_code_becomes_the_password_and_the_old_one_stops(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    first = await issue(h, login)
    assert await h.login(login, "wrong-pass") is None
    assert await h.login(login, first) == str(acc.account_id)  # activates it
    assert [c.status for c in h.codes()] == ["active"]
    h.clock.advance(61)
    second = await issue(h, login)
    assert await h.login(login, first) == str(acc.account_id)  # old still works while pending
    assert await h.login(login, second) == str(acc.account_id)  # new one activates
    assert await h.login(login, first) is None  # and the old one is gone


async def test_newer_code_voids_older_and_expired_code_is_refused(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    older = await issue(h, login)
    h.clock.advance(61)
    newer = await issue(h, login)
    assert await h.login(login, older) is None
    h.clock.advance(600)
    assert await h.login(login, newer) is None  # expired
    assert await h.login(login, "anything") is None


async def test_every_attempt_verifies_two_hashes_known_or_not(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    for login in (mobile_of(h.keyring, acc), "+7 916 000-11-22", "12"):
        before = h.hasher.verified
        assert await h.login(login, "nope-nope") is None
        assert h.hasher.verified - before == 2


async def test_lockout_after_consecutive_failures_and_its_expiry(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    password = await issue(h, login)
    assert await h.login(login, password) is not None
    for _ in range(3):
        assert await h.login(login, "bad-guess") is None
    assert await h.login(login, password) is None  # locked, even with the right password
    h.clock.advance(899)
    assert await h.login(login, password) is None
    h.clock.advance(2)
    assert await h.login(login, password) == str(acc.account_id)
    # a success resets the count: two failures, success, two failures — still open
    for _ in range(2):
        await h.login(login, "bad-guess")
    assert await h.login(login, password) is not None
    for _ in range(2):
        await h.login(login, "bad-guess")
    assert await h.login(login, password) is not None


async def test_closed_account_cannot_log_in(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    password = await issue(h, login)
    assert await h.login(login, password) is not None
    await h.accounts(account_changed(h.keyring, account_id=acc.account_id, version=2,
                                     status=AccountStatus.CLOSED, mobile=login))
    assert await h.login(login, password) is None
