"""Recovery's request_log (support's index) and the login view over it, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import insert, select

from schemas.events import TvProduct
from services.common.consumer_loop import RawRecord
from services.common.crypto import Keyring, contact_aad, generate_key
from services.recovery.adapters import repository
from services.recovery.adapters.support_tables import KEEP_PER_LOGIN, KEEP_S
from services.recovery.adapters.support_tables import request_log as table
from services.recovery.adapters.tables import login_failures
from services.recovery.domain.model import Policy, route_key
from services.recovery.service_layer.support_view import ViewLogin
from tests.recovery.builders import POLICY, request
from tests.recovery.conftest import account_changed, new_mobile
from tests.recovery.integration.harness import Harness, harness


@pytest.fixture
def h(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    made = harness(database_url, keyring)
    yield made
    made.db.close()


def viewer(h: Harness, policy: Policy = POLICY) -> ViewLogin:
    return ViewLogin(uow=h.uow, keyring=h.keyring, clock=h.clock, sms_allowed=policy.sms_allowed)


async def test_each_decision_is_logged_with_its_outcome_and_shown_by_login(h: Harness) -> None:
    mobile = new_mobile()
    await h.accounts(account_changed(h.keyring, mobile=mobile))
    await h.requests(request(mobile, "email"))  # no email linked
    h.clock.advance(1)
    await h.requests(request("8" + mobile[2:], "sms"))
    h.clock.advance(1)
    await h.requests(request(mobile, "sms"))  # within the cool-down
    view = await viewer(h)(
        "+7 " + mobile[2:5] + " " + mobile[5:])
    assert view["found"] and view["account"]["mobile_masked"].startswith("+7******")
    assert view["channels"] == {"sms": {"usable": True, "reason": None},
                                "email": {"usable": False, "reason": "no_email_linked"}}
    got = [(r["outcome"], r["reason"], r["channel"]) for r in view["requests"]]
    assert got == [("rejected", "rate_limited", "sms"), ("issued", None, "sms"),
                   ("rejected", "channel_unavailable", "email")]
    issued = [t for t, v in h.staged() if t == "selfcare.code.issued.v1"]
    assert len(issued) == 1 and view["requests"][1]["code_id"] == h.codes()[0].code_id
    assert view["lockout"] == {"failures": 0, "locked": False, "locked_until": None,
                               "addresses_locked": 0, "addresses_locked_until": None}
    assert all(r["requested_at"] is not None and r["decided_at"] == h.clock.now() - 2 + i
               for i, r in enumerate(reversed(view["requests"])))
    assert mobile[2:] not in str(view)


async def test_a_dead_mobile_and_a_lock_out_are_shown(h: Harness) -> None:
    mobile = new_mobile()
    await h.accounts(account_changed(h.keyring, mobile=mobile, mobile_active=False))
    subject = h.keyring.keyed_hash("lockout", route_key(h.keyring, mobile))
    # a lock of the login everywhere (what reaching LOGIN_GLOBAL_LOCKOUT_FAILURES writes)
    h.db.run_sync(lambda s: s.execute(insert(login_failures).values(
        subject=subject, failures=100, locked_until=h.clock.now() + 600)))
    view = await viewer(h)(mobile)
    assert view["channels"]["sms"] == {"usable": False, "reason": "mobile_out_of_service"}
    assert view["lockout"]["locked"] and view["lockout"]["locked_until"] == h.clock.now() + 600
    unknown = await viewer(h)("+7 999 000-11-22")
    assert not unknown["found"] and unknown["login_valid"] and "account" not in unknown


async def test_a_mobile_outside_the_sms_prefixes_is_shown_as_a_code_request_finds_it(
        h: Harness, database_url: str) -> None:
    """``SMS_ALLOWED_PREFIXES`` narrowed to part of the country: a mobile outside it is refused
    SMS codes (``channel_unavailable``), and support's view says so and why, not "usable"."""
    narrowed = replace(POLICY, sms_prefixes=("+7916",))
    inside, outside = new_mobile(), "+7903" + new_mobile()[5:]
    for mobile in (inside, outside):
        await h.accounts(account_changed(h.keyring, mobile=mobile))
    assert (await viewer(h, narrowed)(inside))["channels"]["sms"] == {"usable": True, "reason": None}
    shown = await viewer(h, narrowed)(outside)
    assert shown["channels"]["sms"] == {"usable": False, "reason": "mobile_outside_sms_prefixes"}
    assert outside[2:] not in str(shown)
    assert (await viewer(h)(outside))["channels"]["sms"]["usable"]  # the default +79 takes it
    worker = harness(database_url, h.keyring, narrowed, clock=h.clock)  # recovery, narrowed
    try:
        await worker.requests(request(outside, "sms"))
    finally:
        worker.db.close()
    assert [r["reason"] for r in (await viewer(h, narrowed)(outside))["requests"]] == [
        "channel_unavailable"]


async def test_a_mobile_that_does_not_open_is_shown_as_such(h: Harness) -> None:
    """A mobile sealed with a key recovery does not hold (``CONTACT_KEYS`` rotated without the
    old key kept): support sees why SMS does not work."""
    mobile = new_mobile()
    event = account_changed(h.keyring, mobile=mobile)
    retired = Keyring.from_config(secret_keys=generate_key(), hash_pepper=None)
    foreign = retired.encrypt(mobile, aad=contact_aad(str(event.account_id), "mobile"))
    await h.accounts(event.model_copy(update={
        "contacts": event.contacts.model_copy(update={"mobile_enc": foreign})}))
    shown = await viewer(h)(mobile)
    assert shown["channels"]["sms"] == {"usable": False, "reason": "mobile_unreadable"}


async def test_a_lock_out_from_one_client_address_is_shown(h: Harness) -> None:
    """The common lock (``LOGIN_LOCKOUT_FAILURES`` wrong passwords from one address) is kept per
    login and address; support's view of the login shows how many addresses it is locked from,
    and until when, and no address."""
    mobile = new_mobile()
    await h.accounts(account_changed(h.keyring, mobile=mobile))
    for _ in range(POLICY.lockout_failures):
        assert await h.login(mobile, "wrong-pass", ip="198.51.100.7") is None
    h.clock.advance(60)
    for _ in range(POLICY.lockout_failures):
        assert await h.login("8" + mobile[2:], "wrong-pass", ip="2001:db8::7") is None
    assert await h.login(mobile, "wrong-pass", ip="198.51.100.8") is None  # open there
    view = await viewer(h)(mobile)
    lock = view["lockout"]
    assert not lock["locked"]  # not locked everywhere
    assert lock["failures"] == 2 * POLICY.lockout_failures + 1
    assert lock["addresses_locked"] == 2
    assert lock["addresses_locked_until"] == h.clock.now() + POLICY.lockout_s
    assert "198.51.100" not in str(view) and "2001:db8" not in str(view)
    h.clock.advance(POLICY.lockout_s - 59)  # the first lock is over, the second is not
    lock = (await viewer(h)(mobile))["lockout"]
    assert lock["addresses_locked"] == 1


def test_pruning_keeps_the_newest_rows_per_login_and_drops_old_ones(h: Harness) -> None:
    now = h.clock.now()

    def fill(session):  # type: ignore[no-untyped-def]
        rows = [{"login_key": key, "request_event_id": f"{key}-{i}", "account_id": None,
                 "channel": "sms", "outcome": "rejected", "reason": "unknown_login",
                 "retry_after_s": None, "code_id": None, "decided_at": at}
                for key, count, at in (("busy", 30, now), ("quiet", 3, now),
                                       ("old", 2, now - KEEP_S - 1))
                for i in range(count)]
        session.execute(table.insert(), rows)

    h.db.run_sync(fill)
    h.db.run_sync(lambda s: repository.prune_request_log(s, {"busy", "quiet"}, now))
    left = h.db.run_sync(lambda s: {k: [r.request_event_id for r in repository.last_requests(s, k, 100)]
                                    for k in ("busy", "quiet", "old")})
    assert left["busy"] == [f"busy-{i}" for i in range(29, 29 - KEEP_PER_LOGIN, -1)]
    assert len(left["quiet"]) == 3 and left["old"] == []


async def test_an_erased_personal_account_leaves_no_request_the_address_window_refused(
        h: Harness) -> None:
    """A request the client-address window refuses is decided before anything else, yet logged
    under its account: the erasure of a personal-account login (whose route key the account
    cannot give) then deletes it with the rest."""
    account = account_changed(h.keyring, product=TvProduct.LINEAR, personal_account="500100201")
    await h.accounts(account)
    ip = "203.0.113.50"  # POLICY: four requests per address in 300 s
    await h.requests(request("500100201", client_ip=ip))
    await h.requests(*[request(f"+7 916 000-00-0{i}", client_ip=ip) for i in range(3)])
    refused = request("500 100 201", client_ip=ip)
    await h.requests(refused)
    assert {v["request_event_id"]: v.get("reason") for _, v in h.staged()}[
        str(refused.event_id)] == "rate_limited"
    route = route_key(h.keyring, "500100201")

    def logged() -> list[tuple[object, ...]]:
        return [tuple(r) for r in h.db.run_sync(lambda s: s.execute(
            select(table.c.reason, table.c.account_id).where(table.c.login_key == route)).all())]

    assert sorted(logged(), key=str) == sorted([(None, str(account.account_id)),
                                                ("rate_limited", str(account.account_id))], key=str)
    await h.tombstones([RawRecord(topic="t", partition=0, offset=0,
                                  key=str(account.account_id).encode(), value=None, headers=[])])
    assert logged() == []
