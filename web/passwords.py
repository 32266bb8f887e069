"""Password hashing with argon2-cffi (Argon2id, its recommended parameters)."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # enough for any passphrase; a longer one is only work for the hasher
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing the same as for a real user.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0123456789")


def password_problem(password: str) -> str | None:
    """What is wrong with a new password, as one sentence, or None: the one rule of every path (web, CLI)."""
    if len(password.strip()) < PASSWORD_MIN:
        return f"A password needs at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"A password can have at most {PASSWORD_MAX} characters."
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
