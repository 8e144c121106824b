"""The ``Protector`` port over the shared keyring: keyed hashes and AES-GCM sealing."""

from __future__ import annotations

import json
import uuid

from services.common.crypto import Keyring, contact_aad
from services.common.logins import LoginKind, login_key, mobile_reading
from services.common.masking import mask_email, mask_phone
from services.registration.domain.model import (
    IDENTIFY,
    ProtectedLink,
    SealedContacts,
    contract_identified,
)
from services.registration.domain.validation import NormalisedLink

# made once: ``json.dumps`` with an argument builds an encoder per call (three per link)
_json = json.JSONEncoder(ensure_ascii=False).encode


class KeyringProtector:
    def __init__(self, *, keyring: Keyring) -> None:
        self._keyring = keyring

    def protect(self, link: NormalisedLink) -> ProtectedLink:
        keys = {
            LoginKind.MOBILE: login_key(self._keyring, LoginKind.MOBILE, link.mobile),
            LoginKind.PERSONAL_ACCOUNT: login_key(
                self._keyring, LoginKind.PERSONAL_ACCOUNT, link.personal_account
            ),
        }
        # a personal-account login that a mobile typed as digits would reach as well
        reads_as = (mobile_reading(link.personal_account)
                    if link.login_kind is LoginKind.PERSONAL_ACCOUNT else None)
        content = _json([
            link.command.tv_product.value, link.mobile, link.email, link.personal_account,
            link.full_name, link.passport, link.command.mobile_active,
        ])
        return ProtectedLink(
            link=link,
            login_key=keys[link.login_kind],
            mobile_key=keys[LoginKind.MOBILE],
            personal_account_key=keys[LoginKind.PERSONAL_ACCOUNT],
            passport_hash=self._keyring.keyed_hash("passport", link.passport),
            fingerprint=self._keyring.keyed_hash("registration:link-content", content),
            holder_hash=self._keyring.keyed_hash(
                "registration:holder",
                _json([link.passport, link.full_name.casefold()])),
            contacts_hash=self._keyring.keyed_hash(
                "registration:contacts", _json([link.mobile, link.email])),
            alias_key=None if reads_as is None else login_key(self._keyring, LoginKind.MOBILE,
                                                              reads_as),
        )

    def contract_subject(self, number: str) -> str:
        return self._keyring.keyed_hash(IDENTIFY, contract_identified(number))

    def seal(self, account_id: uuid.UUID, link: NormalisedLink) -> SealedContacts:
        aid = str(account_id)
        email = link.email
        return SealedContacts(
            mobile_enc=self._keyring.encrypt(link.mobile, aad=contact_aad(aid, "mobile")),
            mobile_masked=mask_phone(link.mobile),
            email_enc=None if email is None else self._keyring.encrypt(email, aad=contact_aad(aid, "email")),
            email_masked=None if email is None else mask_email(email),
            full_name_enc=self._keyring.encrypt(link.full_name, aad=contact_aad(aid, "full_name")),
            personal_account_enc=self._keyring.encrypt(
                link.personal_account, aad=contact_aad(aid, "personal_account")),
        )
