"""A minimal service on the shared runtime, for the generic consumer tests.

It consumes ``crm.contract.terminated.v1`` with ``BatchRunner`` and records each event id in its
own database (dedupe in the same transaction), staging a ContractRejected per event in the
outbox so that the whole path — decode, DLQ, handler, outbox, relay, ack — runs for real.
Start it with ``python -m tests.support.probe_service worker``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.orm import Session

from schemas.events import ContractRejected, ContractRejectReason, ContractTerminated
from schemas.topics import CONTRACT_REJECTED, CONTRACT_TERMINATED
from services.common.app import make_app
from services.common.codec import WireRecord, encode
from services.common.consumer_loop import BatchRunner, Inbound, register_agents
from services.common.db import Database, Staged, outbox_table, stage_outbox
from services.common.metrics import ServiceMetrics
from services.common.publish import OutboxRelay, Publisher
from services.common.settings import CommonSettings, database_url, web_port

metadata = MetaData()
seen = Table("seen", metadata, Column("event_id", String(36), primary_key=True))
outbox_rows = outbox_table(metadata)


class ProbeSettings(CommonSettings):
    service: ClassVar[str] = "probe"
    web_port: int = web_port("probe", 6199)
    database_url: str = database_url("probe")
    fail_on_contract: str = Field(default="", validation_alias="PROBE_FAIL_ON_CONTRACT")
    # the broker refuses every dead-letter record (one too large for the .dlq, say)
    dead_letters_fail: bool = Field(default=False, validation_alias="PROBE_DEAD_LETTERS_FAIL")


class RefusingDeadLetters(Publisher):
    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        if any(topic.endswith(".dlq") for topic, _ in items):
            raise RuntimeError("the broker refused a dead-letter record")
        await super().send_all(items)


def build() -> Any:
    settings = ProbeSettings.from_env()
    db = Database(url=settings.database_url, name="probe")
    metadata.create_all(db.engine)
    metrics = ServiceMetrics("probe")

    async def ready() -> dict[str, bool]:
        return {"database": await db.ping()}

    app = make_app(settings=settings, metrics=metrics, ready_checks=ready)
    publisher = (RefusingDeadLetters if settings.dead_letters_fail else Publisher)(
        app=app, topic_prefix=settings.topic_prefix)
    relay = OutboxRelay(db=db, table=outbox_rows, publisher=publisher)

    async def handle(items: list[Inbound[ContractTerminated]]) -> None:
        for item in items:
            if settings.fail_on_contract and item.event.contract_number == settings.fail_on_contract:
                raise RuntimeError("poison record")

        def work(session: Session) -> list[Staged]:
            ids = [str(i.event.event_id) for i in items]
            known = set(session.scalars(select(seen.c.event_id).where(seen.c.event_id.in_(ids))))
            fresh = {str(i.event.event_id): i.event for i in items if str(i.event.event_id) not in known}
            if not fresh:
                return []
            session.execute(seen.insert(), [{"event_id": k} for k in fresh])
            records = [
                encode(
                    ContractRejected(contract_number=e.contract_number, rejected_event_id=e.event_id,
                                     reason=ContractRejectReason.UNKNOWN_CONTRACT),
                    key=e.contract_number, source="/selfcare-access/probe",
                )
                for e in fresh.values()
            ]
            return stage_outbox(session, outbox_rows, CONTRACT_REJECTED, records)

        await db.run(work, after_commit=relay.committed)

    runner = BatchRunner(
        service="probe", topic=CONTRACT_TERMINATED, model=ContractTerminated, handler=handle,
        publisher=publisher, relay=relay, metrics=metrics,
        max_record_bytes=settings.max_record_bytes, batch_size=settings.batch_size,
    )
    register_agents(app, settings, [runner])
    return app


if __name__ == "__main__":
    build().main()
