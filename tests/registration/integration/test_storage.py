"""The repository and the handlers on a real database: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from schemas.events import ContractLinked, ContractTerminated
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.common.db import Database, Staged
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.tables import accounts, outbox, processed_events
from services.registration.domain.model import Outcome
from services.registration.entrypoints.agents import to_link, to_termination
from services.registration.service_layer.link_contract import link_contracts
from services.registration.service_layer.terminate_contract import terminate_contracts
from tests.registration.events import linked, not_after, terminated


class Store:
    def __init__(self, db: Database, protector: KeyringProtector) -> None:
        self.db = db
        self.handed: list[Staged] = []  # as the relay is handed them
        self.uow = SqlUnitOfWork(db=db, hand_over=self.handed.extend)
        self.protector = protector

    async def link(self, *events: dict[str, Any]) -> dict[Outcome, int]:
        commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
        return dict(await link_contracts(commands, uow=self.uow, protector=self.protector,
                                          not_after=not_after()))

    async def terminate(self, *events: dict[str, Any]) -> dict[Outcome, int]:
        commands = [to_termination(ContractTerminated.model_validate_json(json.dumps(e))) for e in events]
        return dict(await terminate_contracts(commands, uow=self.uow, protector=self.protector,
                                          not_after=not_after()))

    def rows(self) -> dict[str, Any]:
        with self.db.engine.connect() as conn:
            return {r.contract_number: r for r in conn.execute(select(accounts))}

    def published(self, topic: str) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            rows = list(conn.execute(
                select(outbox).where(outbox.c.topic == topic).order_by(outbox.c.id)))
        # what the unit of work handed over after its commits is what the table holds, in order
        assert [(s.id, s.record.value) for s in self.handed if s.topic == topic] == [
            (r.id, r.value) for r in rows]
        return [json.loads(r.value) for r in rows]


@pytest.fixture
def store(db: Database, protector: KeyringProtector) -> Store:
    return Store(db, protector)


async def test_first_link_creates_an_account_with_nothing_personal_in_clear(store: Store) -> None:
    event = linked("77-0000001")
    assert await store.link(event) == {Outcome.CREATED: 1}
    row = store.rows()["77-0000001"]
    assert row.status == "active" and row.version == 1 and row.mobile_masked == "+7******4567"
    assert row.linked_at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    text = " ".join(str(v) for v in row)
    # the passport as stored would be series + number; a 4-digit series alone can occur by chance
    # inside a hex hash or a base64 token, so the check is on the combined value
    for secret in ("9161234567", "ivanov@", "Иванов", "4510 123456", "4510123456"):
        assert secret not in text
    [changed] = store.published(ACCOUNT_CHANGED)
    assert changed["account_id"] == str(row.account_id) and changed["version"] == 1
    assert changed["channels"] == {"sms": True, "email": True}


async def test_the_same_event_twice_changes_nothing(store: Store) -> None:
    event = linked("77-0000002")
    await store.link(event)
    assert await store.link(event) == {Outcome.DUPLICATE: 1}
    assert await store.link(event, event) == {Outcome.DUPLICATE: 2}
    assert store.rows()["77-0000002"].version == 1
    assert len(store.published(ACCOUNT_CHANGED)) == 1


async def test_newer_link_replaces_contacts_older_changes_nothing(store: Store) -> None:
    await store.link(linked("77-0000003", minutes=10))
    newer = linked("77-0000003", mobile="8 (903) 555-66-77", email=None, minutes=20)
    assert await store.link(newer) == {Outcome.UPDATED: 1}
    older = linked("77-0000003", mobile="+7 926 000-11-22", minutes=15)
    assert await store.link(older) == {Outcome.STALE: 1}
    row = store.rows()["77-0000003"]
    assert (row.version, row.mobile_masked, row.email_enc) == (2, "+7******6677", None)
    with store.db.engine.connect() as conn:  # the stale one is recorded as processed all the same
        ids = set(conn.execute(select(processed_events.c.event_id)).scalars())
    assert str(uuid.UUID(older["event_id"])) in ids  # ids are stored as text
    versions = [e["version"] for e in store.published(ACCOUNT_CHANGED)]
    assert versions == [1, 2]
    assert store.published(ACCOUNT_CHANGED)[-1]["channels"] == {"sms": True, "email": False}


async def test_several_links_of_one_contract_in_a_batch_apply_in_time_order(store: Store) -> None:
    late = linked("77-0000004", mobile="+7 903 555-66-77", minutes=30)
    early = linked("77-0000004", minutes=5)
    assert await store.link(late, early) == {Outcome.CREATED: 1, Outcome.UPDATED: 1}
    assert store.rows()["77-0000004"].mobile_masked == "+7******6677"
    [changed] = store.published(ACCOUNT_CHANGED)  # the final state only
    assert changed["version"] == 2 and changed["linked_at"] == "2026-11-24T10:00:00Z"


async def test_identical_newer_link_is_not_a_change(store: Store) -> None:
    await store.link(linked("77-0000005", minutes=1))
    assert await store.link(linked("77-0000005", minutes=2)) == {Outcome.UNCHANGED: 1}
    assert len(store.published(ACCOUNT_CHANGED)) == 1
    assert await store.link(linked("77-0000005", minutes=1, mobile="+7 903 555-66-77")) == {
        Outcome.STALE: 1
    }


async def test_login_held_by_another_active_account_is_a_conflict(store: Store) -> None:
    await store.link(linked("77-0000006"))
    same_mobile = linked("77-0000007", mobile="8 916 123 45 67", minutes=5, account="999999999")
    other = linked("77-0000008", mobile="+7 903 555-66-77", minutes=5, account="888888888")
    assert await store.link(same_mobile, other) == {Outcome.REJECTED: 1, Outcome.CREATED: 1}
    [rejected] = store.published(CONTRACT_REJECTED)
    assert rejected["reason"] == "login_conflict"
    assert rejected["rejected_event_id"] == same_mobile["event_id"]
    assert "77-0000007" not in store.rows()
    # a personal-account product does not use the mobile as its login: no conflict
    linear = linked("77-0000009", product="linear", account="777777777", minutes=6)
    assert await store.link(linear) == {Outcome.CREATED: 1}


async def test_conflict_within_one_batch_first_in_time_wins(store: Store) -> None:
    first = linked("77-0000010", account="111111111", minutes=1)
    second = linked("77-0000011", account="111111111", product="linear", minutes=2)
    third = linked("77-0000012", account="111111111", product="satellite", minutes=3)
    assert await store.link(third, second, first) == {Outcome.CREATED: 2, Outcome.REJECTED: 1}
    assert set(store.rows()) == {"77-0000010", "77-0000011"}


async def test_logins_move_between_accounts_in_one_batch(store: Store) -> None:
    await store.link(linked("77-0000013", mobile="+7 916 000-00-01"),
                     linked("77-0000014", mobile="+7 916 000-00-02"))
    moves = [
        linked("77-0000013", mobile="+7 916 000-00-03", minutes=1),  # releases …01
        linked("77-0000014", mobile="+7 916 000-00-01", minutes=2),  # takes …01, releases …02
        linked("77-0000013", mobile="+7 916 000-00-02", minutes=3),  # takes …02
    ]
    assert await store.link(*moves) == {Outcome.UPDATED: 3}
    rows = store.rows()
    assert rows["77-0000013"].mobile_masked == "+7******0002"
    assert rows["77-0000014"].mobile_masked == "+7******0001"


async def test_partial_unique_index_allows_one_active_holder_per_login(store: Store) -> None:
    await store.link(linked("77-0000015"))
    row = store.rows()["77-0000015"]._asdict()
    clone = {**row, "account_id": uuid.uuid4(), "contract_number": "77-0000016"}
    with pytest.raises(IntegrityError), store.db.engine.begin() as conn:
        conn.execute(accounts.insert().values(**clone))
    with store.db.engine.begin() as conn:  # a closed account may keep the same key
        conn.execute(accounts.insert().values(**{**clone, "status": "closed"}))
    assert set(store.rows()) == {"77-0000015", "77-0000016"}


async def test_termination_closes_and_a_newer_link_reopens(store: Store) -> None:
    await store.link(linked("77-0000017", minutes=0))
    assert await store.terminate(terminated("77-0000017", minutes=60)) == {Outcome.CLOSED: 1}
    assert store.rows()["77-0000017"].status == "closed"
    # a link older than the termination arrives late: the termination is newer, nothing changes
    assert await store.link(linked("77-0000017", minutes=30, mobile="+7 903 555-66-77")) == {
        Outcome.STALE: 1
    }
    # the closed account's login is free for another contract
    assert await store.link(linked("77-0000018", minutes=61)) == {Outcome.CREATED: 1}
    # re-linking the closed contract now conflicts with the new holder
    assert await store.link(linked("77-0000017", minutes=62)) == {Outcome.REJECTED: 1}
    assert await store.link(linked("77-0000017", minutes=63, mobile="+7 903 555-66-77")) == {
        Outcome.REOPENED: 1
    }
    row = store.rows()["77-0000017"]
    assert (row.status, row.version, row.closed_at) == ("active", 3, None)
    statuses = [(e["contract_number"], e["status"], e["version"]) for e in store.published(ACCOUNT_CHANGED)]
    assert statuses == [("77-0000017", "active", 1), ("77-0000017", "closed", 2),
                        ("77-0000018", "active", 1), ("77-0000017", "active", 3)]


async def test_termination_edge_cases(store: Store) -> None:
    unknown = terminated("77-0000019")
    assert await store.terminate(unknown) == {Outcome.REJECTED: 1}
    assert store.published(CONTRACT_REJECTED)[0]["reason"] == "unknown_contract"
    await store.link(linked("77-0000020", minutes=10))
    assert await store.terminate(terminated("77-0000020", minutes=5)) == {Outcome.STALE: 1}
    end = terminated("77-0000020", minutes=20)
    assert await store.terminate(end, end) == {Outcome.CLOSED: 1, Outcome.DUPLICATE: 1}
    assert await store.terminate(terminated("77-0000020", minutes=30)) == {Outcome.UNCHANGED: 1}
    assert store.rows()["77-0000020"].version == 2
    assert await store.terminate(unknown) == {Outcome.DUPLICATE: 1}
    assert len(store.published(CONTRACT_REJECTED)) == 1


async def test_invalid_data_is_rejected_with_its_reason_once(store: Store) -> None:
    bad = [
        linked("77-0000021", mobile="+7 916 ABC-45-67"),
        linked("77-0000022", mobile="+44 20 7946 0958"),
        linked("77-0000023", email="ivanov@"),
        linked("77-0000024", account="12AB5678"),
    ]
    assert await store.link(*bad) == {Outcome.REJECTED: 4}
    assert await store.link(*bad) == {Outcome.DUPLICATE: 4}
    reasons = {(e["contract_number"], e["reason"]) for e in store.published(CONTRACT_REJECTED)}
    assert reasons == {("77-0000021", "invalid_mobile"), ("77-0000022", "invalid_mobile"),
                       ("77-0000023", "invalid_email"), ("77-0000024", "invalid_personal_account")}
    assert store.rows() == {}
