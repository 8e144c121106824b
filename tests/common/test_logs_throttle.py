"""The Kafka client's repeated lines are throttled per message template; others pass. A request
the web server cannot parse is one INFO line that quotes nothing of it."""

from __future__ import annotations

import json
import logging
import sys

from aiohttp.http_exceptions import BadHttpMessage

from services.common.logs import JsonFormatter, MalformedRequests, Throttle


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


def test_a_request_aiohttp_cannot_parse_is_one_info_line_without_its_text() -> None:
    """aiohttp's exception quotes the offending header line: a bearer token must not reach the log."""
    token = "Bearer secret-token-0123456789"
    try:
        raise BadHttpMessage(f"Invalid header value char:\n\n    b'Authorization: {token}\\x01'")
    except BadHttpMessage:
        record = logging.getLogger("aiohttp.server").makeRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
            ("127.0.0.1",), sys.exc_info())
    assert MalformedRequests().filter(record)
    line = json.loads(JsonFormatter("recovery").format(record))
    assert line["level"] == "INFO" and line["msg"] == "malformed HTTP request refused (BadHttpMessage)"
    assert "exc" not in line and "secret-token" not in json.dumps(line)


def test_other_server_errors_keep_their_level_and_traceback() -> None:
    try:
        raise RuntimeError("a handler's bug")
    except RuntimeError:
        record = logging.getLogger("aiohttp.server").makeRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Unhandled exception", (), sys.exc_info())
    assert MalformedRequests().filter(record)
    line = json.loads(JsonFormatter("recovery").format(record))
    assert line["level"] == "ERROR" and "a handler's bug" in line["exc"]
