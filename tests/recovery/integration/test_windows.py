"""The shared sliding windows (``services.common.db.take_window``, through recovery's
``adapters.repository.take``) on SQLite and PostgreSQL: at most ``max_events`` in any
``window_s`` seconds — across a window's edge, with simultaneous takes on
two connections, when the limit changes — and the same answers as the definition, by hypothesis.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from services.common import db as db_module
from services.common.db import (
    Database,
    forget_windows,
    make_engine,
    prune_windows,
    take_windows,
)
from services.common.migrations import migrate
from services.recovery.adapters import repository
from services.recovery.adapters.tables import MIGRATIONS, window_slots, windows
from services.recovery.domain.model import Window
from tests.recovery.fakes import FakeStore, FakeWindows


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(url=database_url, name=f"windows-{uuid.uuid4().hex[:6]}")
    migrate(database.engine, MIGRATIONS)
    yield database
    database.close()


def taker(db: Database, window: Window,
          subject: str = "subject") -> Callable[[float], Awaitable[int | None]]:
    async def take(now: float) -> int | None:
        return await db.run(lambda s: repository.take(s, subject, window, now))
    return take


async def test_the_window_slides_across_its_edge(db: Database) -> None:
    """Three a day: one at 0 and two just before the day ends; right after it, one more fits
    (the first left), not three (a fixed window starting again at 0 let three in)."""
    take = taker(db, Window(max_events=3, window_s=86400))
    assert [await take(t) for t in (0.0, 86390.0, 86399.0)] == [None, None, None]
    assert await take(86399.5) == 1  # the one of 0 leaves at 86400
    assert await take(86400.5) is None
    assert await take(86401.0) == 86389  # the next to leave is the one of 86390, at 172790
    assert await take(172790.0) is None
    assert await take(172790.0) == 9  # then the one of 86399, at 172799


async def test_simultaneous_takes_on_two_connections_let_in_exactly_the_limit(
        db: Database, database_url: str) -> None:
    other = Database(url=database_url, name="windows-other")
    try:
        window = Window(max_events=25, window_s=60)
        results = await asyncio.gather(*[
            taker(other if i % 2 else db, window)(1000.0) for i in range(60)])
        assert sum(r is None for r in results) == 25
        assert all(r == 60 for r in results if r is not None)
        # once those 25 have left, 25 fit again and no more
        later = await asyncio.gather(*[
            taker(other if i % 2 else db, window)(1060.0) for i in range(30)])
        assert sum(r is None for r in later) == 25
    finally:
        other.close()


async def test_a_changed_limit_keeps_what_is_inside_the_window(db: Database) -> None:
    """Lowered from 5 to 2 with 4 events inside: nothing fits until 3 of them have left (the two
    newest are kept); raised to 6 then: 4 more fit beside those two."""
    five, two, six = (Window(max_events=n, window_s=100) for n in (5, 2, 6))
    assert [await taker(db, five)(t) for t in (0.0, 10.0, 20.0, 30.0)] == [None] * 4
    assert await taker(db, two)(40.0) == 80  # 20 and 30 are kept: 20 leaves at 120
    assert await taker(db, two)(120.0) is None
    assert await taker(db, two)(125.0) == 5  # 30 leaves at 130
    results = [await taker(db, six)(126.0) for _ in range(5)]
    assert results == [None, None, None, None, 4]
    slots = db.run_sync(lambda s: s.scalar(select(func.count()).select_from(window_slots)))
    assert slots == 6


async def test_prune_and_erasure_delete_the_rings(db: Database) -> None:
    window = Window(max_events=2, window_s=10)
    for subject in ("a", "b"):
        await taker(db, window, subject)(0.0)
    await taker(db, window, "b")(5.0)

    def rows(s: Session) -> tuple[int | None, int | None]:
        return (s.scalar(select(func.count()).select_from(windows)),
                s.scalar(select(func.count()).select_from(window_slots)))

    db.run_sync(lambda s: repository.SqlWindows(s).prune(12.0))  # a's event and b's first left
    assert db.run_sync(rows) == (1, 1)
    db.run_sync(lambda s: repository.SqlWindows(s).delete_subjects({"b"}))
    assert db.run_sync(rows) == (0, 0)


# -- the definition, by hypothesis -----------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One database for every example (each takes a subject of its own), on each dialect."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("windows") / "windows.db"
        url = f"sqlite:///{path}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    made = make_engine(url)
    migrate(made, MIGRATIONS)
    yield made
    made.dispose()


steps = st.lists(st.tuples(st.floats(min_value=0, max_value=40, allow_nan=False),  # time passing
                           st.sampled_from([1, 2, 3, 5]),  # the limit then in force
                           st.integers(min_value=1, max_value=3)),  # takes at that instant
                 min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(steps=steps, window_s=st.sampled_from([1.0, 30.0, 100.0]))
def test_takes_answer_as_the_definition_does(engine: Engine, steps: list[tuple[float, int, int]],
                                             window_s: float) -> None:
    """Any sequence of takes in time order, under limits that change: each answer, let in or
    the seconds to wait, is the one ``FakeWindows`` gives, which counts the events inside."""
    subject, store, now = uuid.uuid4().hex, FakeStore(), 1000.0
    definition = FakeWindows(store)
    for passed, limit, times in steps:
        now += passed
        window = Window(max_events=limit, window_s=window_s)
        for _ in range(times):
            with Session(engine) as session, session.begin():
                got = repository.take(session, subject, window, now)
            assert got == definition.take(subject, window, now), (now, limit)


# -- several windows taken together (a code's daily count and the SMS budget) -----------------

async def test_groups_taken_together_on_two_connections_never_wait_in_a_circle(
        db: Database, database_url: str) -> None:
    """Two writers take groups over the same rings in opposite orders (accounts a, b and the
    budget), simultaneously: no deadlock, each group all or nothing, and the budget exact."""
    other = Database(url=database_url, name="windows-other")
    day, budget = Window(max_events=3, window_s=86400), Window(max_events=8, window_s=3600)
    forward = [[("a", day), ("budget", budget)], [("b", day), ("budget", budget)]] * 3
    backward = list(reversed(forward))

    async def write(database: Database, groups: list[list[tuple[str, Window]]]
                    ) -> list[tuple[int, int] | None]:
        return await database.run(lambda s: repository.SqlWindows(s).take_together(groups, 10.0))

    try:
        answers = await asyncio.gather(*[write(other if i % 2 else db, backward if i % 2
                                               else forward) for i in range(4)])
    finally:
        other.close()
    flat = [a for batch in answers for a in batch]
    assert sum(a is None for a in flat) == 6  # three a day for each of a and b: 6 of budget's 8
    assert {a for a in flat if a is not None} == {(0, 86400)}  # refused by the day, never budget

    def slots(s: Session, subject: str) -> int | None:
        return s.scalar(select(func.count()).select_from(window_slots)
                        .where(window_slots.c.subject == subject))

    assert [db.run_sync(lambda s, x=x: slots(s, x)) for x in ("a", "b", "budget")] == [3, 3, 6]


groups = st.lists(st.tuples(st.floats(min_value=0, max_value=40, allow_nan=False),
                            st.lists(st.lists(st.sampled_from(["x", "y", "z"]), min_size=1,
                                              max_size=2, unique=True), min_size=1, max_size=3)),
                  min_size=1, max_size=15)


@settings(max_examples=40, deadline=None)
@given(steps=groups, limit=st.sampled_from([1, 2, 3]))
def test_groups_and_peeks_answer_as_the_definition_does(
        engine: Engine, steps: list[tuple[float, list[list[str]]]], limit: int) -> None:
    """Any sequence of groups taken together in time order, and a peek at each ring before:
    the answers are those of ``FakeWindows``, which takes a group only when each window has
    room, and a peek counts nothing."""
    prefix, store, now = uuid.uuid4().hex[:8], FakeStore(), 1000.0
    definition = FakeWindows(store)
    window = Window(max_events=limit, window_s=30.0)
    for passed, batch in steps:
        now += passed
        asked = [[(prefix + name, window) for name in group] for group in batch]
        with Session(engine) as session, session.begin():
            sql = repository.SqlWindows(session)
            peeks = [sql.peek(prefix + name, window, now) for name in "xyz"]
            got = sql.take_together(asked, now)
        assert peeks == [definition.peek(prefix + name, window, now) for name in "xyz"], now
        assert got == definition.take_together(asked, now), now


def in_threads(*work: Callable[[], None]) -> list[BaseException]:
    """Runs each of ``work`` in a thread of its own, at once; what they raised."""
    errors: list[BaseException] = []

    def run(one: Callable[[], None]) -> None:
        try:
            one()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(one,)) for one in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_a_prune_in_a_write_leaves_the_rings_another_write_holds(postgres_url: str) -> None:
    """PostgreSQL. Write 1 holds the rings it took (the SMS budget) and prunes (recovery prunes
    in a write every so often); write 2 holds an idle ring, out of its window and not pruned
    yet, and waits for the budget. The prune skips write 2's ring instead of waiting for it,
    which would have been a wait in a circle (a deadlock, one write aborted)."""
    db = Database(url=postgres_url, name="windows-prune")
    migrate(db.engine, MIGRATIONS)
    idle, now = "0" * 64, time.time()  # a keyed hash, sorted before "sms-budget"
    with Session(db.engine) as s, s.begin():
        s.execute(text("INSERT INTO windows VALUES (:s, 1, 10, :b)"), {"s": idle, "b": now - 5})
        s.execute(text("INSERT INTO window_slots VALUES (:s, 0, :u)"), {"s": idle, "u": now - 5})
    first_holds_budget, second_waits = threading.Event(), threading.Event()

    def first() -> None:
        with Session(db.engine) as s, s.begin():
            take_windows(s, [[("1" * 64, 10, 86400.0), ("sms-budget", 100, 3600.0)]], now)
            first_holds_budget.set()
            second_waits.wait(5)
            time.sleep(0.5)
            prune_windows(s, now)

    def second() -> None:
        first_holds_budget.wait(5)
        with Session(db.engine) as s, s.begin():
            threading.Timer(0.3, second_waits.set).start()
            take_windows(s, [[(idle, 10, 86400.0), ("sms-budget", 100, 3600.0)]], now)

    errors = in_threads(first, second)
    try:
        assert errors == []
        with Session(db.engine) as s:  # the idle ring, held by write 2, was left; it took it
            assert s.scalar(select(func.count()).select_from(window_slots)
                            .where(window_slots.c.subject == idle)) == 1
    finally:
        db.close()


def test_a_take_and_an_erasure_of_one_subject_wait_in_line(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL. A take locks the subject's ring, then writes a slot; an erasure deleted the
    slots first, then the rings: with the take's slot already there (an old check out of its
    window), each waited for the other (a deadlock, one of them aborted). The erasure now
    deletes the rings first, so it waits for the take, then deletes what it wrote."""
    db = Database(url=postgres_url, name="windows-erase")
    migrate(db.engine, MIGRATIONS)
    subject, now = "erased-" + uuid.uuid4().hex, time.time()
    with Session(db.engine) as s, s.begin():
        take_windows(s, [[(subject, 1, 60.0)]], now - 120)  # out of its window, still there
    ring_head, holds_ring = db_module._ring_head, threading.Event()

    def slow_ring_head(*args: object, **kwargs: object) -> tuple[int, float]:
        head = ring_head(*args, **kwargs)  # type: ignore[arg-type]
        holds_ring.set()
        time.sleep(0.5)  # the erasure starts meanwhile
        return head

    monkeypatch.setattr(db_module, "_ring_head", slow_ring_head)

    def take() -> None:
        with Session(db.engine) as s, s.begin():
            take_windows(s, [[(subject, 1, 60.0)]], now)

    def erase() -> None:
        holds_ring.wait(5)
        with Session(db.engine) as s, s.begin():
            forget_windows(s, {subject})

    errors = in_threads(take, erase)
    try:
        assert errors == []
        with Session(db.engine) as s:  # the erasure came second: nothing of the subject is left
            assert s.scalar(select(func.count()).select_from(window_slots)
                            .where(window_slots.c.subject == subject)) == 0
            assert s.scalar(select(func.count()).select_from(windows)
                            .where(windows.c.subject == subject)) == 0
    finally:
        db.close()
