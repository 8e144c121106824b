from __future__ import annotations

import pytest

from services.common.crypto import Keyring
from services.registration.adapters.protection import KeyringProtector
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_config(secret_keys=TEST_SECRET_KEYS, hash_pepper=TEST_HASH_PEPPER)


@pytest.fixture
def protector(keyring: Keyring) -> KeyringProtector:
    return KeyringProtector(keyring=keyring)
