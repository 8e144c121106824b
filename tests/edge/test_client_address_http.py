"""The client address through the real HTTP server of a recovery worker, read back from the topic."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from schemas.topics import CODE_REQUESTED
from tests.recovery.integration.support import raw_topic, start_worker
from tests.support.workers import TEST_RECOVERY_API_TOKEN, Worker

HEADERS = {"Authorization": f"Bearer {TEST_RECOVERY_API_TOKEN}"}


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Worker]:
    """Recovery trusting 127.0.0.1 (the portal's proxy) and nothing else on loopback."""
    worker = start_worker(tmp_path_factory.mktemp("proxied"), {"TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Worker]:
    worker = start_worker(tmp_path_factory.mktemp("direct"), {})
    yield worker
    worker.stop()


async def ask(worker: Worker, source: str, xff: list[str]) -> str:
    """Ask for a code from ``source`` with these X-Forwarded-For lines; the client_ip published."""
    login = "7" + str(uuid.uuid4().int)[:11]
    headers = [("Authorization", HEADERS["Authorization"])] + [("X-Forwarded-For", v) for v in xff]
    body = {"login": login, "channel": "sms", "client_ip": "192.0.2.66"}
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            worker.base_url + "/api/v1/code-requests", json=body, headers=headers) as resp:
        assert resp.status == 202
    for record in await raw_topic(worker, CODE_REQUESTED):
        event = json.loads(record.value or b"{}")
        if event.get("login") == login:
            return str(event["client_ip"])
    raise AssertionError("request not published")


async def test_without_trusted_proxies_the_socket_peer_is_used(direct: Worker) -> None:
    assert await ask(direct, "127.0.0.1", ["198.51.100.7"]) == "127.0.0.1"
    assert await ask(direct, "127.0.0.2", []) == "127.0.0.2"


async def test_a_trusted_proxy_is_believed_through_a_chain(behind_proxy: Worker) -> None:
    assert await ask(behind_proxy, "127.0.0.1", ["198.51.100.7"]) == "198.51.100.7"
    # client wrote 6.6.6.6; an untrusted hop 203.0.113.9 saw the client; 10.1.1.1 is ours
    assert await ask(behind_proxy, "127.0.0.1", ["6.6.6.6, 203.0.113.9", "10.1.1.1"]) == "203.0.113.9"


async def test_a_spoofed_header_from_an_untrusted_peer_changes_nothing(behind_proxy: Worker) -> None:
    assert await ask(behind_proxy, "127.0.0.2", ["198.51.100.7"]) == "127.0.0.2"


async def test_a_malformed_entry_stops_the_walk_at_the_nearest_trusted_hop(behind_proxy: Worker) -> None:
    assert await ask(behind_proxy, "127.0.0.1", ["198.51.100.7, garbage"]) == "127.0.0.1"
    assert await ask(behind_proxy, "127.0.0.1", ["198.51.100.7, garbage, 10.2.2.2"]) == "10.2.2.2"
