"""Where links are prepared (``prepare_links``): a thread of this process, or worker processes.

Preparing a link — phone and email validation, five keyed hashes, three AES-GCM seals — is pure
Python CPU work of about 0.3 ms, as much as faust spends consuming the record. In the worker's
own process it competes for one GIL with the event loop and the database thread, so the worker
would be bound to one core. ``ProcessPreparer`` runs it in spawned processes instead, while the
previous batch's transaction runs, and the worker's process keeps only consuming, the database
and publishing. The processes also encode each opening link's ``AccountChanged`` ahead
(``PreparedLinks.opened``), which would otherwise cost the worker another 60 µs per new account.

Commands and results cross the process boundary as tuples of ``str``/``bool``: unpickling
dataclasses with UUIDs, datetimes and enums costs about 20 µs per link in the worker's process,
tuples of strings under 2 µs. ``_command_row``/``_command`` and ``_result_row``/``_result`` are
each other's inverse; ``tests/registration/unit/test_preparation.py`` checks that both preparers
give the same links.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

from schemas.events import ContractRejectReason, TvProduct
from services.common.codec import WireRecord
from services.common.crypto import Keyring
from services.common.logins import LoginKind
from services.registration.adapters.protection import KeyringProtector
from services.registration.domain.commands import LinkContract
from services.registration.domain.model import ProtectedLink, SealedContacts
from services.registration.domain.registry import Rejection
from services.registration.domain.validation import NormalisedLink
from services.registration.service_layer.link_contract import in_time_order, prepare_links
from services.registration.service_layer.ports import Prepared, PreparedLinks

log = logging.getLogger(__name__)


class ThreadPreparer:
    """In this process, off the event loop (tests, and one-core machines)."""

    def __init__(self, *, keyring: Keyring) -> None:
        self._protector = KeyringProtector(keyring=keyring)

    async def prepare(self, commands: Sequence[LinkContract]) -> PreparedLinks:
        return await asyncio.to_thread(prepare_links, commands, self._protector)

    async def warm_up(self) -> None:
        return None

    def close(self) -> None:
        return None


class ProcessPreparer:
    """In ``processes`` spawned worker processes; a pool that broke is started again once."""

    def __init__(self, *, keyring: Keyring, processes: int) -> None:
        self._keyring = keyring
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self._keyring,),
            )
        return self._pool

    async def prepare(self, commands: Sequence[LinkContract]) -> PreparedLinks:
        ordered = in_time_order(commands)
        rows = [_command_row(c) for c in ordered]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor(), _prepare_rows, rows)
        except BrokenProcessPool:
            log.warning("link preparation pool broke; starting it again")
            self._pool = None
            results = await loop.run_in_executor(self._executor(), _prepare_rows, rows)
        prepared = PreparedLinks(items=[])
        for row, command in zip(results, ordered, strict=True):
            item = _result(row, command)
            prepared.items.append(item)
            if isinstance(item, ProtectedLink):
                prepared.opened[item.account_id] = WireRecord(key=row[17], value=row[18], headers=row[19])
        return prepared

    async def warm_up(self) -> None:
        """Start the processes now rather than on the first batch."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor(), _prepare_rows, [])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# --- in the worker processes ---------------------------------------------------------------

_protector: KeyringProtector | None = None


def _start_worker(keyring: Keyring) -> None:
    global _protector
    _protector = KeyringProtector(keyring=keyring)


def _prepare_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``prepare_links`` of commands already in time order, encoding opened accounts ahead."""
    assert _protector is not None, "worker not initialised"
    prepared = prepare_links([_command(row) for row in rows], _protector, encode_opened=True)
    return [_result_row(item, prepared.opened) for item in prepared.items]


# --- the wire format of both directions ----------------------------------------------------


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


def _result_row(p: Prepared, opened: dict[uuid.UUID, WireRecord]) -> tuple[Any, ...]:
    if isinstance(p, Rejection):
        return (p.reason.value,)
    n, c, record = p.link, p.contacts, opened[p.account_id]
    return (
        n.login_kind.value, n.mobile, n.email, n.personal_account, n.full_name, n.passport,
        p.login_key, p.mobile_key, p.personal_account_key, p.passport_hash, p.fingerprint,
        p.account_id.hex, c.mobile_enc, c.mobile_masked, c.email_enc, c.email_masked,
        c.full_name_enc, record.key, record.value, record.headers,
    )


def _result(row: tuple[Any, ...], command: LinkContract) -> Prepared:
    if len(row) == 1:
        return Rejection(contract_number=command.contract_number, event_id=command.event_id,
                         reason=ContractRejectReason(row[0]))
    return ProtectedLink(
        link=NormalisedLink(
            command=command, login_kind=LoginKind(row[0]), mobile=row[1], email=row[2],
            personal_account=row[3], full_name=row[4], passport=row[5],
        ),
        login_key=row[6], mobile_key=row[7], personal_account_key=row[8], passport_hash=row[9],
        fingerprint=row[10], account_id=uuid.UUID(hex=row[11]),
        contacts=SealedContacts(
            mobile_enc=row[12], mobile_masked=row[13], email_enc=row[14], email_masked=row[15],
            full_name_enc=row[16],
        ),
    )
