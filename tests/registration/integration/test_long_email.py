"""A valid 254-character email with a short local part and a long domain, through the worker's
batch runner for the linked topic (the in-process linker, SQLite and PostgreSQL). Its masked copy
was 259 characters, over the 254 of ``Masked`` and of the ``email_masked`` column: the batch
failed, and the link was dead-lettered as ``processing_error`` instead of becoming an account."""

from __future__ import annotations

import json

from sqlalchemy import select

from services.common.codec import header
from services.common.consumer_loop import BatchRunner, RawRecord
from services.common.crypto import Keyring
from services.common.db import Database, Staged
from services.common.metrics import ServiceMetrics
from services.registration.adapters.linking import InProcessLinker
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.tables import accounts
from services.registration.domain.validation import normalise_email
from services.registration.entrypoints.agents import ContractHandlers, InboundContractLinked
from services.registration.service_layer.metrics import RegistrationMetrics
from tests.common.test_consumer_loop import Relay, Sent
from tests.registration.events import linked

EMAIL = "ab@" + ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 56]) + ".ru"


def record(event: dict[str, object], offset: int) -> RawRecord:
    return RawRecord(topic="crm.contract.linked.v1", partition=0, offset=offset,
                     key=str(event["contract_number"]).encode(),
                     value=json.dumps(event, ensure_ascii=False).encode(), headers=[])


async def test_a_valid_254_character_email_with_a_long_domain_becomes_an_account(
        db: Database, keyring: Keyring) -> None:
    assert len(EMAIL) == 254 and normalise_email(EMAIL) == EMAIL
    handed: list[Staged] = []
    sent = Sent()
    metrics = ServiceMetrics("registration-long-email")
    handlers = ContractHandlers(
        uow=SqlUnitOfWork(db=db, hand_over=handed.extend), protector=KeyringProtector(keyring=keyring),
        linker=InProcessLinker(db=db, keyring=keyring, hand_over=handed.extend),
        metrics=RegistrationMetrics(metrics))
    runner = BatchRunner(service="registration", topic="crm.contract.linked.v1",
                         model=InboundContractLinked, handler=handlers.contracts_linked,
                         publisher=sent, relay=Relay(), metrics=metrics, max_record_bytes=65536)
    await runner.process([
        record(linked("LE-1"), 0),
        record(linked("LE-2", email=EMAIL, mobile="+7 916 123-45-99", account="999999999"), 1)])
    assert [(t, header(r.headers, "dlq_error_class")) for t, r in sent.records] == []
    changed = [json.loads(s.record.value) for s in handed
               if s.topic.endswith("account.changed.v1") and s.record.value is not None]
    assert sorted(e["contract_number"] for e in changed) == ["LE-1", "LE-2"]
    masked = next(e["contacts"]["email_masked"] for e in changed if e["contract_number"] == "LE-2")
    assert len(masked) <= 254 and masked.startswith("a*****@") and masked.endswith("d" * 56 + ".ru")
    with db.engine.connect() as conn:
        assert conn.execute(select(accounts.c.email_masked)
                            .where(accounts.c.contract_number == "LE-2")).scalar_one() == masked
