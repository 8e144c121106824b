"""Recovery test helpers: AccountChanged records as registration publishes them, fakes."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from schemas.events import (
    AccountChanged,
    AccountStatus,
    Channels,
    Contacts,
    LoginKeys,
    TvProduct,
)
from services.common.codec import WireRecord, encode
from services.common.crypto import Keyring, contact_aad
from services.common.logins import LoginKind, login_key
from services.common.masking import mask_email, mask_phone
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS


def make_keyring() -> Keyring:
    return Keyring.from_config(secret_keys=TEST_SECRET_KEYS, hash_pepper=TEST_HASH_PEPPER)


@pytest.fixture
def keyring() -> Keyring:
    return make_keyring()


def new_mobile() -> str:
    return "+7916" + "".join(random.choice("0123456789") for _ in range(7))


def new_personal_account() -> str:
    return "".join(random.choice("123456789") for _ in range(12))


def account_changed(
    keyring: Keyring,
    *,
    product: TvProduct = TvProduct.INTERACTIVE,
    mobile: str | None = None,
    personal_account: str | None = None,
    email: str | None = None,
    mobile_active: bool = True,
    status: AccountStatus = AccountStatus.ACTIVE,
    version: int = 1,
    account_id: uuid.UUID | None = None,
) -> AccountChanged:
    account_id = account_id or uuid.uuid4()
    mobile = mobile or new_mobile()
    personal_account = personal_account or new_personal_account()
    aid = str(account_id)
    return AccountChanged(
        account_id=account_id,
        contract_number=f"77-{random.randint(1000000, 9999999)}",
        version=version,
        status=status,
        tv_product=product,
        login_keys=LoginKeys(
            mobile=login_key(keyring, LoginKind.MOBILE, mobile),
            personal_account=login_key(keyring, LoginKind.PERSONAL_ACCOUNT, personal_account),
        ),
        channels=Channels(sms=mobile_active, email=email is not None),
        contacts=Contacts(
            mobile_masked=mask_phone(mobile),
            mobile_enc=keyring.encrypt(mobile, aad=contact_aad(aid, "mobile")),
            email_masked=mask_email(email) if email else None,
            email_enc=keyring.encrypt(email, aad=contact_aad(aid, "email")) if email else None,
        ),
        linked_at=datetime.now(UTC),
    )


def wire(event: AccountChanged) -> WireRecord:
    return encode(event, key=str(event.account_id), source="/selfcare-access/registration")


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeHasher:
    """Instant 'hashes' (``fake$<password>``); counts calls so tests can check the work done."""

    def __init__(self) -> None:
        self.hashed = 0
        self.verified = 0

    async def hash_many(self, passwords: Sequence[str]) -> list[str]:
        self.hashed += len(passwords)
        return ["fake$" + p for p in passwords]

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        self.verified += len(pairs)
        return [h == "fake$" + p for h, p in pairs]

    async def dummy_hash(self) -> str:
        return "fake$" + uuid.uuid4().hex
