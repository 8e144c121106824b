"""How ``selfcare-ops login`` renders the lock-out part of recovery's view of a login."""

from __future__ import annotations

from typing import Any

from services.ops.support import render_login


def view(**lockout: Any) -> dict[str, Any]:
    return {"login_valid": True, "found": False, "requests": [],
            "lockout": {"failures": 0, "locked": False, "locked_until": None,
                        "addresses_locked": 0, "addresses_locked_until": None, **lockout}}


def lock_line(v: dict[str, Any]) -> str:
    [line] = [x for x in render_login("89161110003", v) if x.startswith("lock-out:")]
    return line


def test_an_open_login_shows_its_count_only() -> None:
    assert lock_line(view(failures=2)) == "lock-out: open (2 failed logins in a row)"


def test_a_lock_from_client_addresses_is_shown_with_how_many_and_until_when() -> None:
    line = lock_line(view(failures=5, addresses_locked=2, addresses_locked_until=1_796_300_000.0))
    assert line.startswith("lock-out: open (5 failed logins in a row); LOCKED from 2 client "
                           "addresses until ")
    assert "2026" in line
    one = lock_line(view(failures=5, addresses_locked=1, addresses_locked_until=1_796_300_000.0))
    assert "LOCKED from 1 client address until" in one


def test_a_lock_everywhere_is_shown_first() -> None:
    line = lock_line(view(failures=100, locked=True, locked_until=1_796_300_000.0,
                          addresses_locked=1, addresses_locked_until=1_796_300_000.0))
    assert line.startswith("lock-out: LOCKED until ") and "LOCKED from 1 client address" in line
