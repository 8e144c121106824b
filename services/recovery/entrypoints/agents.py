"""The edge where wire records become recovery's commands; the bootstrap gives each topic a
``BatchRunner`` over these handlers, and each runner an agent
(``services.common.consumer_loop.register_agents``).

- **Records to commands**: wire records become commands, and each batch goes to its handler
  (the decision batch wrapped in the consumer loop's ``InOrder``; tombstones of the accounts
  topic through ``tombstones_as``).
- **Re-keying** (``RouteRequests``): code requests as they arrive go to the internal topic, keyed
  by the login.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from schemas.events import AccountChanged, CodeRequested
from schemas.topics import REQUESTS_BY_LOGIN
from services.common.codec import WireRecord
from services.common.consumer_loop import (
    Decide,
    Decided,
    Inbound,
    InOrder,
    each_as,
)
from services.common.crypto import Keyring
from services.recovery.domain.commands import EraseAccount, IssueCode, ProjectAccount
from services.recovery.domain.model import route_key
from services.recovery.service_layer.codes import IssueCodes, Unwritten
from services.recovery.service_layer.ports import Sender

# --- Records to commands ---------------------------------------------------------------------
# The edge of the batch runners: wire records become recovery's commands, and each batch goes to
# its handler.


def issue_code(event: CodeRequested) -> IssueCode:
    return IssueCode(
        request_event_id=str(event.event_id), login=event.login, channel=event.channel,
        locale=event.locale, client_ip=None if event.client_ip is None else str(event.client_ip),
        requested_at=event.occurred_at.timestamp(),
    )


def project_account(event: AccountChanged) -> ProjectAccount:
    return ProjectAccount(
        account_id=str(event.account_id), contract_number=event.contract_number,
        version=event.version, status=event.status, tv_product=event.tv_product,
        login_key_mobile=event.login_keys.mobile,
        login_key_personal_account=event.login_keys.personal_account,
        sms_usable=event.channels.sms, email_usable=event.channels.email,
        mobile_enc=event.contacts.mobile_enc, mobile_masked=event.contacts.mobile_masked,
        email_enc=event.contacts.email_enc, email_masked=event.contacts.email_masked,
        holder_epoch=event.holder_epoch, contacts_epoch=event.contacts_epoch,
    )


def erase_accounts(account_ids: list[str]) -> list[EraseAccount]:
    """The tombstones of the accounts topic: each key is an erased account's id."""
    return [EraseAccount(account_id=account_id) for account_id in account_ids]


def deciding(issue: IssueCodes) -> Decide[IssueCode, Unwritten]:
    """Decides a batch of commands, given what the batches ahead carry; the loop writes it."""
    async def run(commands: list[IssueCode], ahead: list[Unwritten]) -> Decided[Unwritten]:
        batch = await issue(commands, ahead)
        return Decided(carries=batch.unwritten, write=partial(issue.write, batch),
                       abandon=batch.abandon)
    return run


def on_code_requests(issue: IssueCodes) -> InOrder[Inbound[CodeRequested], Unwritten]:
    """The batch handler of re-keyed code requests: decided in order, written in that order; the
    unit of work tells which failures are transient (the write keeps its place and is retried)."""
    decide = deciding(issue)

    async def run(items: list[Inbound[CodeRequested]], ahead: list[Unwritten]
                  ) -> Decided[Unwritten]:
        return await decide([issue_code(item.event) for item in items], ahead)
    return InOrder(run, transient=issue.uow.transient)


def on_account_changes(handle: Callable[[Sequence[ProjectAccount]], Awaitable[object]]
                       ) -> Callable[[list[Inbound[AccountChanged]]], Awaitable[None]]:
    return each_as(project_account, handle)


# --- Re-keying -------------------------------------------------------------------------------
# Code requests as they arrive (any key) are first re-keyed by the login (``RouteRequests``): the
# original bytes and headers go unchanged to the internal topic, keyed by a keyed hash of the
# normalised login, so that every request for one login is decided on one partition. Nothing is
# stored: the records are published directly and the batch is acked once the broker has them.
# Forwarding is deterministic, so a batch redone after a crash publishes the same records again,
# and the deciding stage drops the copies by ``event_id``.


def _text_headers(headers: object) -> list[tuple[str, bytes]]:
    """The original headers, as (name, bytes) pairs."""
    return [
        (name, value)
        for name, value in headers or ()  # type: ignore[attr-defined]
        if isinstance(name, str) and isinstance(value, bytes)
    ]


class RouteRequests:
    def __init__(self, *, publisher: Sender, keyring: Keyring) -> None:
        self.publisher = publisher
        self.keyring = keyring

    async def __call__(self, items: list[Inbound[CodeRequested]]) -> None:
        await self.publisher.send_all([
            (REQUESTS_BY_LOGIN, WireRecord(
                key=route_key(self.keyring, item.event.login).encode("ascii"),
                value=item.raw.value or b"",
                headers=_text_headers(item.raw.headers),
            ))
            for item in items
        ])
