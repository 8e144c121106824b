"""JSON-lines logs with masking.

Log event ids, never payloads. As a last line of defence every message passes through
``redact_text`` so that a phone or an email that slipped into a log line is masked anyway.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from services.common.masking import redact_text

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "selfcare") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = redact_text(str(value)) if isinstance(value, str) else value
        if record.exc_info:
            # exception text may quote input: redact it like the message
            payload["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


class Throttle(logging.Filter):
    """At most one line per ``interval_s`` for each message template of the loggers named in
    ``prefixes``; the line that passes tells how many were held back (``suppressed``).

    The Kafka client logs every failed reconnect (several per node and second) while a broker
    is away, and the web server every malformed request (``MalformedRequests``): without this,
    thousands of identical lines a minute."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes, self.interval_s, self.clock = prefixes, interval_s, clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes) or record.levelno >= logging.CRITICAL:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        if now - self._last.get(key, -self.interval_s) < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.suppressed = held
        return True


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a control character in a header, a duplicate
    ``Content-Length``, an HTTP/2 preface…) at ERROR with a traceback, and the exception quotes
    the offending line — an ``Authorization`` header, say. Such a record becomes one INFO line
    that names the error's class only; ``Throttle`` then holds back a flood of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed HTTP request refused (%s)", (type(exc).__name__,)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def logging_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """A ``dictConfig`` for the service (faust's ``logging_config`` setting takes it)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "filters": {"malformed": {"()": MalformedRequests},
                    "throttle": {"()": Throttle, "prefixes": ("aiokafka", "aiohttp.server")}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr,
                       "filters": ["malformed", "throttle"]}
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "faust": {"level": "WARNING" if level != "DEBUG" else "DEBUG"},
            "mode": {"level": "WARNING" if level != "DEBUG" else "DEBUG"},
            "aiohttp.access": {"level": "WARNING"},
        },
    }


def configure(service: str, level: str = "INFO") -> None:
    """For processes that are not faust workers (CLI, demo, benchmarks)."""
    import logging.config

    logging.config.dictConfig(logging_config(service, level))
