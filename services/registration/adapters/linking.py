"""Where a batch of links is prepared and applied: this process's database thread, or a linking
process of its own.

Preparing a link (phone and email validation, keyed hashes, AES-GCM sealing) and applying it
(the transaction, encoding ``AccountChanged``) costs more Python CPU per link than faust spends
consuming it. In the worker's own process that work shares one GIL with the event loop, and the
threads handing work to each other wait for it. ``ProcessLinker`` runs whole
batches in one spawned process with its own connection instead: the worker's process only
consumes, publishes and acks, and both cores work.

One process keeps the transactions in the order they were asked for. The process returns the
outbox rows it committed, and the worker hands them to its relay (``OutboxRelay.committed``),
which publishes them from memory like its own; if the worker dies first, the rows are in the
table and go out at its next start. Commands and results cross as tuples of
``str``/``bool``/``bytes``, which pickle far more cheaply than dataclasses with UUIDs, datetimes
and enums.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import uuid
from collections import Counter
from collections.abc import Awaitable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

from schemas.events import TvProduct
from services.common.codec import WireRecord
from services.common.crypto import Keyring
from services.common.db import Database, HandOver, Staged, in_transaction, is_transient
from services.common.process import tune_gc_for_workers, widen_pipes
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlAccountRepository, SqlUnitOfWork
from services.registration.domain.commands import LinkContract
from services.registration.domain.model import Outcome
from services.registration.service_layer.link_contract import link_batch, link_contracts

log = logging.getLogger(__name__)

T = TypeVar("T")


class LinkFailed(Exception):
    """The linking process failed on a batch for a reason other than the database being away."""


class Calls:
    """The calls in flight, for ``settled``: a termination or an erasure of the worker waits for
    the link batches before it, so that their rows reach the relay (and the topic) before its own,
    as they were committed before its own (it holds their contracts: ``hold_contracts``)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Future[Any]] = set()

    def start(self, call: Awaitable[T]) -> asyncio.Future[T]:
        """``call`` as a future, counted by ``settled`` from now on, before its first step: an
        erasure woken in the same turn of the loop as the link's agent, and run first, still
        finds the link in flight."""
        future = asyncio.ensure_future(call)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return future

    async def settled(self) -> None:
        if self._running:
            await asyncio.wait(set(self._running))


class InProcessLinker:
    """Prepared and applied in this process's database thread (tests, one-core machines)."""

    def __init__(self, *, db: Database, keyring: Keyring, hand_over: HandOver) -> None:
        self._uow = SqlUnitOfWork(db=db, hand_over=hand_over)
        self._protector = KeyringProtector(keyring=keyring)
        self._calls = Calls()

    def link(self, commands: Sequence[LinkContract],
             not_after: datetime) -> asyncio.Future[Counter[Outcome]]:
        return self._calls.start(link_contracts(
            commands, uow=self._uow, protector=self._protector, not_after=not_after))

    async def settled(self) -> None:
        await self._calls.settled()

    async def warm_up(self) -> None:
        return None

    def close(self) -> None:
        return None


class ProcessLinker:
    """In one spawned process; a process that died is started again once per batch."""

    def __init__(self, *, db: Database, keyring: Keyring, hand_over: HandOver) -> None:
        self._db = db  # the worker's: the process connects to the same database
        self._keyring = keyring
        self._hand_over = hand_over  # the worker's relay publishes what the process committed
        self._pool: ProcessPoolExecutor | None = None
        self._calls = Calls()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start, initargs=(self._keyring, self._db.url),
            )
            # a batch's answer (its encoded outbox rows: 467 KB pickled for 500 links) crosses at
            # once instead of in 64 KiB steps, each waiting for the worker's GIL
            widen_pipes(self._pool)
        return self._pool

    def link(self, commands: Sequence[LinkContract],
             not_after: datetime) -> asyncio.Future[Counter[Outcome]]:
        return self._calls.start(self._link(commands, not_after))

    async def settled(self) -> None:
        await self._calls.settled()

    async def _link(self, commands: Sequence[LinkContract], not_after: datetime
                    ) -> Counter[Outcome]:
        rows = [_command_row(c) for c in commands]
        limit = not_after.isoformat()
        loop = asyncio.get_running_loop()
        pool = self._executor()
        try:
            result = await loop.run_in_executor(pool, _link_rows, rows, limit)
        except BrokenProcessPool:
            if self._pool is pool:  # another call in flight may have started a new one already
                log.warning("the linking process died; starting it again")
                self._pool = None
            result = await loop.run_in_executor(self._executor(), _link_rows, rows, limit)
        return self._accept(result)

    def _accept(self, result: tuple[Any, ...]) -> Counter[Outcome]:
        match result:
            case ("ok", outcomes, staged):
                self._hand_over([
                    Staged(id=i, topic=topic, record=WireRecord(key=key, value=value, headers=headers))
                    for i, topic, key, value, headers in staged
                ])
                return Counter({Outcome(name): n for name, n in outcomes})
            case ("transient", kind):  # BatchRunner retries these with backoff
                raise OperationalError(None, None, ConnectionError(f"linking process: {kind}"))
            case (_, kind):
                raise LinkFailed(f"linking process: {kind}")
        raise LinkFailed("linking process: unexpected answer")

    async def warm_up(self) -> None:
        """Start the process (and its connection pool) now rather than on the first batch."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor(), _ping)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# --- in the linking process ----------------------------------------------------------------

_db: Database | None = None
_protector: KeyringProtector | None = None


def _start(keyring: Keyring, database_url: str) -> None:
    global _db, _protector
    _db = Database(url=database_url, name="registration-linking")
    _protector = KeyringProtector(keyring=keyring)
    # 10,000, not the workers' 50,000: on SQLite this process leaves garbage cycles behind,
    # which a higher threshold lets pile up (docs/performance.md)
    tune_gc_for_workers(young_threshold=10_000)


def _ping() -> bool:
    assert _db is not None, "linking process not started"
    return _db.run_sync(lambda session: bool(session.connection().exec_driver_sql("SELECT 1")))


def _link_rows(rows: list[tuple[Any, ...]], not_after: str) -> tuple[Any, ...]:
    """One batch in one transaction; exceptions come back as their class name (no input)."""
    assert _db is not None and _protector is not None, "linking process not started"
    db, protector = _db, _protector
    commands = [_command(row) for row in rows]
    limit = datetime.fromisoformat(not_after)
    try:  # ``run_sync`` returns once the transaction has committed: its rows are in the table
        outcomes, committed = db.run_sync(partial(
            in_transaction, SqlAccountRepository,
            lambda repo: link_batch(repo, commands, protector, limit)))
    except Exception as exc:  # pickling a driver's exception may fail: send what it was
        return ("transient" if is_transient(exc) else "failed", type(exc).__name__)
    staged = [(s.id, s.topic, s.record.key, s.record.value, s.record.headers) for s in committed]
    return ("ok", [(o.value, n) for o, n in outcomes.items()], staged)


# --- the wire format of commands -----------------------------------------------------------


def _command_row(c: LinkContract) -> tuple[Any, ...]:
    return (
        str(c.event_id), c.occurred_at.isoformat(), c.contract_number, c.personal_account,
        c.tv_product.value, c.full_name, c.mobile, c.email, c.passport_series, c.passport_number,
        c.mobile_active,
    )


def _command(row: tuple[Any, ...]) -> LinkContract:
    return LinkContract(
        event_id=uuid.UUID(row[0]), occurred_at=datetime.fromisoformat(row[1]),
        contract_number=row[2], personal_account=row[3], tv_product=TvProduct(row[4]),
        full_name=row[5], mobile=row[6], email=row[7], passport_series=row[8],
        passport_number=row[9], mobile_active=row[10],
    )
