"""Emails that carry a secret link, written as .eml files (no relay configured): named after their link,
deleted once it is spent.

Without a relay the outbox worker writes every email into DATA_DIR/outbox-mail. Two kinds carry a link that
is a key until it is used or expires: a sign-in link (opens someone's account) and a held reply's "confirm it
was you" link (posts as them, storage/held.py). Such a file is named <kind>-<SHA-256 of the secret>.eml, so
that it can be found from the database, which keeps only that hash: the web app deletes it when the link is
used, and the worker's cleanup deletes the files of links that were used, expired, discarded or never
existed. LINKS says, per outbox kind, what its link looks like and which hashes still open something.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.held import live_confirm_hashes
from storage.mail_log import CONFIRM_POST, LOGIN_LINK
from storage.models import LoginToken, utcnow
from storage.tokens import hash_secret

log = logging.getLogger(__name__)

EML_FOLDER = "outbox-mail"


def _live_login_hashes(hashes: list[str], now: dt.datetime) -> set[str]:
    return {row.token_hash for row in LoginToken.select(LoginToken.token_hash)
            .where(LoginToken.token_hash.in_(hashes) & LoginToken.used_at.is_null() & (LoginToken.expires_at > now))}


@dataclass(frozen=True)
class SecretLink:
    prefix: str  # of the file name
    link: re.Pattern[str]  # finds the secret in the email's text
    live: Callable[[list[str], dt.datetime], set[str]]  # which of these hashes still open something

    def name_pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(self.prefix)}([0-9a-f]{{64}})\.eml$")


LINKS = {
    LOGIN_LINK: SecretLink("login-", re.compile(r"/login/([A-Za-z0-9_-]{20,200})(?![A-Za-z0-9_-])"),
                           _live_login_hashes),
    CONFIRM_POST: SecretLink("confirm-", re.compile(r"/confirm/([A-Za-z0-9_-]{20,200})(?![A-Za-z0-9_-])"),
                             live_confirm_hashes),
}


def link_mail_name(kind: str, body: str) -> str | None:
    """The file name for an outbox email of `kind` whose body carries its secret link; None for other emails."""
    link = LINKS.get(kind)
    match = link.link.search(body or "") if link else None
    return f"{link.prefix}{hash_secret(match.group(1))}.eml" if link and match else None


def discard_link_mail(data_dir: Path, kind: str, secret_hash: str) -> bool:
    """Deletes the .eml file of the link whose secret has the SHA-256 `secret_hash`, if there is one; True when
    one was deleted."""
    link = LINKS[kind]
    if not re.fullmatch(r"[0-9a-f]{64}", secret_hash or ""):
        return False
    try:
        os.unlink(Path(data_dir) / EML_FOLDER / f"{link.prefix}{secret_hash}.eml")
        return True
    except FileNotFoundError:
        return False


def purge_spent_link_mail(data_dir: Path, now: dt.datetime | None = None) -> int:
    """Deletes the .eml files of secret links that were used, have expired or are unknown; returns how many."""
    folder = Path(data_dir) / EML_FOLDER
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    now = now or utcnow()
    removed = 0
    for link in LINKS.values():
        pattern = link.name_pattern()
        hashes = {m.group(1): n for n in names if n.startswith(link.prefix) and (m := pattern.match(n))}
        if not hashes:
            continue
        live = link.live(list(hashes), now)
        for digest, name in hashes.items():
            if digest in live:
                continue
            try:
                os.unlink(folder / name)
                removed += 1
            except FileNotFoundError:
                pass
    if removed:
        log.info("removed %d spent secret link email%s from %s", removed, "" if removed == 1 else "s", folder)
    return removed


__all__ = ["EML_FOLDER", "LINKS", "link_mail_name", "discard_link_mail", "purge_spent_link_mail"]
