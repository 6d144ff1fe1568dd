"""argon2id password hashing (OWASP: m >= 19 MiB, t >= 2), off the event loop."""

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from melo_protocol.wire.accounts import PASSWORD_MIN_LENGTH


class Passwords:
    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # verified against when the user does not exist, so timing does not reveal which names exist
        self._dummy = self._hasher.hash("melo-dummy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        def _verify() -> bool:
            try:
                return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(_verify)


def password_problem(password: str, username: str) -> str | None:
    """Why a password is refused, or None."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"password must be at least {PASSWORD_MIN_LENGTH} characters"
    if password.strip().lower() == username.lower():
        return "password must not be the username"
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        return "password must not contain control characters"
    return None
