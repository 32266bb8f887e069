"""Password hashing with argon2-cffi (Argon2id, its recommended parameters)."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_MIN = 8
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing the same as for a real user.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0123456789")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
