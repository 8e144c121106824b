"""A faust app's web views served on loopback, with no broker and no worker: for tests of HTTP
answers over stand-in handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import faust

from deploy.launch import free_port


@asynccontextmanager
async def serving(name: str, register: Callable[[Any], None]) -> AsyncIterator[str]:
    """``register(app)`` adds the views; yields the server's base URL while it runs."""
    port = free_port()
    app = faust.App(name, broker="kafka://127.0.0.1:1", autodiscover=False,  # never connected
                    web_port=port, web_bind="127.0.0.1", web_host="127.0.0.1")
    register(app)
    await app.web.start_server()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await app.web.stop_server()
