"""Rate-limit history reads are bounded: a flood from one client costs what one request costs."""

from __future__ import annotations

from services.common.db import Database
from services.common.migrations import migrate
from services.recovery.adapters import repository
from services.recovery.adapters.tables import MIGRATIONS
from services.recovery.domain.model import LimitBook, LimitKind, Policy, Window


async def test_only_the_newest_events_inside_the_window_are_loaded(database_url: str) -> None:
    db = Database(url=database_url, name="t")
    try:
        migrate(db.engine, MIGRATIONS)
        flood = [(LimitKind.CLIENT_IP, "ip-hash", float(t)) for t in range(1000)]
        await db.run(lambda s: repository.add_rate_events(s, flood))
        got = await db.run(lambda s: repository.rate_history(s, LimitKind.CLIENT_IP, "ip-hash", 500.0, 30))
        assert got == [float(t) for t in range(970, 1000)]
        older = await db.run(lambda s: repository.rate_history(s, LimitKind.CLIENT_IP, "ip-hash", 995.0, 30))
        assert older == [996.0, 997.0, 998.0, 999.0]
    finally:
        db.close()


def test_the_book_asks_for_the_window_of_the_kind_and_its_maximum() -> None:
    calls: list[tuple[LimitKind, float, int]] = []

    def loader(kind: LimitKind, subject: str, since: float, newest: int) -> list[float]:
        calls.append((kind, since, newest))
        return [float(t) for t in range(970, 1000)]

    book = LimitBook(policy=Policy(per_ip=Window(max_events=30, window_s=300)), loader=loader)
    assert book.retry_after(LimitKind.CLIENT_IP, "ip-hash", 1000.0) == 270  # the 30th newest is 970
    assert calls == [(LimitKind.CLIENT_IP, 700.0, 30)]
