"""Nothing kept for strangers: a mail refused before its sender was authenticated keeps only its first
STRANGER_RAW_MAX bytes (its headers and the start of its body, enough to see what it was).

parse_mail keeps every raw mail before anyone is checked (a reply must be durable before its 250); when
the mail is then refused or dropped without ever reaching a thread, the full copy is replaced by its head
here, before the outcome row is written: a copy not yet written is never written, one already in the file
store is deleted unless something else refers to the same bytes.
"""
from __future__ import annotations

import hashlib
import logging

from gateway.errors import Deferred, Outcome, SlowDown
from gateway.inbound.mail import InboundMail
from storage.db import database
from storage.held import CONFIRM
from storage.retention import remove_if_unreferenced

log = logging.getLogger(__name__)

STRANGER_RAW_MAX = 64 * 1024


def keeps_too_much(mail: InboundMail, outcome: Outcome) -> bool:
    """Whether mail's raw copy must be cut before its outcome is recorded: it never reached an authenticated
    sender's thread (or is held until its sender confirms it: unproven, its text and files are kept with the
    held reply), is larger than STRANGER_RAW_MAX, and is not a 451 (kept whole to find out why)."""
    slowed = isinstance(outcome, SlowDown)
    unproven = mail.hold == CONFIRM
    return ((not mail.targets or unproven) and (slowed or not isinstance(outcome, Deferred))
            and mail.raw_key is not None and max(mail.size, len(mail.raw)) > STRANGER_RAW_MAX)


def keep_head_only(mail: InboundMail) -> None:
    """Replaces mail's raw copy by its first STRANGER_RAW_MAX bytes, kept in the database with its row.
    Never raises: on any trouble the full copy stays (and expires with REFUSED_MAIL_DAYS)."""
    try:
        files = mail.files.store
        old_key = mail.raw_key
        assert old_key is not None
        if len(mail.raw) >= STRANGER_RAW_MAX or mail.raw_in_database:
            head = bytes(mail.raw[:STRANGER_RAW_MAX])
        else:  # parse_mail released the bytes of a big mail once they were in the file store
            with files.open(old_key) as f:
                head = f.read(STRANGER_RAW_MAX)
        unwritten = mail.files.forget(old_key)
        if not unwritten and not mail.raw_in_database:
            database.connect(reuse_if_open=True)
            remove_if_unreferenced(files, old_key)
        mail.raw = head  # a new object: the SMTP reader's buffer is left as it is
        mail.raw_key = hashlib.sha256(head).hexdigest()
        mail.raw_in_database = True
    except Exception:
        log.exception("could not cut the raw mail %s of a refused mail to its head", mail.raw_key)


__all__ = ["STRANGER_RAW_MAX", "keeps_too_much", "keep_head_only"]
