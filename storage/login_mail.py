"""Sign-in links written as .eml files (no relay configured): named after their link, deleted once spent.

Without a relay the outbox worker writes every email into DATA_DIR/outbox-mail. A sign-in link there is
a key to someone's account until it is used or expires, so its file is named login-<SHA-256 of the
secret>.eml: the web app deletes it when the link is used, and the worker's cleanup deletes the files of
links that were used, expired or never existed.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
from pathlib import Path

from storage.models import LoginToken, utcnow
from storage.tokens import hash_secret

log = logging.getLogger(__name__)

EML_FOLDER = "outbox-mail"
_PREFIX = "login-"
_LINK = re.compile(r"/login/([A-Za-z0-9_-]{20,200})(?![A-Za-z0-9_-])")
_NAME = re.compile(r"^login-([0-9a-f]{64})\.eml$")


def login_mail_name(body: str) -> str | None:
    """The file name for an email whose body carries a sign-in link, or None when it carries none."""
    match = _LINK.search(body or "")
    return f"{_PREFIX}{hash_secret(match.group(1))}.eml" if match else None


def discard_login_link_mail(data_dir: Path, secret: str) -> bool:
    """Deletes the .eml file of the sign-in link `secret`, if there is one; True when one was deleted."""
    try:
        os.unlink(Path(data_dir) / EML_FOLDER / f"{_PREFIX}{hash_secret(secret)}.eml")
        return True
    except FileNotFoundError:
        return False


def purge_spent_login_mail(data_dir: Path, now: dt.datetime | None = None) -> int:
    """Deletes the .eml files of sign-in links that were used, have expired or are unknown; returns how many."""
    folder = Path(data_dir) / EML_FOLDER
    try:
        names = [n for n in os.listdir(folder) if n.startswith(_PREFIX)]
    except FileNotFoundError:
        return 0
    hashes = {m.group(1): n for n in names if (m := _NAME.match(n))}
    if not hashes:
        return 0
    now = now or utcnow()
    live = {row.token_hash for row in LoginToken.select(LoginToken.token_hash)
            .where(LoginToken.token_hash.in_(list(hashes)) & LoginToken.used_at.is_null()
                   & (LoginToken.expires_at > now))}
    removed = 0
    for digest, name in hashes.items():
        if digest in live:
            continue
        try:
            os.unlink(folder / name)
            removed += 1
        except FileNotFoundError:
            pass
    if removed:
        log.info("removed %d spent sign-in link email%s from %s", removed, "" if removed == 1 else "s", folder)
    return removed


__all__ = ["EML_FOLDER", "login_mail_name", "discard_login_link_mail", "purge_spent_login_mail"]
