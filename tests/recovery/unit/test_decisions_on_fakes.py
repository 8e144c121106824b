"""Decisions of recovery's handlers over the ``Fake*`` ports: issue, log in, project, erase,
limits and lock-out, with no database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from schemas.events import AccountChanged, AccountStatus, Channels, TvProduct
from schemas.topics import CODE_ISSUED, PASSWORD_CHANGED
from services.common.crypto import Keyring, code_aad, contact_aad
from services.common.masking import mask_phone
from services.recovery.domain.commands import EraseAccount
from services.recovery.domain.model import CodeStatus, Policy, Window, route_key
from services.recovery.entrypoints.agents import project_account
from tests.recovery.builders import mobile_of
from tests.recovery.conftest import FakeHasher, account_changed, new_mobile
from tests.recovery.fakes import FakeConflict, FakeDatabaseAway
from tests.recovery.unit.fake_service import FakeService


@pytest.fixture
def s() -> FakeService:
    return FakeService()


async def test_a_code_is_issued_hashed_stored_and_published_once(s: FakeService) -> None:
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    command = s.command(mobile_of(s.keyring, acc))
    await s.issue(command, command)  # the same request twice in one batch
    [issued] = s.published(CODE_ISSUED)
    [code] = s.uow.store.codes
    assert code.hash == "fake$" + s.password(issued) and code.status is CodeStatus.PENDING
    assert issued["code_id"] == code.code_id and code.account_id == str(acc.account_id)
    assert command.request_event_id in s.uow.store.processed
    await s.issue(command)  # redelivered: already processed, nothing more
    assert len(s.published()) == 1 and s.hasher.hashed == 1
    [entry] = s.uow.store.request_log
    assert entry.outcome == "issued" and entry.login_key == route_key(s.keyring, command.login)


async def test_unknown_closed_and_unusable_logins_are_rejected_with_their_reason(
        s: FakeService) -> None:
    closed = account_changed(s.keyring, status=AccountStatus.CLOSED)
    dead = account_changed(s.keyring, mobile_active=False)
    await s.accounts(closed, dead)
    commands = [s.command(new_mobile()), s.command(mobile_of(s.keyring, closed)),
                s.command(mobile_of(s.keyring, dead)), s.command(mobile_of(s.keyring, dead),
                                                                 "email")]
    await s.issue(*commands)
    assert [s.outcome(c)["reason"] for c in commands] == [
        "unknown_login", "account_closed", "channel_unavailable", "channel_unavailable"]
    assert s.published(CODE_ISSUED) == [] and s.uow.store.codes == []


async def test_cool_down_and_a_later_code_voids_the_earlier(s: FakeService) -> None:
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    login = mobile_of(s.keyring, acc)
    first, soon, later = s.command(login), s.command(login), s.command(login)
    await s.issue(first)
    s.clock.advance(10)
    await s.issue(soon)
    assert s.outcome(soon)["reason"] == "rate_limited" and s.outcome(soon)["retry_after_s"] == 50
    s.clock.advance(51)
    await s.issue(later)
    assert [c.status for c in s.uow.store.codes] == [CodeStatus.VOIDED, CodeStatus.PENDING]


async def test_a_batch_decided_before_the_previous_is_written_counts_its_limits(
        s: FakeService) -> None:
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    login = mobile_of(s.keyring, acc)
    first, second = s.command(login), s.command(login)
    complete_first = await s.decide(first)
    complete_second = await s.decide(second)  # the first is not written yet
    second_done = asyncio.ensure_future(complete_second())
    await asyncio.sleep(0.01)
    assert not second_done.done() and s.published() == []  # writes keep the order
    await complete_first()
    await second_done
    assert [v["request_event_id"] for v in s.published()] == [first.request_event_id,
                                                               second.request_event_id]
    assert s.outcome(second)["reason"] == "rate_limited"
    assert len(s.uow.store.rate_events) == 2  # the first batch's (login, destination) once


async def test_a_transient_failure_keeps_the_batch_in_line_and_another_gives_it_up(
        s: FakeService) -> None:
    accs = [account_changed(s.keyring) for _ in range(3)]
    await s.accounts(*accs)
    first, second, third = (s.command(mobile_of(s.keyring, a)) for a in accs)
    complete_first = await s.decide(first)
    s.uow.fail_next.append(FakeDatabaseAway())
    with pytest.raises(FakeDatabaseAway):
        await complete_first()
    assert len(s.in_order.pending) == 1  # still counted by later batches
    await complete_first()  # the runner's retry
    assert s.hasher.hashed == 1  # not hashed again
    complete_second = await s.decide(second)
    s.uow.fail_next.append(FakeConflict())
    with pytest.raises(FakeConflict):
        await complete_second()
    assert len(s.in_order.pending) == 0  # given up: redone one by one by the runner
    await s.issue(third)
    assert [v["request_event_id"] for v in s.published(CODE_ISSUED)] == [
        first.request_event_id, third.request_event_id]


async def test_limits_per_destination_client_address_and_sms_budget() -> None:
    s = FakeService(policy=Policy(per_destination=Window(max_events=2, window_s=600),
                                  per_ip=Window(max_events=3, window_s=300),
                                  login_cooldown=Window(max_events=0, window_s=0),
                                  sms_hourly=Window(max_events=3, window_s=3600)))
    shared = new_mobile()
    await s.accounts(account_changed(s.keyring, mobile=shared))
    to_one = [s.command(shared) for _ in range(3)]
    await s.issue(*to_one)
    assert [s.outcome(c).get("reason") for c in to_one] == [None, None, "rate_limited"]
    other = account_changed(s.keyring)
    await s.accounts(other)
    from_ip = [s.command(mobile_of(s.keyring, other), client_ip="192.0.2.7") for _ in range(4)]
    await s.issue(*from_ip)
    reasons = [s.outcome(c).get("reason") for c in from_ip]
    assert reasons == [None, "rate_limited", "rate_limited", "rate_limited"]
    assert len(s.published(CODE_ISSUED)) == 3  # the hourly SMS budget is spent
    # the 2nd is refused when written (the 1st took the budget's last SMS), and counted in its
    # destination's window, which refuses the 3rd
    assert s.metrics.sms_budget_exceeded.labels("sms")._value.get() == 1
    assert sum(1 for t in s.uow.store.windows["sms-budget"] if t > s.clock.now()) == 3
    ip = s.keyring.keyed_hash("limit", "ip:192.0.2.7")
    assert sum(1 for k, subject, _ in s.uow.store.rate_events if subject == ip) == 4


async def test_a_current_password_logs_in_and_a_code_becomes_it_with_a_notice(
        s: FakeService) -> None:
    acc = account_changed(s.keyring, email="someone@example.ru")
    await s.accounts(acc)
    login = mobile_of(s.keyring, acc)
    await s.issue(s.command(login))
    password = s.password(s.published(CODE_ISSUED)[0])
    assert await s.login(login, "wrong") is None
    assert await s.login(login, password) == str(acc.account_id)
    assert s.uow.store.credentials[str(acc.account_id)] == "fake$" + password
    assert [c.status for c in s.uow.store.codes] == [CodeStatus.ACTIVE]
    [notice] = s.published(PASSWORD_CHANGED)
    assert {c["channel"] for c in notice["contacts"]} == {"sms", "email"}
    assert await s.login(login, password) == str(acc.account_id)  # now the current password
    assert len(s.published(PASSWORD_CHANGED)) == 1
    assert s.hasher.verified == 6  # two verifications per attempt, whatever happens


async def test_lock_out_after_failures_unknown_logins_count_and_a_success_releases(
        s: FakeService) -> None:
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    login = mobile_of(s.keyring, acc)
    s.uow.store.credentials[str(acc.account_id)] = "fake$right"
    assert await s.login(login, "wrong", "192.0.2.1") is None
    assert await s.login(login, "right", "192.0.2.1") == str(acc.account_id)
    pair = s.keyring.keyed_hash("lockout", f"{route_key(s.keyring, login)}|192.0.2.1")
    assert s.uow.store.failures[pair] == (0, None)  # the success gave back both places
    for _ in range(s.policy.lockout_failures):
        assert await s.login(login, "wrong", "192.0.2.1") is None
    assert await s.login(login, "right", "192.0.2.1") is None  # locked
    assert await s.login(login, "right", "198.51.100.2") == str(acc.account_id)  # elsewhere
    s.clock.advance(s.policy.lockout_s)
    assert await s.login(login, "right", "192.0.2.1") == str(acc.account_id)  # lock expired
    unknown = new_mobile()
    for _ in range(s.policy.lockout_failures):
        assert await s.login(unknown, "x", "192.0.2.1") is None
    subject = s.keyring.keyed_hash("lockout", f"{route_key(s.keyring, unknown)}|192.0.2.1")
    assert s.uow.store.failures[subject][1] is not None  # unknown logins lock the same way


async def test_a_client_address_over_its_login_window_is_refused_before_hashing() -> None:
    s = FakeService(policy=Policy(login_ip=Window(max_events=2, window_s=60)))
    for _ in range(2):
        assert await s.login(new_mobile(), "x", "192.0.2.9") is None
    verified = s.hasher.verified
    assert await s.login(new_mobile(), "x", "192.0.2.9") is None
    assert s.hasher.verified == verified and s.metrics is not None


async def test_the_newest_version_wins_and_epochs_revoke(s: FakeService) -> None:
    acc = account_changed(s.keyring, version=2)
    await s.accounts(acc)
    aid = str(acc.account_id)
    await s.accounts(acc.model_copy(update={"version": 1, "status": AccountStatus.CLOSED}))
    assert s.uow.store.accounts[aid].version == 2  # an older version changes nothing
    login = mobile_of(s.keyring, acc)
    s.uow.store.credentials[aid] = "fake$old"
    await s.issue(s.command(login))
    await s.accounts(acc.model_copy(update={"version": 3, "contacts_epoch": 1}))
    assert [c.status for c in s.uow.store.codes] == [CodeStatus.VOIDED]  # went to old contacts
    assert aid in s.uow.store.credentials
    await s.accounts(acc.model_copy(update={"version": 4, "holder_epoch": 1}))
    assert aid not in s.uow.store.credentials  # a new holder: the password is revoked
    assert s.uow.store.accounts[aid] == project_account(
        acc.model_copy(update={"version": 4, "holder_epoch": 1}))


async def test_an_erased_account_leaves_nothing_derivable(s: FakeService) -> None:
    acc, kept = account_changed(s.keyring), account_changed(s.keyring)
    await s.accounts(acc, kept)
    aid = str(acc.account_id)
    login = mobile_of(s.keyring, acc)
    await s.issue(s.command(login), s.command(mobile_of(s.keyring, kept)))
    await s.login(login, "wrong", "192.0.2.1")
    s.uow.store.credentials[aid] = "fake$x"
    before = len(s.uow.published)
    assert await s.projection.erase([EraseAccount(account_id=aid),
                                     EraseAccount(account_id=str(uuid.uuid4()))]) == 1
    # a tombstone for the known account's key on each topic keyed by it, none for the unknown
    assert [(t, r.key, r.value) for t, r in s.uow.published[before:]] == [
        (CODE_ISSUED, aid.encode(), None), (PASSWORD_CHANGED, aid.encode(), None)]
    store = s.uow.store
    assert aid not in store.accounts and aid not in store.credentials
    assert [c.account_id for c in store.codes] == [str(kept.account_id)]
    assert [e.account_id for e in store.request_log] == [str(kept.account_id)]
    assert len(store.rate_events) == 2  # the kept account's login and destination
    assert s.keyring.keyed_hash("lockout", route_key(s.keyring, login)) not in store.failures
    assert await s.projection.erase([EraseAccount(account_id=aid)]) == 0  # idempotent
    assert len(s.uow.published) == before + 2  # and nothing staged again


def relinked(acc: AccountChanged, keyring: Keyring, **update: Any) -> AccountChanged:
    """``acc`` re-linked by the CRM to a new holder with a new mobile (same logins)."""
    mobile = new_mobile()
    aid = str(acc.account_id)
    contacts = acc.contacts.model_copy(update={
        "mobile_masked": mask_phone(mobile),
        "mobile_enc": keyring.encrypt(mobile, aad=contact_aad(aid, "mobile"))})
    return acc.model_copy(update={"version": acc.version + 1, "holder_epoch": 1,
                                  "contacts_epoch": 1, "contacts": contacts, **update})


def destination(s: FakeService, issued: dict[str, Any]) -> str:
    return s.keyring.decrypt(str(issued["destination_enc"]),
                             aad=code_aad(str(issued["code_id"]), "destination"))


async def test_a_code_decided_before_a_relink_goes_to_the_account_as_it_stands_when_written(
        s: FakeService) -> None:
    """The old holder asks for a code by the personal account, which a re-link keeps; the re-link
    is projected while the batch is hashed. The code must not reach the old holder's mobile."""
    acc = account_changed(s.keyring, product=TvProduct.LINEAR, personal_account="500100200")
    await s.accounts(acc)
    old_mobile = mobile_of(s.keyring, acc)
    command = s.command("500 100 200")
    complete = await s.decide(command)
    new = relinked(acc, s.keyring)
    await s.accounts(new)  # voids the pending codes it finds: none is written yet
    await complete()
    [issued] = s.published(CODE_ISSUED)
    assert destination(s, issued) == mobile_of(s.keyring, new) != old_mobile
    assert issued["destination_masked"] == new.contacts.mobile_masked
    [code] = s.uow.store.codes
    assert code.status is CodeStatus.PENDING and code.hash == "fake$" + s.password(issued)
    [entry] = s.uow.store.request_log
    assert entry.outcome == "issued" and entry.code_id == issued["code_id"]
    assert command.request_event_id in s.uow.store.processed


@pytest.mark.parametrize(("change", "reason"), [
    ({"status": AccountStatus.CLOSED}, "account_closed"),
    ({"channels": Channels(sms=False, email=False)}, "channel_unavailable"),
])
async def test_a_code_decided_before_a_termination_or_a_dead_mobile_is_refused_as_it_would_be_now(
        s: FakeService, change: dict[str, Any], reason: str) -> None:
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    command = s.command(mobile_of(s.keyring, acc))
    complete = await s.decide(command)
    await s.accounts(acc.model_copy(update={"version": 2, **change}))
    await complete()
    assert s.published(CODE_ISSUED) == [] and s.uow.store.codes == []
    assert s.outcome(command)["reason"] == reason
    [entry] = s.uow.store.request_log
    assert entry.outcome == "rejected" and entry.account_id == str(acc.account_id)


async def test_a_code_decided_before_an_erasure_leaves_nothing_of_the_account(
        s: FakeService) -> None:
    acc, other = account_changed(s.keyring), account_changed(s.keyring)
    await s.accounts(acc, other)
    aid = str(acc.account_id)
    gone, kept = s.command(mobile_of(s.keyring, acc)), s.command(mobile_of(s.keyring, other))
    complete = await s.decide(gone, kept)
    await s.projection.erase([EraseAccount(account_id=aid)])
    await complete()
    [issued] = [v for v in s.published(CODE_ISSUED) if v is not None]  # the other account's
    assert issued["account_id"] == str(other.account_id)
    assert s.outcome(gone)["reason"] == "unknown_login"
    assert [c.account_id for c in s.uow.store.codes] == [str(other.account_id)]
    assert [e.request_event_id for e in s.uow.store.request_log] == [kept.request_event_id]
    # the rate events left are the other request's (its login and destination) only
    erased_subjects = {s.keyring.keyed_hash("limit", "account:" + aid),
                       s.keyring.keyed_hash("limit", "destination:sms:"
                                            + mobile_of(s.keyring, acc).lower())}
    assert len(s.uow.store.rate_events) == 2
    assert not erased_subjects & {e[1] for e in s.uow.store.rate_events}
    assert {gone.request_event_id, kept.request_event_id} <= s.uow.store.processed


@pytest.mark.parametrize("change, reason", [
    ({"status": AccountStatus.CLOSED}, "account_closed"),  # terminated, then erased
    ({"channels": Channels(sms=False, email=False)}, "channel_unavailable"),
], ids=["account_closed", "channel_unavailable"])
async def test_a_refusal_decided_before_an_erasure_leaves_no_log_entry_of_the_account(
        s: FakeService, change: dict[str, object], reason: str) -> None:
    """A refusal names its account in support's log; written after the account's erasure, it
    would put the erased account's id and login back into the database."""
    acc = account_changed(s.keyring).model_copy(update=change)
    await s.accounts(acc)
    aid = str(acc.account_id)
    command = s.command(mobile_of(s.keyring, acc))
    complete = await s.decide(command)
    await s.projection.erase([EraseAccount(account_id=aid)])
    await complete()
    assert s.outcome(command)["reason"] == reason  # answered as decided
    assert s.uow.store.request_log == []
    assert command.request_event_id in s.uow.store.processed


async def test_a_version_change_that_keeps_the_destination_issues_as_decided(
        s: FakeService) -> None:
    acc = account_changed(s.keyring, email="ivanov@example.ru")
    await s.accounts(acc)
    command = s.command(mobile_of(s.keyring, acc), "email")
    complete = await s.decide(command)
    await s.accounts(acc.model_copy(update={"version": 2, "tv_product": TvProduct.INTERACTIVE}))
    await complete()
    [issued] = s.published(CODE_ISSUED)
    assert destination(s, issued) == "ivanov@example.ru"
    assert [c.status for c in s.uow.store.codes] == [CodeStatus.PENDING]


async def test_a_login_that_activates_a_code_answers_whatever_the_broker_does(
        s: FakeService, caplog: pytest.LogCaptureFixture) -> None:
    """The activation and its notice are committed (the notice in the outbox) before anything is
    published: a broker away when the notice is flushed must not turn the login into an error,
    nor hold its answer; the relay's sweep publishes the notice later."""
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    login = mobile_of(s.keyring, acc)
    await s.issue(s.command(login))
    password = s.password(s.published(CODE_ISSUED)[0])
    flushes: list[asyncio.Future[None]] = []

    async def broker_away() -> None:
        flushes.append(asyncio.get_running_loop().create_future())
        await flushes[-1]  # the broker does not answer ...
        raise KafkaConnectionError("broker away")  # ... and then fails

    s.log_in.flush = broker_away
    assert await s.login(login, password) == str(acc.account_id)  # answered while it waits
    assert [c.status for c in s.uow.store.codes] == [CodeStatus.ACTIVE]
    await asyncio.sleep(0)  # the publishing starts
    [waiting] = flushes
    waiting.set_result(None)
    for _ in range(3):
        await asyncio.sleep(0)
    assert "a password notice waits for the outbox sweep (KafkaConnectionError)" in caplog.text
    assert await s.login(login, password) == str(acc.account_id)  # the current password now


class ChangingHasher(FakeHasher):
    """Runs ``meanwhile`` once, while the next login's hashes are verified (outside any
    transaction, seconds under load)."""

    meanwhile: Callable[[], Awaitable[None]] | None = None

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        if self.meanwhile is not None:
            change, self.meanwhile = self.meanwhile, None
            await change()
        return await super().verify_many(pairs)


async def logged_in_once(s: FakeService, acc: AccountChanged, login: str) -> str:
    """The account's password, set by logging in with an issued code."""
    await s.issue(s.command(login))
    password = s.password(s.published(CODE_ISSUED)[-1])
    assert await s.login(login, password) == str(acc.account_id)
    return password


@pytest.mark.parametrize("change", ["relinked", "closed", "erased"])
async def test_a_password_revoked_while_it_is_verified_does_not_log_in(change: str) -> None:
    """The old holder logs in by the personal account, which a re-link keeps; the re-link (or a
    termination, or an erasure) is projected while the hashes are verified. The password it
    revoked must not open the account as it now stands."""
    hasher = ChangingHasher()
    s = FakeService(hasher=hasher)
    acc = account_changed(s.keyring, product=TvProduct.LINEAR, personal_account="500100201")
    await s.accounts(acc)
    password = await logged_in_once(s, acc, "500100201")

    async def meanwhile() -> None:
        if change == "relinked":
            await s.accounts(relinked(acc, s.keyring, version=3))
        elif change == "closed":
            await s.accounts(acc.model_copy(update={"version": 3, "status": AccountStatus.CLOSED}))
        else:
            await s.projection.erase([EraseAccount(account_id=str(acc.account_id))])

    hasher.meanwhile = meanwhile
    assert await s.login("500100201", password, ip="192.0.2.9") is None


async def test_a_code_of_an_account_closed_while_it_is_verified_is_not_activated() -> None:
    hasher = ChangingHasher()
    s = FakeService(hasher=hasher)
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    login = mobile_of(s.keyring, acc)
    await s.issue(s.command(login))
    code = s.password(s.published(CODE_ISSUED)[0])

    async def close() -> None:
        await s.accounts(acc.model_copy(update={"version": 2, "status": AccountStatus.CLOSED}))

    hasher.meanwhile = close
    assert await s.login(login, code) is None
    assert [c.status for c in s.uow.store.codes] == [CodeStatus.PENDING]
    assert s.published(PASSWORD_CHANGED) == []


async def test_a_change_that_keeps_the_holder_and_the_password_still_logs_in() -> None:
    """A new version (here a product change) while the hashes are verified: the password is
    still the account's, and it opens it."""
    hasher = ChangingHasher()
    s = FakeService(hasher=hasher)
    acc = account_changed(s.keyring)
    await s.accounts(acc)
    login = mobile_of(s.keyring, acc)
    password = await logged_in_once(s, acc, login)

    async def keep() -> None:
        await s.accounts(acc.model_copy(update={"version": 3, "tv_product": TvProduct.INTERACTIVE}))

    hasher.meanwhile = keep
    assert await s.login(login, password) == str(acc.account_id)
