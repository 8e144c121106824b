"""The Kafka client's repeated lines are throttled per message template; others pass."""

from __future__ import annotations

import json
import logging

from services.common.logs import JsonFormatter, Throttle


def rec(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_per_template_and_interval_then_the_count_of_what_was_held() -> None:
    now = [0.0]
    throttle = Throttle(interval_s=10, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    passed = []
    for i in range(2000):  # 2,000 reconnect failures in 20 s, on two nodes
        now[0] = i / 100
        r = rec("aiokafka", template, i % 2 + 1, "refused")
        if throttle.filter(r):
            passed.append(r)
    assert len(passed) == 2
    assert getattr(passed[1], "suppressed", 0) == 999
    assert json.loads(JsonFormatter("x").format(passed[1]))["suppressed"] == 999
    # another template of the same logger has its own allowance
    assert throttle.filter(rec("aiokafka", "Unable to update metadata from %s", [1]))


def test_other_loggers_and_critical_lines_are_never_held() -> None:
    throttle = Throttle(interval_s=10, clock=lambda: 0.0)
    assert all(throttle.filter(rec("services.recovery", "same line")) for _ in range(100))
    assert throttle.filter(rec("aiokafka.conn", "x"))
    assert all(throttle.filter(rec("aiokafka.conn", "x", level=logging.CRITICAL)) for _ in range(5))
    assert not throttle.filter(rec("aiokafka.conn", "x"))
