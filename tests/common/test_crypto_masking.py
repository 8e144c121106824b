from __future__ import annotations

import json
import logging

import pytest

from services.common.crypto import DecryptError, Keyring, generate_key, load_or_create_local_keys
from services.common.logs import JsonFormatter
from services.common.masking import mask_email, mask_phone, redact_text
from services.common.settings import CommonSettings, ConfigError


def ring(*keys: str) -> Keyring:
    return Keyring.from_config(secret_keys=",".join(keys), hash_pepper="p" * 32)


def test_encrypt_round_trip_and_binding_to_associated_data() -> None:
    k = ring(generate_key())
    token = k.encrypt("+79161234567", aad="account:1:mobile")
    assert "79161234567" not in token
    assert k.decrypt(token, aad="account:1:mobile") == "+79161234567"
    with pytest.raises(DecryptError):
        k.decrypt(token, aad="account:2:mobile")  # moved to another account


def test_tampered_and_foreign_tokens_are_refused() -> None:
    k = ring(generate_key())
    token = k.encrypt("secret", aad="a")
    body = token.rsplit(".", 1)[1]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptError):
        k.decrypt(token.rsplit(".", 1)[0] + "." + flipped, aad="a")
    with pytest.raises(DecryptError):
        ring(generate_key()).decrypt(token, aad="a")
    for bad in ["", "v2.x.y", "v1.deadbeef", "v1.zz.!!!"]:
        with pytest.raises(DecryptError):
            k.decrypt(bad, aad="a")


def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    old, new = generate_key(), generate_key()
    token_old = ring(old).encrypt("x", aad="a")
    rotated = ring(new, old)
    assert rotated.decrypt(token_old, aad="a") == "x"
    token_new = rotated.encrypt("y", aad="a")
    assert token_new.split(".")[1] != token_old.split(".")[1]
    with pytest.raises(DecryptError):
        ring(old).decrypt(token_new, aad="a")


def test_keyed_hash_is_stable_and_depends_on_pepper_and_purpose() -> None:
    a = Keyring.from_config(secret_keys=generate_key(), hash_pepper="a" * 16)
    b = Keyring.from_config(secret_keys=generate_key(), hash_pepper="b" * 16)
    assert a.keyed_hash("login", "x") == a.keyed_hash("login", "x")
    assert a.keyed_hash("login", "x") != b.keyed_hash("login", "x")
    assert a.keyed_hash("login", "x") != a.keyed_hash("passport", "x")


@pytest.mark.parametrize("keys,pepper", [("", "p" * 16), ("short", "p" * 16), (generate_key(), "tiny")])
def test_bad_key_configuration_is_refused(keys: str, pepper: str) -> None:
    with pytest.raises(ValueError):
        Keyring.from_config(secret_keys=keys, hash_pepper=pepper)


def test_service_refuses_to_start_without_keys_except_in_local_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        CommonSettings.from_env({"SELFCARE_VAR_DIR": str(tmp_path)})
    first = CommonSettings.from_env({"SELFCARE_VAR_DIR": str(tmp_path), "SELFCARE_ENV": "local"})
    again = CommonSettings.from_env({"SELFCARE_VAR_DIR": str(tmp_path), "SELFCARE_ENV": "local"})
    assert first.contact_keyring.keys == again.contact_keyring.keys  # kept, not regenerated
    assert first.delivery_keyring.keys == again.delivery_keyring.keys
    assert first.ops_api_token == again.ops_api_token and len(first.ops_api_token) >= 16
    # a fresh local set-up has separate keys per purpose, with one pepper
    assert set(first.contact_keyring.keys).isdisjoint(first.delivery_keyring.keys)
    assert first.contact_keyring.pepper == first.delivery_keyring.pepper
    assert (tmp_path / "local-keys.json").stat().st_mode & 0o077 == 0
    assert load_or_create_local_keys(tmp_path / "local-keys.json").pepper == first.contact_keyring.pepper


def test_masks_match_the_design() -> None:
    assert mask_phone("+79161234567") == "+7******4567"
    assert mask_email("ivanov@example.ru") == "i*****v@example.ru"


LONG_DOMAIN = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 56]) + ".ru"  # 251 characters


@pytest.mark.parametrize(("email", "masked"), [
    ("ivanov@example.ru", "i*****v@example.ru"),
    ("abc@example.ru", "a*****c@example.ru"),
    ("ab@example.ru", "a*****@example.ru"),  # the last character would show the whole of it
    ("a@example.ru", "a*****@example.ru"),
])
def test_an_email_mask_never_shows_the_whole_local_part(email: str, masked: str) -> None:
    assert mask_email(email) == masked


@pytest.mark.parametrize(("email", "head"), [
    (f"ab@{LONG_DOMAIN}", "a*****@*"), (f"a@x{LONG_DOMAIN}", "a*****@*"),
    (f"abc@{LONG_DOMAIN[1:]}", "a*****c@*"), (f"ivanov@{LONG_DOMAIN[4:]}", "i*****v@*"),
])
def test_the_mask_of_a_254_character_email_fits_in_254_characters(email: str, head: str) -> None:
    assert len(email) == 254
    masked = mask_email(email)
    assert len(masked) == 254 and masked.startswith(head)
    assert masked.endswith("c" * 63 + "." + "d" * 56 + ".ru")  # the end of the domain is kept
    assert mask_email("x" * 300) == "*" * 254


def test_redaction_shows_no_short_local_part_whole_and_leaves_masked_copies_alone() -> None:
    out = redact_text("from a@example.ru, ab@example.ru and ivanov@example.ru; "
                      "masked a*****@example.ru, i*****v@example.ru")
    assert out == ("from a***@example.ru, a***@example.ru and i***v@example.ru; "
                   "masked a*****@example.ru, i*****v@example.ru")


@pytest.mark.parametrize("text", [
    "+79161234567", "+7 916 123-45-67", "8 (916) 123-45-67", "89161234567", "ivanov@example.ru",
])
def test_redaction_masks_phones_and_emails_in_free_text(text: str) -> None:
    out = redact_text(f"user said {text} twice")
    assert text not in out
    assert "4567" in out or "@example.ru" in out


def test_json_log_lines_are_redacted_including_extras_and_tracebacks() -> None:
    fmt = JsonFormatter("t")
    try:
        raise ValueError("bad mobile +79161234567")
    except ValueError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "for %s", ("ivanov@example.ru",),
                                   sys.exc_info())
    record.login = "8 916 123 45 67"
    line = fmt.format(record)
    data = json.loads(line)
    assert data["service"] == "t"
    for leaked in ["ivanov@example.ru", "+79161234567", "8 916 123 45 67"]:
        assert leaked not in line
