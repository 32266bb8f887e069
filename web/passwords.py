"""Password hashing with argon2-cffi (Argon2id, its recommended parameters)."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # enough for any passphrase; a longer one is only work for the hasher
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


def password_problem(password: str) -> str | None:
    """What is wrong with a new password, as one sentence, or None: the one rule of every path (web, CLI)."""
    if len(password.strip()) < PASSWORD_MIN:
        return f"A password needs at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"A password can have at most {PASSWORD_MAX} characters."
    return None


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
