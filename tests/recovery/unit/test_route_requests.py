"""Re-keying: original bytes forwarded, key is a keyed hash of the normalised login."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.common.codec import WireRecord
from services.common.consumer_loop import Inbound, RawRecord
from services.common.crypto import Keyring
from services.recovery.domain.model import route_key
from services.recovery.entrypoints.agents import RouteRequests
from tests.recovery.builders import request


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, WireRecord]] = []

    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        self.records.extend(items)


async def test_forwards_original_bytes_keyed_by_login(keyring: Keyring) -> None:
    items = []
    for login in ("8 (916) 123-45-67", "+79161234567"):
        event = request(login)
        value = b'{"extra": 1, ' + event.model_dump_json().encode()[1:]
        raw = RawRecord(topic="x", partition=1, offset=2, key=str(uuid.uuid4()).encode(),
                        value=value, headers=[("ce_id", b"abc"), ("bad", b"\xff\xfe")])
        items.append(Inbound(event=event, raw=raw))
    sent = Sent()
    await RouteRequests(publisher=sent, keyring=keyring)(items)
    assert [topic for topic, _ in sent.records] == ["selfcare.recovery.requests-by-login.v1"] * 2
    assert [r.value for _, r in sent.records] == [i.raw.value for i in items]
    assert {r.key for _, r in sent.records} == {route_key(keyring, "+79161234567").encode()}
    assert b"9161234567" not in (sent.records[0][1].key or b"")
    # every original header travels on, binary ones included
    assert sent.records[0][1].headers == [("ce_id", b"abc"), ("bad", b"\xff\xfe")]
