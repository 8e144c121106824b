"""JSON-lines logs with masking.

Log event ids, never payloads. As a last line of defence every message passes through
``redact_text`` so that a phone or an email that slipped into a log line is masked anyway.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

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


def logging_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """A ``dictConfig`` for the service (faust's ``logging_config`` setting takes it)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}
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
