"""Keys by purpose: each service is given only the keys it needs (DESIGN.md "Keys by purpose").

The sealed values come from the services' own code paths: registration's link handler seals an
``AccountChanged``, recovery's projection and issue handler turn it into a ``CodeIssued``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.events import AccountChanged, ContractLinked
from services.common.crypto import DecryptError, Keyring, code_aad, contact_aad, generate_key
from services.common.settings import ConfigError
from services.notifier.settings import NotifierSettings
from services.recovery.settings import RecoverySettings
from services.registration.adapters.protection import KeyringProtector
from services.registration.entrypoints.agents import to_link
from services.registration.service_layer.link_contract import link_contracts
from services.registration.settings import RegistrationSettings
from tests.recovery.builders import POLICY, inbound, request
from tests.recovery.integration.harness import harness
from tests.registration.events import linked, not_after
from tests.registration.fakes import FakeUnitOfWork
from tests.support.workers import TEST_HASH_PEPPER

CONTACT, DELIVERY = generate_key(), generate_key()


TOKENS = {"RECOVERY_API_TOKEN": "r" * 24, "SMS_STATUS_TOKEN": "s" * 24}  # required outside local mode


def env(tmp_path: Path, **keys: str) -> dict[str, str]:
    return {"SELFCARE_VAR_DIR": str(tmp_path), "HASH_PEPPER": TEST_HASH_PEPPER, **TOKENS, **keys}


def test_each_service_is_given_only_its_keys(tmp_path: Path) -> None:
    registration = RegistrationSettings.from_env(env(tmp_path, CONTACT_KEYS=CONTACT))
    notifier = NotifierSettings.from_env(env(tmp_path, DELIVERY_KEYS=DELIVERY))
    recovery = RecoverySettings.from_env(env(tmp_path, CONTACT_KEYS=CONTACT, DELIVERY_KEYS=DELIVERY))
    assert registration.delivery_keyring is None and notifier.contact_keyring is None
    # the notifier makes no keyed hash: it is given no pepper, and needs none to start
    assert NotifierSettings.from_env({"SELFCARE_VAR_DIR": str(tmp_path), "DELIVERY_KEYS": DELIVERY, **TOKENS})
    with pytest.raises(RuntimeError):
        notifier.keyring.keyed_hash("login:mobile", "+79161234567")
    with pytest.raises(ConfigError, match="HASH_PEPPER"):
        RegistrationSettings.from_env({"SELFCARE_VAR_DIR": str(tmp_path), "CONTACT_KEYS": CONTACT})
    with pytest.raises(ConfigError):
        _ = registration.delivery_keys
    with pytest.raises(ConfigError):
        _ = notifier.contact_keys
    assert recovery.contact_keys.keys != recovery.delivery_keys.keys
    with pytest.raises(ConfigError, match="DELIVERY_KEYS"):
        RecoverySettings.from_env(env(tmp_path, CONTACT_KEYS=CONTACT))
    with pytest.raises(ConfigError, match="CONTACT_KEYS entry 1"):
        RegistrationSettings.from_env(env(tmp_path, CONTACT_KEYS="short"))


def test_secret_keys_serves_as_both_when_they_are_unset(tmp_path: Path) -> None:
    both = RecoverySettings.from_env(env(tmp_path, SECRET_KEYS=CONTACT))
    assert both.contact_keys.keys == both.delivery_keys.keys
    only_delivery = RecoverySettings.from_env(env(tmp_path, SECRET_KEYS=CONTACT, DELIVERY_KEYS=DELIVERY))
    assert only_delivery.contact_keys.keys != only_delivery.delivery_keys.keys


@pytest.mark.parametrize("keys", [
    {"CONTACT_KEYS": CONTACT, "DELIVERY_KEYS": f"{DELIVERY},{CONTACT}"},  # an older key in both
    {"CONTACT_KEYS": f"{CONTACT},{DELIVERY}", "DELIVERY_KEYS": DELIVERY},
    {"CONTACT_KEYS": CONTACT, "DELIVERY_KEYS": CONTACT},
    # the same key material written differently (base64 padding, spaces): compared as bytes
    {"CONTACT_KEYS": CONTACT, "DELIVERY_KEYS": f"{DELIVERY}, {CONTACT}="},
    # one list set, the other falling back to SECRET_KEYS
    {"CONTACT_KEYS": CONTACT, "SECRET_KEYS": f"{DELIVERY},{CONTACT}"},
    {"DELIVERY_KEYS": DELIVERY, "SECRET_KEYS": DELIVERY},
], ids=["older-in-delivery", "older-in-contact", "same-list", "padded", "contact-and-secret",
        "delivery-and-secret"])
def test_recovery_refuses_a_key_in_both_contact_and_delivery_keys(tmp_path: Path,
                                                                  keys: dict[str, str]) -> None:
    """A key in both lists would let the notifier open a contact and registration a password."""
    with pytest.raises(ConfigError, match=r"^CONTACT_KEYS and DELIVERY_KEYS must not share a key") as err:
        RecoverySettings.from_env(env(tmp_path, **keys))
    assert CONTACT not in str(err.value) and DELIVERY not in str(err.value)
    assert Keyring.from_config(secret_keys=CONTACT, hash_pepper=None).newest_key_id not in str(err.value)


def test_one_key_and_local_set_ups_still_serve_both_purposes(tmp_path: Path) -> None:
    """SECRET_KEYS alone is the one-key set-up DESIGN.md allows; local mode generates its keys."""
    one_key = RecoverySettings.from_env(env(tmp_path, SECRET_KEYS=f"{CONTACT},{DELIVERY}"))
    assert one_key.contact_keys.keys == one_key.delivery_keys.keys
    local = RecoverySettings.from_env({"SELFCARE_ENV": "local", "SELFCARE_VAR_DIR": str(tmp_path)})
    assert local.contact_keys.keys and local.delivery_keys.keys


def test_an_old_local_key_file_keeps_working(tmp_path: Path) -> None:
    """A ./var/local-keys.json written before keys by purpose: its key stays both keys."""
    path = tmp_path / "local-keys.json"
    path.write_text(json.dumps({"secret_keys": CONTACT, "hash_pepper": TEST_HASH_PEPPER}))
    local = {"SELFCARE_VAR_DIR": str(tmp_path), "SELFCARE_ENV": "local"}
    recovery = RecoverySettings.from_env(local)
    assert recovery.contact_keys.keys == recovery.delivery_keys.keys
    assert recovery.ops_api_token and json.loads(path.read_text())["secret_keys"] == CONTACT


async def _sealed_records(tmp_path: Path) -> tuple[AccountChanged, dict[str, Any]]:
    """An AccountChanged sealed by registration, and the CodeIssued recovery makes of it."""
    registration = RegistrationSettings.from_env(env(tmp_path, CONTACT_KEYS=CONTACT))
    recovery = RecoverySettings.from_env(env(tmp_path, CONTACT_KEYS=CONTACT, DELIVERY_KEYS=DELIVERY))
    uow = FakeUnitOfWork()
    await link_contracts([to_link(ContractLinked.model_validate_json(json.dumps(linked("77-9"))))],
                         uow=uow, protector=KeyringProtector(keyring=registration.contact_keys),
                         not_after=not_after())
    [(_, record)] = uow.repo.staged
    account = AccountChanged.model_validate_json(record.value)
    h = harness(f"sqlite:///{tmp_path / 'recovery.db'}", recovery.contact_keys, POLICY, 600,
                delivery_keyring=recovery.delivery_keys)
    try:
        await h.project([inbound(account)])
        await h.requests(request("+7 916 123-45-67"))
        [(topic, issued)] = h.staged()
    finally:
        h.db.close()
    assert topic == "selfcare.code.issued.v1"
    return account, issued


async def test_registration_cannot_open_a_password_and_the_notifier_cannot_open_a_contact(
    tmp_path: Path,
) -> None:
    account, issued = await _sealed_records(tmp_path)
    registration = RegistrationSettings.from_env(env(tmp_path, CONTACT_KEYS=CONTACT))
    notifier = NotifierSettings.from_env(env(tmp_path, DELIVERY_KEYS=DELIVERY))
    recovery = RecoverySettings.from_env(env(tmp_path, CONTACT_KEYS=CONTACT, DELIVERY_KEYS=DELIVERY))
    password_aad = code_aad(issued["code_id"], "password")
    mobile_aad = contact_aad(str(account.account_id), "mobile")
    # the intended readers open them (the check below could otherwise pass for any reason)
    assert len(notifier.delivery_keys.decrypt(issued["password_enc"], aad=password_aad)) == 10
    assert recovery.contact_keys.decrypt(account.contacts.mobile_enc, aad=mobile_aad) == "+79161234567"
    # registration, given only its own keys, cannot open a CodeIssued password
    with pytest.raises(DecryptError):
        registration.keyring.decrypt(issued["password_enc"], aad=password_aad)
    with pytest.raises(DecryptError):
        registration.keyring.decrypt(issued["destination_enc"],
                                     aad=code_aad(issued["code_id"], "destination"))
    # the notifier cannot open an AccountChanged contact
    with pytest.raises(DecryptError):
        notifier.keyring.decrypt(account.contacts.mobile_enc, aad=mobile_aad)
    assert account.contacts.email_enc is not None
    with pytest.raises(DecryptError):
        notifier.keyring.decrypt(account.contacts.email_enc,
                                 aad=contact_aad(str(account.account_id), "email"))
