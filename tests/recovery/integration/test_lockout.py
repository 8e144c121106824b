"""The lock-out and the per-address login window, over SQLite and PostgreSQL.

Simultaneous attempts are real: verifications take time (``SlowHasher``), and "two workers" are
two handlers with their own database connections and threads on one database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from schemas.events import TvProduct
from services.common.crypto import Keyring, code_aad
from services.recovery.adapters.repository import failures as failures_of
from services.recovery.domain.model import route_key
from tests.recovery.builders import POLICY, mobile_of, request
from tests.recovery.conftest import FakeHasher, account_changed
from tests.recovery.integration.harness import Harness, harness

POLICY_5 = replace(POLICY, lockout_failures=5, global_lockout_failures=100,
                   login_ip=replace(POLICY.per_ip, max_events=1000, window_s=60))


class SlowHasher(FakeHasher):
    """Each verification yields to the loop for a while, so attempts overlap; records every
    (hash, password) pair verified."""

    def __init__(self, delay_s: float = 0.02) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.pairs: list[tuple[str, str]] = []

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        await asyncio.sleep(self.delay_s)
        self.pairs.extend(pairs)
        return await super().verify_many(pairs)


@pytest.fixture
def h(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    made = harness(database_url, keyring, POLICY_5, hasher=SlowHasher())
    yield made
    made.db.close()


async def issue(h: Harness, login: str) -> str:
    before = len(h.staged())
    await h.requests(request(login))
    _, issued = h.staged()[before]
    return h.keyring.decrypt(str(issued["password_enc"]),
                             aad=code_aad(str(issued["code_id"]), "password"))


async def with_password(h: Harness) -> tuple[str, str, str]:
    """An account whose current password is set: (login, password, account id)."""
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    password = await issue(h, login)
    assert await h.login(login, password, "198.51.100.1") == str(acc.account_id)
    return login, password, str(acc.account_id)


def judged(handlers: Sequence[Harness], outcome: str) -> int:
    """Attempts with that outcome over every handler (``failure``: a wrong guess was judged;
    ``locked``: refused whatever the password)."""
    return sum(int(x.metrics.logins.labels(outcome)._value.get()) for x in handlers)


@pytest.mark.parametrize("workers", [1, 2])
async def test_50_simultaneous_wrong_guesses_lock_and_the_lock_holds(
        h: Harness, database_url: str, workers: int) -> None:
    login, password, _ = await with_password(h)
    handlers = [h] + [harness(database_url, h.keyring, POLICY_5, hasher=h.hasher, clock=h.clock)
                      for _ in range(workers - 1)]
    try:
        results = await asyncio.gather(*[
            handlers[i % workers].login(login, f"guess-{i:02d}", "203.0.113.9")
            for i in range(50)])
        assert results == [None] * 50
        assert judged(handlers, "failure") == 5 and judged(handlers, "locked") == 45
        assert await h.login(login, password, "203.0.113.9") is None  # locked
        h.clock.advance(60)
        assert await handlers[-1].login(login, password, "203.0.113.9") is None  # still
        h.clock.advance(900)
        assert await h.login(login, password, "203.0.113.9") is not None  # expired
    finally:
        for other in handlers[1:]:
            other.db.close()


async def test_attempts_overlapping_the_fifth_failure_never_erase_the_lock(h: Harness) -> None:
    """The old bug: 21, 23 or 27 simultaneous failures left the login open."""
    login, password, _ = await with_password(h)
    for burst in (21, 23, 27):
        await asyncio.gather(*[h.login(login, f"x{i}", "203.0.113.7") for i in range(burst)])
        assert await h.login(login, password, "203.0.113.7") is None
        h.clock.advance(901)
        assert await h.login(login, password, "203.0.113.7") is not None


async def test_failures_from_one_address_do_not_lock_another_until_the_global_count(
        database_url: str, keyring: Keyring) -> None:
    h = harness(database_url, keyring, replace(POLICY, lockout_failures=3,
                                               global_lockout_failures=10))
    try:
        login, password, account_id = await with_password(h)
        for _ in range(30):  # one attacker's address: locked there after 3
            assert await h.login(login, "guess", "203.0.113.66") is None
        assert await h.login(login, password, "203.0.113.66") is None
        assert await h.login(login, password, "192.0.2.10") == account_id
        # from many addresses: 10 failures in all lock the login everywhere
        for n in range(4):
            for _ in range(3):
                await h.login(login, "guess", f"203.0.113.{100 + n}")
        assert await h.login(login, password, "192.0.2.10") is None
        assert await h.login(login, password, "192.0.2.11") is None
        h.clock.advance(901)
        assert await h.login(login, password, "192.0.2.10") == account_id
    finally:
        h.db.close()


def pair_count(h: Harness, login: str, ip: str) -> tuple[int, float | None]:
    """The failure count of ``login`` from ``ip``, and when its lock ends."""
    subject = h.keyring.keyed_hash("lockout", f"{route_key(h.keyring, login)}|{ip}")
    return h.db.run_sync(lambda s: failures_of(s, subject))


async def test_the_right_password_during_the_lock_everywhere_does_not_lock_its_address(
        database_url: str, keyring: Keyring) -> None:
    """While the login is locked everywhere (an attack from many addresses) nothing is judged, so
    no attempt takes a place in its address's count: the subscriber typing the right password at
    home late in the lock is refused each time, and is not locked out at home past it. Wrong
    guesses made before the lock stay counted at their address."""
    policy = replace(POLICY, lockout_failures=3, global_lockout_failures=10,
                     login_ip=replace(POLICY.per_ip, max_events=1000, window_s=60))
    h = harness(database_url, keyring, policy)
    try:
        login, password, account_id = await with_password(h)
        for _ in range(2):  # two wrong guesses from home, before the attack
            assert await h.login(login, "typo", "192.0.2.10") is None
        for n in range(4):  # 12 wrong guesses from four addresses: locked everywhere
            for _ in range(3):
                await h.login(login, "guess", f"203.0.113.{100 + n}")
        h.clock.advance(policy.lockout_s - 100)  # late in the lock everywhere:
        for _ in range(2 * policy.lockout_failures):  # home, the right password, refused
            assert await h.login(login, password, "192.0.2.10") is None
        assert pair_count(h, login, "192.0.2.10") == (2, None)  # as before the lock
        h.clock.advance(101)  # the lock everywhere is over
        assert await h.login(login, password, "192.0.2.10") == account_id
        assert pair_count(h, login, "192.0.2.10") == (0, None)  # a success resets it
    finally:
        h.db.close()


class GatedHasher(FakeHasher):
    """Verifications of ``password`` wait for ``gate`` (``entered`` is set when one does)."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password
        self.gate, self.entered = asyncio.Event(), asyncio.Event()

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        if any(p == self.password for _, p in pairs) and not self.gate.is_set():
            self.entered.set()
            await self.gate.wait()
        return await super().verify_many(pairs)


async def test_an_attempt_refused_by_the_lock_everywhere_cannot_undo_a_later_lock(
        database_url: str, keyring: Keyring) -> None:
    """An attempt made in the last second of the lock everywhere is still being verified when the
    lock ends, a success resets its address, and five wrong guesses lock the address again: when
    the old attempt is refused at last, the new lock stands (DESIGN: nothing erases a lock)."""
    policy = replace(POLICY, lockout_failures=5, global_lockout_failures=10,
                     login_ip=replace(POLICY.per_ip, max_events=1000, window_s=60))
    h = harness(database_url, keyring, policy)
    try:
        login, password, account_id = await with_password(h)
        for n in range(2):  # 10 wrong guesses from two addresses: locked everywhere
            for _ in range(5):
                await h.login(login, "guess", f"203.0.113.{100 + n}")
        h.clock.advance(policy.lockout_s - 1)
        h.log_in.hasher = gated = GatedHasher(password)
        late = asyncio.ensure_future(h.login(login, password, "192.0.2.10"))
        await gated.entered.wait()
        h.clock.advance(2)  # the lock everywhere is over
        h.log_in.hasher = FakeHasher()
        assert await h.login(login, password, "192.0.2.10") == account_id
        for i in range(policy.lockout_failures):
            assert await h.login(login, f"wrong-{i}", "192.0.2.10") is None
        locked = pair_count(h, login, "192.0.2.10")
        gated.gate.set()
        assert await late is None  # refused: it was judged under the lock everywhere
        assert pair_count(h, login, "192.0.2.10") == locked and locked[0] == 5
        h.clock.advance(10)
        assert await h.login(login, password, "192.0.2.10") is None  # the address's lock holds
    finally:
        h.db.close()


async def test_a_success_resets_the_counts_and_a_new_code_does_not(h: Harness) -> None:
    login, password, account_id = await with_password(h)
    for _ in range(4):
        await h.login(login, "guess", "192.0.2.1")
    assert await h.login(login, password, "192.0.2.1") == account_id
    for _ in range(4):
        await h.login(login, "guess", "192.0.2.1")
    h.clock.advance(61)
    await issue(h, login)  # a new code leaves the count as it is
    assert await h.login(login, "guess", "192.0.2.1") is None  # the fifth
    assert await h.login(login, password, "192.0.2.1") is None


async def test_unknown_logins_lock_too_and_locked_attempts_verify_the_real_hashes(
        h: Harness) -> None:
    unknown = "+7 916 000 12 34"
    for _ in range(5):
        await h.login(unknown, "guess", "192.0.2.5")
    before = h.metrics.logins.labels("locked")._value.get()
    await h.login(unknown, "guess", "192.0.2.5")
    assert h.metrics.logins.labels("locked")._value.get() == before + 1
    login, password, _ = await with_password(h)
    for _ in range(5):
        await h.login(login, "guess", "192.0.2.6")
    assert isinstance(h.hasher, SlowHasher)
    h.hasher.pairs.clear()
    assert await h.login(login, password, "192.0.2.6") is None
    assert len(h.hasher.pairs) == 2 and h.hasher.pairs[0] == ("fake$" + password, password)


async def test_logins_per_address_beyond_the_window_cost_no_hashing_and_no_failure(
        database_url: str, keyring: Keyring) -> None:
    policy = replace(POLICY_5, login_ip=replace(POLICY.per_ip, max_events=4, window_s=60))
    h = harness(database_url, keyring, policy)
    try:
        login, password, account_id = await with_password(h)  # 1 login from 198.51.100.1
        for _ in range(2):
            await h.login(login, "guess", "198.51.100.1")
        verified = h.hasher.verified
        for _ in range(10):  # 1 more fits in the window, the other 9 are turned away
            assert await h.login(login, "guess", "198.51.100.1") is None
        assert h.hasher.verified - verified == 2
        assert h.metrics.logins.labels("throttled")._value.get() == 9
        assert await h.login(login, password, "198.51.100.2") == account_id  # other address
        h.clock.advance(61)
        # 3 failures counted here, not 12: the login is still open from this address
        assert await h.login(login, password, "198.51.100.1") == account_id
    finally:
        h.db.close()


async def test_a_personal_account_typed_two_ways_has_one_lock_out_count(h: Harness) -> None:
    """A linear-TV login that also reads as a mobile, typed plainly and with a no-break space:
    both reach the account, so both count against one lock-out (they had one count each)."""
    acc = account_changed(h.keyring, product=TvProduct.LINEAR, personal_account="89161110003")
    await h.accounts(acc)
    plain, spaced = "89161110003", "8916111\u00a00003"
    password = await issue(h, plain)
    assert await h.login(spaced, password, "198.51.100.1") == str(acc.account_id)
    for i in range(5):
        assert await h.login(plain, f"wrong-{i}", "203.0.113.5") is None
    assert await h.login(spaced, password, "203.0.113.5") is None  # locked whichever way typed
    assert await h.login(spaced, "wrong-5", "203.0.113.5") is None
    assert judged([h], "failure") == 5


@pytest.mark.parametrize("lowered", ["per address", "everywhere"])
async def test_a_count_over_a_lowered_limit_is_a_lock_that_ends(
        h: Harness, database_url: str, keyring: Keyring, lowered: str) -> None:
    """Four wrong guesses under a limit of 5 leave a count of 4 and no lock. Lowered to 3 (the
    operators' answer to an attack), that count is over the limit: it must hold as a lock from
    its last counted attempt and end as a lock does, not refuse the right password for as long
    as the row lives (retention: weeks)."""
    login, password, account_id = await with_password(h)
    for n in range(4):
        assert await h.login(login, "wrong-pass", ip="192.0.2.7" if lowered == "per address"
                             else f"192.0.2.{10 + n}") is None
    policy = (replace(POLICY_5, lockout_failures=3) if lowered == "per address"
              else replace(POLICY_5, global_lockout_failures=3))
    lower = harness(database_url, keyring, policy, clock=h.clock)
    try:
        assert await lower.login(login, password, ip="192.0.2.7") is None  # locked for now
        h.clock.advance(policy.lockout_s + 1)
        assert await lower.login(login, password, ip="192.0.2.7") == account_id
    finally:
        lower.db.close()
