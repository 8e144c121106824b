"""Authenticated encryption of contacts and passwords, keyed hashes of identifiers, and argon2id
password hashing.

* Keys by purpose, each a comma-separated list of base64url 256-bit keys, newest first. The
  newest encrypts; every listed key decrypts. ``CONTACT_KEYS`` seal the contacts of
  ``AccountChanged`` (registration seals, recovery opens); ``DELIVERY_KEYS`` seal what recovery
  sends the notifier (``CodeIssued``, notices). ``SECRET_KEYS`` serves as both when they are
  unset. Rotation: prepend a new key, re-deploy, drop the old one once nothing sealed with it is
  still needed (codes live ``CODE_TTL_S``; accounts: after ``selfcare-ops keys reseal``).
* ``HASH_PEPPER``: the HMAC-SHA-256 key of logins, destinations and passport data.

A token is ``v1.<key id>.<base64url(nonce | AES-256-GCM ciphertext)>``; the key id is the first
8 hex digits of SHA-256 of the key, so it reveals nothing. The associated data binds a token to
its use (e.g. ``code:<code_id>:password``), so a token cannot be moved to another field or event.

Passwords are hashed with argon2id in a thread pool shared by the whole service
(``ThreadPoolHasher``, recovery's ``Hasher``). argon2-cffi releases the GIL while it hashes, so the
threads use every core and never block the event loop, with no process to start and nothing to
pickle or pipe per hash (a process pool cost more CPU per hash and its helper threads competed
for the GIL with the event loop). On Linux the pool's threads may run at a lower CPU priority
(``nice``): a hash then waits while the event loop and the database thread (and the other
processes scheduled with them) have work, instead of taking turns with them.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import Histogram

log = logging.getLogger(__name__)
_NONCE = 12


class DecryptError(Exception):
    """A token is malformed, was made with an unknown key, or was tampered with."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


@functools.lru_cache(maxsize=16)
def _aead(key: bytes) -> tuple[AESGCM, str]:
    """The cipher and key id of a key, made once (a bulk load seals three fields per link)."""
    return AESGCM(key), key_id(key)


@functools.lru_cache(maxsize=4)
def _hmac_of(pepper: bytes) -> hmac.HMAC:
    """The HMAC of a pepper with its key already mixed in: each keyed hash copies it instead of
    mixing the key again (a link makes six keyed hashes)."""
    return hmac.new(pepper, digestmod=hashlib.sha256)


def generate_key() -> str:
    """A new random 256-bit key in the form ``SECRET_KEYS`` takes."""
    return _b64e(secrets.token_bytes(32))


@dataclass(frozen=True)
class Keyring:
    keys: tuple[bytes, ...] = field(repr=False)
    pepper: bytes = field(repr=False)

    @classmethod
    def from_config(cls, *, secret_keys: str, hash_pepper: str | None,
                    name: str = "SECRET_KEYS") -> Keyring:
        """``name`` is the setting the keys came from (named in errors); ``hash_pepper`` None:
        a keyring that seals and opens but makes no keyed hash (a service given no pepper)."""
        keys: list[bytes] = []
        for index, item in enumerate(k.strip() for k in secret_keys.split(",")):
            if not item:
                continue
            try:
                raw = _b64d(item)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{name} entry {index + 1} is not base64url") from exc
            if len(raw) != 32:
                raise ValueError(f"{name} entry {index + 1} must be 32 bytes (256 bits)")
            keys.append(raw)
        if not keys:
            raise ValueError(f"{name} holds no key")
        if hash_pepper is None:
            return cls(keys=tuple(keys), pepper=b"")
        if len(hash_pepper.encode()) < 16:
            raise ValueError("HASH_PEPPER must be at least 16 bytes")
        return cls(keys=tuple(keys), pepper=hash_pepper.encode())

    def without_pepper(self) -> Keyring:
        return Keyring(keys=self.keys, pepper=b"")

    def encrypt(self, plaintext: str, *, aad: str) -> str:
        aead, kid = _aead(self.keys[0])
        nonce = secrets.token_bytes(_NONCE)
        sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
        return f"v1.{kid}.{_b64e(nonce + sealed)}"

    def decrypt(self, token: str, *, aad: str) -> str:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            raise DecryptError("malformed token")
        candidates = [k for k in self.keys if key_id(k) == parts[1]]
        if not candidates:
            raise DecryptError("token made with an unknown key")
        try:
            blob = _b64d(parts[2])
        except (ValueError, TypeError) as exc:
            raise DecryptError("malformed token") from exc
        for key in candidates:
            try:
                plain = AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad.encode("utf-8"))
            except (InvalidTag, ValueError):
                continue
            return plain.decode("utf-8")
        raise DecryptError("token does not authenticate")

    @property
    def newest_key_id(self) -> str:
        return key_id(self.keys[0])

    def sealed_with_newest(self, token: str) -> bool:
        """Whether ``token`` names the newest key (what ``keys reseal`` leaves behind)."""
        parts = token.split(".")
        return len(parts) == 3 and parts[1] == self.newest_key_id

    def keyed_hash(self, purpose: str, value: str) -> str:
        """HMAC-SHA-256 of ``value`` for one ``purpose`` (hex): stable, not reversible."""
        if not self.pepper:
            raise RuntimeError("this service is given no HASH_PEPPER: it makes no keyed hash")
        mac = _hmac_of(self.pepper).copy()
        mac.update(purpose.encode() + b"\x00" + value.encode("utf-8"))
        return mac.hexdigest()


def contact_aad(account_id: str, field: str) -> str:
    """Associated data of an encrypted contact in AccountChanged (``field``: mobile, email)."""
    return f"account:{account_id}:{field}"


def code_aad(code_id: str, field: str) -> str:
    """Associated data of CodeIssued's encrypted fields (``field``: destination, password)."""
    return f"code:{code_id}:{field}"


@dataclass(frozen=True)
class LocalKeys:
    """What local/demo mode generates once into ``local-keys.json``: a keyring per purpose, the
    pepper (inside both keyrings) and the ops token."""

    contact: Keyring
    delivery: Keyring
    ops_api_token: str = field(repr=False)


def load_local_keys(path: Path) -> LocalKeys:
    """Local/demo mode only: keys generated once and kept in ``path`` (mode 0600).

    A file written before keys by purpose holds only ``secret_keys``: it keeps serving as both
    contact and delivery keys (what is already sealed with it stays readable), and the missing
    entries (the ops token) are added. Processes starting together take turns (a lock file),
    so they all read the same keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _load_local_keys(path)


def _load_local_keys(path: Path) -> LocalKeys:
    data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    fresh = dict(data)
    if not data:
        fresh = {"contact_keys": generate_key(), "delivery_keys": generate_key(),
                 "hash_pepper": _b64e(secrets.token_bytes(32))}
    fresh.setdefault("ops_api_token", _b64e(secrets.token_bytes(24)))
    if fresh != data:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(fresh, handle)
        os.replace(tmp, path)
    pepper = fresh["hash_pepper"]
    contact = fresh.get("contact_keys") or fresh["secret_keys"]
    delivery = fresh.get("delivery_keys") or fresh["secret_keys"]
    return LocalKeys(
        contact=Keyring.from_config(secret_keys=contact, hash_pepper=pepper, name="contact_keys"),
        delivery=Keyring.from_config(secret_keys=delivery, hash_pepper=pepper, name="delivery_keys"),
        ops_api_token=fresh["ops_api_token"],
    )


def load_or_create_local_keys(path: Path) -> Keyring:
    """The contact keyring of ``load_local_keys`` (creates the file when it is missing)."""
    return load_local_keys(path).contact


if __name__ == "__main__":
    print(generate_key())


# --- argon2id, in threads -------------------------------------------------------------------

T = TypeVar("T")
Params = tuple[int, int, int]  # time_cost, memory_kib, parallelism


def _hasher(params: Params) -> PasswordHasher:
    return PasswordHasher(time_cost=params[0], memory_cost=params[1], parallelism=params[2])


def hash_password(params: Params, password: str) -> tuple[str, float]:
    started = time.perf_counter()
    return _hasher(params).hash(password), time.perf_counter() - started


def verify_password(params: Params, hash_: str, password: str) -> tuple[bool, float]:
    started = time.perf_counter()
    ok: bool
    try:
        ok = bool(_hasher(params).verify(hash_, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    return ok, time.perf_counter() - started


def lower_priority(nice: int, refused: threading.Event | None = None) -> None:
    """Adds ``nice`` to the calling thread's nice value (capped at 19), on Linux, where the nice
    value belongs to each thread; elsewhere it would belong to the process, so nothing is done. A
    system that refuses it (a sandbox's filter) is logged, and the thread hashes at its priority:
    the pool's initializer must not fail, or the pool would refuse every hash. ``refused``: set
    at the first refusal, so a pool's threads log it once."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        if refused is not None:
            if refused.is_set():
                return
            refused.set()
        log.warning("the hashing threads keep their CPU priority: lowering it was refused (%s)",
                    type(exc).__name__)


class ThreadPoolHasher:
    def __init__(self, *, params: Params, workers: int, seconds: Histogram | None = None,
                 nice: int = 0) -> None:
        """``nice``: added to the nice value of each hashing thread (``lower_priority``)."""
        self.params = params
        self.workers = workers
        self.nice = nice
        self._seconds = seconds
        self._pool: ThreadPoolExecutor | None = None
        self._refused = threading.Event()  # lowering the threads' priority was refused (logged)
        self._dummy: str | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="argon2",
                                            initializer=lower_priority,
                                            initargs=(self.nice, self._refused))
        return self._pool

    def _observe(self, op: str, seconds: float) -> None:
        if self._seconds is not None:
            self._seconds.labels(op).observe(seconds)

    async def hash_many(self, passwords: Sequence[str]) -> list[str]:
        return await self._in_pool("hash", hash_password, [(p,) for p in passwords])

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return await self._in_pool("verify", verify_password, pairs)

    async def _in_pool(self, op: str, fn: Callable[..., tuple[T, float]],
                       calls: Sequence[tuple[str, ...]]) -> list[T]:
        """``fn(params, *call)`` for every call, concurrently in the pool; times observed."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, fn, self.params, *call) for call in calls)
        )
        for _, seconds in results:
            self._observe(op, seconds)
        return [value for value, _ in results]

    async def dummy_hash(self) -> str:
        if self._dummy is None:
            (self._dummy,) = await self.hash_many([secrets.token_urlsafe(16)])
        return self._dummy

    async def warm_up(self) -> None:
        """Start every thread now (and make the dummy hash), not on the first request."""
        await self.dummy_hash()
        await self.hash_many([secrets.token_urlsafe(8) for _ in range(self.workers)])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
