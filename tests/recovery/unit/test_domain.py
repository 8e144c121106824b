"""Pure domain rules: passwords, sliding windows, login routing and resolution."""

from __future__ import annotations

import uuid

from schemas.events import AccountStatus, TvProduct
from services.common.crypto import Keyring
from services.common.logins import LoginKind, candidate_keys
from services.recovery.domain.model import (
    ALPHABET,
    Account,
    LimitBook,
    LimitKind,
    Policy,
    Window,
    generate_password,
    resolve,
    route_key,
    route_login,
)


def test_password_alphabet_has_no_look_alikes_and_length_holds() -> None:
    for ch in "0Oo1lIi":
        assert ch not in ALPHABET
    passwords = {generate_password(12) for _ in range(200)}
    assert len(passwords) == 200
    assert all(len(p) == 12 and set(p) <= set(ALPHABET) for p in passwords)


def _book(policy: Policy, stored: list[float] | None = None) -> LimitBook:
    return LimitBook(policy=policy, loader=lambda kind, subject, since, newest: sorted(t for t in stored or [] if t > since)[-newest:])


def test_cooldown_window_gives_retry_after() -> None:
    book = _book(Policy(login_cooldown=Window(max_events=1, window_s=60)))
    assert book.retry_after(LimitKind.LOGIN, "a", 1000.0) is None
    book.record(LimitKind.LOGIN, "a", 1000.0)
    assert book.retry_after(LimitKind.LOGIN, "a", 1010.2) == 50
    assert book.retry_after(LimitKind.LOGIN, "b", 1010.0) is None
    assert book.retry_after(LimitKind.LOGIN, "a", 1060.5) is None
    assert book.added == [(LimitKind.LOGIN, "a", 1000.0)]


def test_window_counts_stored_events_and_frees_at_the_oldest() -> None:
    book = _book(Policy(per_ip=Window(max_events=3, window_s=300)), stored=[100.0, 200.0, 250.0])
    assert book.retry_after(LimitKind.CLIENT_IP, "ip", 300.0) == 100  # 100 + 300 - 300
    assert book.retry_after(LimitKind.CLIENT_IP, "ip", 400.5) is None  # 100 left the window


def test_login_routing_is_the_same_for_every_typed_form(keyring: Keyring) -> None:
    forms = ["+7 916 123-45-67", "8 (916) 123-45-67", "79161234567", "9161234567"]
    assert {route_login(f) for f in forms} == {"+79161234567"}
    assert len({route_key(keyring, f) for f in forms}) == 1
    assert route_login("1234 5678 9012") == "123456789012"
    assert "9161234567" not in route_key(keyring, forms[0])


def _account(keyring: Keyring, product: TvProduct, mobile: str, pa: str,
             status: AccountStatus = AccountStatus.ACTIVE, version: int = 1) -> Account:
    keys = candidate_keys(keyring, mobile) | candidate_keys(keyring, pa)
    return Account(account_id=str(uuid.uuid4()), status=status, tv_product=product,
                   login_keys={LoginKind.MOBILE: keys[LoginKind.MOBILE],
                               LoginKind.PERSONAL_ACCOUNT: keys[LoginKind.PERSONAL_ACCOUNT]},
                   sms_usable=True, email_usable=False, mobile_enc="x", mobile_masked="m",
                   email_enc=None, email_masked=None, version=version)


def test_resolution_follows_the_product_table(keyring: Keyring) -> None:
    iptv = _account(keyring, TvProduct.INTERACTIVE, "+79161112233", "111111111111")
    cable = _account(keyring, TvProduct.LINEAR, "+79162223344", "222222222222")
    sat = _account(keyring, TvProduct.SATELLITE, "+79163334455", "333333333333")
    everyone = [iptv, cable, sat]
    assert resolve(candidate_keys(keyring, "8 916 111-22-33"), everyone) is iptv
    assert resolve(candidate_keys(keyring, "111111111111"), everyone) is None  # iptv: mobile only
    assert resolve(candidate_keys(keyring, "2222 2222 2222"), everyone) is cable
    assert resolve(candidate_keys(keyring, "+7 916 222-33-44"), everyone) is None
    assert resolve(candidate_keys(keyring, "333333333333"), everyone) is sat


def test_active_account_wins_over_a_closed_one_with_the_same_login(keyring: Keyring) -> None:
    old = _account(keyring, TvProduct.INTERACTIVE, "+79161112233", "111111111111",
                   status=AccountStatus.CLOSED, version=9)
    new = _account(keyring, TvProduct.INTERACTIVE, "+79161112233", "444444444444")
    assert resolve(candidate_keys(keyring, "+79161112233"), [old, new]) is new
