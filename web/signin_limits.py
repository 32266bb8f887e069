"""Sign-in under load: attempts counted before the password is checked, and a bound on concurrent checks.

An attempt is recorded first and counted after (record_then_count): each attempt's count includes every
attempt committed before it, so however many arrive at once, at most `limit` of them see a count within
the limit — on SQLite and PostgreSQL alike, with no lock. The keys are chosen so that a stranger cannot lock
out a chosen person: the address together with the caller's network, the network alone (more generously:
guessing across addresses) and, as a backstop, the address from anywhere (far more generously).

Each Argon2 check takes tens of MiB and a core for a moment, so only `login_concurrency` run at once per
process; the others wait up to PASSWORD_WAIT seconds for a turn, then get 429.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator

from flask import Flask

from storage.models import LoginAttempt, User, utcnow
from storage.networks import network_of
from web.passwords import verify_password

RATE_WINDOW = dt.timedelta(minutes=15)
NETWORK_FACTOR = 3  # failed attempts one network may make across addresses: this many times the limit
ANYWHERE_FACTOR = 10  # attempts on one address from all networks together: the backstop
PASSWORD_WAIT = 2.0  # seconds a sign-in waits for a free password check before 429


def password_keys(email: str, remote: str, limit: int) -> dict[str, int]:
    """The lock-out keys of a password attempt and how many attempts each allows in RATE_WINDOW."""
    email = email.strip().lower()[:320]
    network = network_of(remote)
    return {f"pw:{email}|{network}": limit, f"pw-net:{network}": limit * NETWORK_FACTOR,
            f"pw-any:{email}": limit * ANYWHERE_FACTOR}


def record_then_count(keys: dict[str, int]) -> list[int] | None:
    """Records one attempt under every key, then counts: the ids of the new rows when every key is still
    within its limit (pass them to forget() if the attempt succeeded), else None. A refused attempt's rows
    go again: the rows that refused it still count, and a flood of refusals then stores nothing."""
    now = utcnow()
    # Old rows are of no use; forgetting them keeps the table small.
    LoginAttempt.delete().where(LoginAttempt.created_at < now - dt.timedelta(days=1)).execute()
    ids = [LoginAttempt.insert(key=k, created_at=now).execute() for k in keys]
    since = now - RATE_WINDOW
    for key, limit in keys.items():
        used = LoginAttempt.select().where((LoginAttempt.key == key) & (LoginAttempt.created_at > since)).count()
        if used > limit:
            forget(ids)
            return None
    return ids


def forget(ids: list[int]) -> None:
    """A successful attempt does not count against anyone."""
    if ids:
        LoginAttempt.delete().where(LoginAttempt.id.in_(ids)).execute()


def _slots(app: Flask, concurrency: int) -> threading.BoundedSemaphore:
    slots = app.extensions.get("workrate_password_checks")
    if slots is None:
        with _create_lock:
            slots = app.extensions.get("workrate_password_checks")
            if slots is None:
                slots = threading.BoundedSemaphore(concurrency or os.cpu_count() or 1)
                app.extensions["workrate_password_checks"] = slots
    return slots


_create_lock = threading.Lock()


@contextlib.contextmanager
def password_check_slot(app: Flask, concurrency: int, wait: float = PASSWORD_WAIT) -> Iterator[bool]:
    """Yields True holding one of the process's password-check slots, or False after `wait` seconds."""
    slots = _slots(app, concurrency)
    got = slots.acquire(timeout=wait)
    try:
        yield got
    finally:
        if got:
            slots.release()




# --- the three ways in, as web/auth.py calls them ---------------------------------------------------

TOO_MANY = "Too many sign-in attempts. Please wait 15 minutes and try again."
BUSY = "Many people are signing in right now. Please try again in a moment."
WRONG = "That email address and password don't match. Clients: ask for a sign-in link below."
LINKS_PER_EMAIL = 5  # sign-in links one address may be sent in RATE_WINDOW (fewer when login_attempts is lower)
LINK_REQUESTS_PER_ATTEMPT = 10  # link requests per network: this many times login_attempts


def password_sign_in(app: Flask, email: str, password: str, remote: str, limit: int,
                     concurrency: int) -> tuple[User | None, str, int]:
    """(the team member signing in, "", 200) or (None, sentence, HTTP status) for a password attempt."""
    attempt = record_then_count(password_keys(email, remote, limit))
    if attempt is None:
        return None, TOO_MANY, 429
    user = User.get_or_none(User.email == email.strip().lower()) if email else None
    with password_check_slot(app, concurrency) as free:
        ok = free and verify_password(user.password_hash if user else None, password)
    if not free:
        forget(attempt)  # turned away unchecked: not a guess
        return None, BUSY, 429
    if ok and user is not None and user.active and user.is_team:
        forget(attempt)
        return user, "", 200
    return None, WRONG, 401


def link_use_allowed(remote: str, limit: int) -> list[int] | None:
    """Using a sign-in link: counted per network like password guesses (forget() the ids on success)."""
    return record_then_count({f"pw-net:{network_of(remote)}": limit * NETWORK_FACTOR})


def link_limits(login_attempts: int) -> tuple[int, int]:
    """(sign-in links per email address, link requests per network) allowed in 15 minutes.

    Asking for a link proves nothing and costs an attacker nothing, so it is counted apart from password
    attempts: per address asked for, so nobody's mailbox is flooded, and, far more generously, per network
    (many clients may share one office network or proxy), so link requests never use up the password
    attempts of everyone behind the same address.
    """
    return max(1, min(LINKS_PER_EMAIL, login_attempts)), max(1, login_attempts) * LINK_REQUESTS_PER_ATTEMPT


def link_request_allowed(email: str, remote: str, login_attempts: int) -> bool:
    """Whether a sign-in link may be asked for now (see link_limits); counted before anything is done."""
    per_email, per_network = link_limits(login_attempts)
    return record_then_count({f"link-email:{email.strip().lower()[:320]}": per_email,
                              f"link-ip:{network_of(remote)}": per_network}) is not None


__all__ = ["network_of", "password_keys", "record_then_count", "forget", "password_check_slot", "password_sign_in",
           "link_use_allowed", "link_request_allowed", "link_limits", "RATE_WINDOW", "TOO_MANY", "BUSY"]
