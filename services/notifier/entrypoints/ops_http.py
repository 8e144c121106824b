"""The notifier's ops route (``OPS_API_TOKEN``): ``POST /ops/v1/deliveries``
``{"code_ids": [...]}`` (at most 50) → the delivery of each code the notifier knows: its status
(``queued`` / ``sending`` / ``retry`` / ``sent`` / ``delivered`` / ``undelivered`` / ``failed``),
attempts (gateway calls, the one in flight included; attempts skipped before a call do not count),
last error and times. Masked destination only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import faust
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.db import Database
from services.common.ops_http import OpsError, register_ops_routes
from services.notifier.adapters.tables import deliveries

MAX_CODES = 50


def delivery_status(state: str, carrier_status: str | None) -> str:
    """The carrier's final word when there is one, else the notifier's own state."""
    return carrier_status if carrier_status in {"delivered", "undelivered"} else state


def _read(session: Session, code_ids: list[str]) -> dict[str, Any]:
    rows = session.execute(select(deliveries).where(deliveries.c.code_id.in_(code_ids)))
    return {r.code_id: {
        "status": delivery_status(r.state, r.carrier_status), "state": r.state,
        "carrier_status": r.carrier_status, "channel": r.channel,
        "destination_masked": r.destination_masked, "attempts": r.attempts - r.skipped,
        "last_error": r.last_error, "received_at": _unix(r.created_at),
        "updated_at": _unix(r.updated_at)} for r in rows}


def _unix(at: datetime) -> float:
    """SQLite gives the stored UTC time back without its offset."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def register_ops(app: faust.App, *, token: str, read_timeout_s: float, db: Database) -> None:
    async def lookup(data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ids = data.get("code_ids")
        if not isinstance(ids, list) or len(ids) > MAX_CODES:
            raise OpsError(400, "invalid_request", f"code_ids: a list of at most {MAX_CODES} ids")
        try:
            wanted = [str(uuid.UUID(str(i))) for i in ids]
        except ValueError:
            raise OpsError(400, "invalid_request", "code_ids: UUIDs only") from None
        return 200, {"deliveries": await db.run(lambda s: _read(s, wanted)) if wanted else {}}

    register_ops_routes(app, token=token, read_timeout_s=read_timeout_s,
                        routes={"/ops/v1/deliveries": lookup})
