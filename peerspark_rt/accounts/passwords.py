"""argon2id password hashing, off the event loop (a hash costs ~50 ms of CPU)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# Verified against when the account does not exist, so a miss costs as much as a hit.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")

# OWASP's floor for argon2id: the settings may trade cost for speed down to here, not below.
MIN_TIME_COST, MIN_MEMORY_KIB, MIN_PARALLELISM = 2, 19456, 1


def configure(*, time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Hash new passwords with these argon2id parameters (PASSWORD_HASH_*). Existing hashes
    carry their own and still verify; a login rehashes them with these."""
    global _hasher, _DUMMY_HASH  # (one hasher for the process, set at start-up)
    if time_cost < MIN_TIME_COST or memory_kib < MIN_MEMORY_KIB or parallelism < MIN_PARALLELISM:
        raise ValueError("argon2id parameters below OWASP's floor (t=2, m=19456 KiB, p=1)")
    current = (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism)
    if current == (time_cost, memory_kib, parallelism):
        return
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _DUMMY_HASH = _hasher.hash("not-a-real-password-0")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
