"""Registration's ops routes (``OPS_API_TOKEN``): ``keys reseal`` and support's identity check.

* ``POST /ops/v1/keys/reseal`` → ``{"accounts", "resealed", "unreadable", "newest_key_id"}``
* ``POST /ops/v1/identify`` ``{"operator", "contract" | "mobile", "passport", "full_name"}`` →
  ``{"verdict": "confirmed", "tv_product", "login_kind", "login", "personal_account"}``, or
  ``{"verdict": "not_confirmed"}``, or ``429 {"verdict": "rate_limited", "retry_after_s"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from services.common.db import Database, HandOver
from services.common.ops_http import OpsError, register_ops_routes, text_field
from services.registration.adapters.support_repository import SqlSupportUnitOfWork
from services.registration.service_layer.identify import IdentifyCommand, IdentifyHolder, Verdict
from services.registration.service_layer.reseal import ResealAccounts
from services.registration.settings import RegistrationSettings


def register_ops(app: faust.App, *, settings: RegistrationSettings, db: Database,
                 hand_over: HandOver, flush: Callable[[], Awaitable[int]]) -> None:
    uow = SqlSupportUnitOfWork(db=db, hand_over=hand_over)
    reseal = ResealAccounts(uow=uow, keyring=settings.contact_keys, flush=flush)
    identify = IdentifyHolder(uow=uow, keyring=settings.contact_keys,
                              max_attempts=settings.identify_max,
                              window_s=settings.identify_window_s)

    async def do_reseal(data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, (await reseal()).as_json()

    async def do_identify(data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        contract = text_field(data, "contract", limit=32, required=False)
        mobile = text_field(data, "mobile", limit=32, required=False)
        if bool(contract) == bool(mobile):
            raise OpsError(400, "invalid_request", "give exactly one of contract, mobile")
        answer = await identify(IdentifyCommand(
            operator=text_field(data, "operator", limit=64),
            passport=text_field(data, "passport", limit=32),
            full_name=text_field(data, "full_name", limit=256),
            contract=contract or None, mobile=mobile or None))
        status = 429 if answer.verdict is Verdict.RATE_LIMITED else 200
        return status, answer.as_json()

    register_ops_routes(app, token=settings.ops_api_token, read_timeout_s=settings.http_read_timeout_s,
                        routes={"/ops/v1/keys/reseal": do_reseal, "/ops/v1/identify": do_identify})
