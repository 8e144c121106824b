"""The decision handler over SQLite and PostgreSQL, with a fake clock and a fake hasher."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from schemas.events import AccountChanged, AccountStatus, TvProduct
from services.common.consumer_loop import RawRecord
from services.common.crypto import Keyring, code_aad
from services.recovery.adapters.repository import SqlProcessed
from services.recovery.adapters.support_tables import request_log
from services.recovery.service_layer.codes import unwritten_rate_events
from tests.recovery.builders import inbound, mobile_of, request
from tests.recovery.conftest import account_changed, new_mobile
from tests.recovery.integration.harness import Harness, harness


@pytest.fixture
def h(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    made = harness(database_url, keyring)
    yield made
    made.db.close()


def outcomes(h: Harness) -> dict[str, dict[str, object]]:
    return {str(v["request_event_id"]): {"topic": t, **v} for t, v in h.staged()}


async def test_issues_a_code_with_encrypted_destination_and_password(h: Harness) -> None:
    mobile = new_mobile()
    acc = account_changed(h.keyring, mobile=mobile)
    await h.accounts(acc)
    req = request("8" + mobile[2:], locale="en")
    await h.requests(req)
    (topic, issued), = h.staged()
    assert topic == "selfcare.code.issued.v1"
    assert issued["account_id"] == str(acc.account_id)
    assert issued["destination_masked"] == acc.contacts.mobile_masked
    assert issued["locale"] == "en"
    code_id = str(issued["code_id"])
    password = h.keyring.decrypt(str(issued["password_enc"]), aad=code_aad(code_id, "password"))
    assert h.keyring.decrypt(str(issued["destination_enc"]),
                             aad=code_aad(code_id, "destination")) == mobile
    (code,) = h.codes()
    assert code.hash == "fake$" + password and code.status == "pending"
    assert code.expires_at == h.clock.now() + 3600


async def test_same_request_twice_issues_one_code(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    req = request(acc_mobile(h, acc))
    await h.requests(req, req)  # twice in one batch
    await h.requests(req)  # and again later
    assert len(h.codes()) == 1 and len(h.staged()) == 1
    assert h.hasher.hashed == 1


def acc_mobile(h: Harness, acc: AccountChanged) -> str:
    return mobile_of(h.keyring, acc)


async def test_every_rejection_reason(h: Harness) -> None:
    closed = account_changed(h.keyring, status=AccountStatus.CLOSED)
    no_email = account_changed(h.keyring)
    dead_mobile = account_changed(h.keyring, mobile_active=False)
    cable = account_changed(h.keyring, product=TvProduct.LINEAR, personal_account="555566667777")
    await h.accounts(closed, no_email, dead_mobile, cable)
    reqs = {
        "account_closed": request(acc_mobile(h, closed)),
        "unknown_login": request("+7 916 000-00-01"),
        "channel_unavailable": request(acc_mobile(h, no_email), "email"),
        "channel_unavailable_sms": request(acc_mobile(h, dead_mobile)),
        "invalid_request": request("123"),
        "unknown_by_product": request(acc_mobile(h, cable)),  # cable logs in by account
    }
    await h.requests(*reqs.values())
    got = outcomes(h)
    reason = {name: got[str(r.event_id)]["reason"] for name, r in reqs.items()}
    assert reason == {
        "account_closed": "account_closed", "unknown_login": "unknown_login",
        "channel_unavailable": "channel_unavailable",
        "channel_unavailable_sms": "channel_unavailable",
        "invalid_request": "invalid_request", "unknown_by_product": "unknown_login",
    }
    unavailable = got[str(reqs["channel_unavailable"].event_id)]
    assert unavailable["advice"] == "contact_support"
    assert unavailable["support_phone"] == "8 800 250-08-90"
    assert all(v["topic"] == "selfcare.code.rejected.v1" for v in got.values())
    assert h.hasher.hashed == 0


async def test_limits_login_destination_ip(h: Harness) -> None:
    shared = "family@example.ru"
    accs = [account_changed(h.keyring, email=shared) for _ in range(4)]
    await h.accounts(*accs)
    first = request(acc_mobile(h, accs[0]))
    again = request(acc_mobile(h, accs[0]))  # same login, same batch
    await h.requests(first, again)
    got = outcomes(h)
    assert got[str(first.event_id)]["topic"] == "selfcare.code.issued.v1"
    assert got[str(again.event_id)]["reason"] == "rate_limited"
    assert got[str(again.event_id)]["retry_after_s"] == 60
    h.clock.advance(45)
    later = request(acc_mobile(h, accs[0]))
    await h.requests(later)
    assert outcomes(h)[str(later.event_id)]["retry_after_s"] == 15
    # per destination: 3 per 600 s, shared by the four accounts' email
    by_email = [request(acc_mobile(h, a), "email") for a in accs[1:]]
    h.clock.advance(20)
    await h.requests(*by_email)
    got = outcomes(h)
    assert [got[str(r.event_id)].get("reason") for r in by_email] == [None, None, None]
    h.clock.advance(61)
    extra = request(acc_mobile(h, accs[1]), "email")
    await h.requests(extra)
    assert outcomes(h)[str(extra.event_id)]["reason"] == "rate_limited"
    # per client IP: 4 per 300 s, whatever the login
    ip_reqs = [request("+7 916 000-00-0" + str(i), client_ip="203.0.113.9") for i in range(5)]
    await h.requests(*ip_reqs)
    got = outcomes(h)
    assert [got[str(r.event_id)]["reason"] for r in ip_reqs] == ["unknown_login"] * 4 + [
        "rate_limited"]


async def test_newer_code_voids_the_older_pending_one(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    await h.requests(request(acc_mobile(h, acc)))
    h.clock.advance(61)
    await h.requests(request(acc_mobile(h, acc)))
    assert [c.status for c in h.codes()] == ["voided", "pending"]


async def test_projection_keeps_the_newest_version(h: Harness) -> None:
    acc = account_changed(h.keyring, version=2)
    older = account_changed(h.keyring, version=1, account_id=acc.account_id,
                            status=AccountStatus.CLOSED)
    await h.accounts(acc)
    await h.accounts(older)
    req = request(acc_mobile(h, acc))
    await h.requests(req)
    assert outcomes(h)[str(req.event_id)]["topic"] == "selfcare.code.issued.v1"
    newer = account_changed(h.keyring, version=3, account_id=acc.account_id,
                            status=AccountStatus.CLOSED, mobile=acc_mobile(h, acc))
    await h.accounts(newer)
    h.clock.advance(61)
    req2 = request(acc_mobile(h, acc))
    await h.requests(req2)
    assert outcomes(h)[str(req2.event_id)]["reason"] == "account_closed"


async def test_without_cooldown_the_later_code_of_a_batch_voids_the_earlier(
        database_url: str, keyring: Keyring) -> None:
    from services.recovery.domain.model import Policy, Window

    h = harness(database_url, keyring, policy=Policy(login_cooldown=Window(max_events=1,
                                                                           window_s=0)))
    try:
        acc = account_changed(h.keyring)
        await h.accounts(acc)
        first, second = request(acc_mobile(h, acc)), request(acc_mobile(h, acc))
        await h.requests(first, second)
        by_request = {c.request_event_id: c.status for c in h.codes()}
        assert by_request == {str(first.event_id): "voided", str(second.event_id): "pending"}
    finally:
        h.db.close()


async def test_a_large_batch_is_decided_in_chunks_and_hashed_once_each(h: Harness) -> None:
    accs = [account_changed(h.keyring) for _ in range(120)]
    await h.accounts(*accs)
    reqs = [request(acc_mobile(h, a)) for a in accs] + [request(acc_mobile(h, accs[0]))]
    await h.requests(*reqs)
    got = outcomes(h)
    assert sum(v["topic"] == "selfcare.code.issued.v1" for v in got.values()) == 120
    assert got[str(reqs[-1].event_id)]["reason"] == "rate_limited"  # seen across chunks
    assert h.hasher.hashed == 120 and len(h.codes()) == 120


async def test_a_batch_decided_before_the_previous_one_is_written_counts_its_decisions(
        h: Harness) -> None:
    """Batches are decided while earlier ones still wait for argon2: the later one must see
    their limits and their ids, and the writes keep the decisions' order."""
    accs = [account_changed(h.keyring, email="shared@example.ru") for _ in range(6)]
    await h.accounts(*accs)
    first = request(acc_mobile(h, accs[0]))
    complete_first = await h.issue([inbound(first)])
    again = request(acc_mobile(h, accs[0]))  # same login: cooldown from the unwritten batch
    redelivered = first  # the same event again, before the first batch is written
    by_email = [request(acc_mobile(h, a), "email") for a in accs[1:]]  # destination limit: 3
    complete_second = await h.issue([inbound(e) for e in (again, redelivered, *by_email)])
    assert h.staged() == []  # nothing written yet
    second_done = asyncio.ensure_future(complete_second())
    await asyncio.sleep(0.05)
    assert not second_done.done() and h.staged() == []  # waits for the first batch's write
    await complete_first()
    await second_done
    got = outcomes(h)
    assert got[str(first.event_id)]["topic"] == "selfcare.code.issued.v1"
    assert got[str(again.event_id)]["reason"] == "rate_limited"
    assert [got[str(r.event_id)].get("reason") for r in by_email] == [None] * 3 + ["rate_limited"] * 2
    assert len(h.codes()) == 4 and h.hasher.hashed == 4
    assert h.staged()[0][1]["request_event_id"] == str(first.event_id)  # written first


async def test_limits_of_a_batch_written_meanwhile_are_counted_once(h: Harness) -> None:
    """A batch written between the snapshot of unwritten batches and the history read is
    counted from the table only: the three allowed codes per destination stay three."""
    accs = [account_changed(h.keyring, email="once@example.ru") for _ in range(4)]
    await h.accounts(*accs)
    two = [request(acc_mobile(h, a), "email") for a in accs[:2]]
    complete_two = await h.issue([inbound(e) for e in two])
    snapshot = h.in_order.ahead()  # as a later batch is given it
    assert h.db.run_sync(lambda s: unwritten_rate_events(snapshot, SqlProcessed(s).seen)) != []
    await complete_two()
    assert h.db.run_sync(lambda s: unwritten_rate_events(snapshot, SqlProcessed(s).seen)) == []
    rest = [request(acc_mobile(h, a), "email") for a in accs[2:]]
    await h.requests(*rest)
    got = outcomes(h)
    assert [got[str(r.event_id)].get("reason") for r in rest] == [None, "rate_limited"]


async def test_a_write_retried_after_the_database_was_away_keeps_its_place_in_line(
        h: Harness) -> None:
    from sqlalchemy.exc import OperationalError

    accs = [account_changed(h.keyring) for _ in range(2)]
    await h.accounts(*accs)
    first, second = (request(acc_mobile(h, a)) for a in accs)
    complete_first = await h.issue([inbound(first)])
    complete_second = await h.issue([inbound(second)])
    write = h.issue_codes._write
    failures = [OperationalError("INSERT", {}, ConnectionError("database away"))]

    def flaky(*args: object) -> object:
        if failures:
            raise failures.pop()
        return write(*args)  # type: ignore[arg-type]

    h.issue_codes._write = flaky  # type: ignore[method-assign]
    with pytest.raises(OperationalError):
        await complete_first()
    second_done = asyncio.ensure_future(complete_second())
    await asyncio.sleep(0.05)
    assert not second_done.done() and h.staged() == []  # still behind the first batch
    await complete_first()  # the runner's retry
    await second_done
    assert [v["request_event_id"] for _, v in h.staged()] == [str(first.event_id),
                                                              str(second.event_id)]


async def test_a_relink_or_an_erasure_projected_while_a_batch_is_hashed_is_what_its_write_sees(
        h: Harness) -> None:
    """Decided on the old state, written on the new: the re-linked account's code goes to its
    new mobile, the erased account's request is refused and leaves no row of it."""
    old_mobile, new_mobile_ = new_mobile(), new_mobile()
    acc = account_changed(h.keyring, product=TvProduct.LINEAR, personal_account="500100201",
                          mobile=old_mobile)
    gone = account_changed(h.keyring)
    await h.accounts(acc, gone)
    by_number, by_mobile = request("500100201"), request(acc_mobile(h, gone))
    complete = await h.issue([inbound(by_number), inbound(by_mobile)])
    relinked = account_changed(h.keyring, product=TvProduct.LINEAR, personal_account="500100201",
                               mobile=new_mobile_, version=2, account_id=acc.account_id)
    await h.accounts(relinked.model_copy(update={"holder_epoch": 1, "contacts_epoch": 1}))
    await h.tombstones([RawRecord(topic="t", partition=0, offset=0,
                                  key=str(gone.account_id).encode(), value=None, headers=())])
    await complete()
    got = outcomes(h)
    issued = got[str(by_number.event_id)]
    assert issued["topic"] == "selfcare.code.issued.v1"
    code_id = str(issued["code_id"])
    assert h.keyring.decrypt(str(issued["destination_enc"]),
                             aad=code_aad(code_id, "destination")) == new_mobile_
    assert got[str(by_mobile.event_id)]["reason"] == "unknown_login"
    assert [(c.code_id, c.status) for c in h.codes()] == [(code_id, "pending")]
    logged = h.db.run_sync(lambda s: s.execute(select(request_log.c.account_id)).scalars().all())
    assert logged == [str(acc.account_id)]


async def test_a_refusal_decided_before_an_erasure_leaves_no_log_entry_of_the_account(
        h: Harness) -> None:
    """A terminated account's request is refused (``account_closed``, naming the account in
    support's log); its erasure is projected before the batch is written: no log row of it."""
    closed = account_changed(h.keyring).model_copy(update={"status": AccountStatus.CLOSED})
    await h.accounts(closed)
    by_mobile = request(acc_mobile(h, closed))
    complete = await h.issue([inbound(by_mobile)])
    await h.tombstones([RawRecord(topic="t", partition=0, offset=0,
                                  key=str(closed.account_id).encode(), value=None, headers=())])
    await complete()
    assert outcomes(h)[str(by_mobile.event_id)]["reason"] == "account_closed"
    logged = h.db.run_sync(lambda s: s.execute(select(request_log.c.account_id)).scalars().all())
    assert logged == []
