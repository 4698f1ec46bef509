"""Password hashing with argon2id; a dummy hash keeps unknown emails as slow as wrong passwords."""

from __future__ import annotations

import secrets

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10


class Passwords:
    """Argon2id off the event loop: a hash takes ~100 ms of CPU by default, which would stall
    every lookup on the worker. At most ``concurrency`` hashes run at once (memory-hard)."""

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int = 2
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self._slots = anyio.CapacityLimiter(concurrency)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._slots)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant work whether or not the account exists (``stored_hash`` None)."""
        return await anyio.to_thread.run_sync(
            self._verify, stored_hash, password, limiter=self._slots
        )

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def password_problems(password: str, email: str) -> list[str]:
    """What makes a password too weak (empty list when acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        problems.append("no leading or trailing whitespace")
    lowered = password.lower()
    local = email.split("@", 1)[0].lower()
    if lowered == email.lower() or (len(local) >= 4 and local in lowered):
        problems.append("must not contain the email address")
    if len(set(password)) < 5:
        problems.append("at least 5 different characters")
    return problems
