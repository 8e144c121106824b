"""Re-keying: original bytes forwarded, key is a keyed hash of the normalised login."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from services.common.batch import Inbound, RawRecord
from services.common.crypto import Keyring
from services.common.db import Database, migrate
from services.recovery.adapters.tables import MIGRATIONS, outbox
from services.recovery.domain.resolve import route_key
from services.recovery.service_layer.route_requests import RouteRequests
from tests.recovery.unit.helpers import request


async def test_forwards_original_bytes_keyed_by_login(tmp_path: object, keyring: Keyring) -> None:
    db = Database(url=f"sqlite:///{tmp_path}/r.db", name="route")
    migrate(db.engine, MIGRATIONS)
    items = []
    for login in ("8 (916) 123-45-67", "+79161234567"):
        event = request(login)
        value = b'{"extra": 1, ' + event.model_dump_json().encode()[1:]
        raw = RawRecord(topic="x", partition=1, offset=2, key=str(uuid.uuid4()).encode(),
                        value=value, headers=[("ce_id", b"abc"), ("bad", b"\xff\xfe")])
        items.append(Inbound(event=event, raw=raw))
    await RouteRequests(db=db, keyring=keyring)(items)
    rows = db.run_sync(lambda s: s.execute(select(outbox).order_by(outbox.c.id)).all())
    assert [r.topic for r in rows] == ["selfcare.recovery.requests-by-login.v1"] * 2
    assert [r.value for r in rows] == [i.raw.value for i in items]
    assert {r.key for r in rows} == {route_key(keyring, "+79161234567").encode()}
    assert b"9161234567" not in rows[0].key
    # every original header travels on, binary ones included (stored base64 in the outbox)
    assert rows[0].headers == [["ce_id", "YWJj"], ["bad", "//4="]]
    db.close()
