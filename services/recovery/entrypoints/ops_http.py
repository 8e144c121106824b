"""Recovery's ops route (``OPS_API_TOKEN``): ``POST /ops/v1/login`` ``{"login": "<as typed>"}``
→ support's view of that login (``service_layer.support_view``)."""

from __future__ import annotations

from typing import Any

import faust

from services.common.ops_http import register_ops_routes, text_field
from services.recovery.service_layer.support_view import ViewLogin


def register_ops(app: faust.App, *, token: str, read_timeout_s: float,
                 view_login: ViewLogin) -> None:
    async def login(data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, await view_login(text_field(data, "login", limit=64))

    register_ops_routes(app, token=token, read_timeout_s=read_timeout_s,
                        routes={"/ops/v1/login": login})
