"""Password hashing with argon2-cffi (Argon2id, its recommended parameters)."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_MIN = 8
# The one hasher of the process. Tests replace it with argon2.profiles.CHEAPEST (tests/conftest.py);
# nothing else should.
hasher = PasswordHasher()
_dummy: tuple[PasswordHasher, str] | None = None


def _dummy_hash() -> str:
    """A hash made by the current hasher. Verifying against it when the user does not exist keeps the
    timing the same as for a real user."""
    global _dummy
    if _dummy is None or _dummy[0] is not hasher:
        _dummy = (hasher, hasher.hash("not-a-real-password-0123456789"))
    return _dummy[1]


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
