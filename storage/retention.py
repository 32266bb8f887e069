"""Raw mails of refused and dropped mail expire: after REFUSED_MAIL_DAYS the outbox worker's cleanup
deletes them (from the raw_mail table and the file store) and clears their rows' raw_key. The rows stay, as
the inbound log; accepted posts keep their raw mail for good."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from storage.db import write_transaction
from storage.file_removals import keys_in_use
from storage.files import FileStore
from storage.mail_log import ACCEPTED, InboundEmail, RawMail
from storage.models import utcnow

log = logging.getLogger(__name__)

PURGE_BATCH = 500  # rows per cleanup, so that one cleanup never holds the database for long


def purge_refused_raw_mail(files_dir: Path, days: int, now: dt.datetime | None = None,
                           limit: int = PURGE_BATCH) -> int:
    """Deletes the raw mails of refused, dropped and deferred mail received more than `days` days ago;
    returns how many rows lost theirs."""
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    rows = list(InboundEmail.select(InboundEmail.id, InboundEmail.raw_key)
                .where((InboundEmail.outcome != ACCEPTED) & InboundEmail.raw_key.is_null(False)
                       & (InboundEmail.received_at < cutoff))
                .order_by(InboundEmail.id).limit(limit))
    if not rows:
        return 0
    keys: set[str] = {str(r.raw_key) for r in rows}
    with write_transaction():
        InboundEmail.update(raw_key=None).where(InboundEmail.id.in_([r.id for r in rows])).execute()
        # The same bytes delivered again (a retry that was accepted, a newer refusal) keep them.
        gone = keys - keys_in_use(keys)
        if gone:
            RawMail.delete().where(RawMail.key.in_(list(gone))).execute()
    files = FileStore(files_dir)
    for key in gone:
        try:
            files.remove(key)
        except (OSError, ValueError):
            log.warning("could not delete the expired raw mail %s", key, exc_info=True)
    log.info("deleted the raw mail of %d refused or dropped mail%s older than %d days", len(rows),
             "" if len(rows) == 1 else "s", days)
    return len(rows)


def remove_if_unreferenced(files: FileStore, key: str) -> bool:
    """Deletes the stored file `key` unless something still names it (file_removals.py keys_in_use)."""
    if keys_in_use([key]):
        return False
    return files.remove(key)


def discard_files(files_dir: Path, keys: list[str]) -> int:
    """A refused post's files: deleted unless something else stored the same bytes; returns how many went."""
    files = FileStore(files_dir)
    return sum(1 for key in set(keys) if remove_if_unreferenced(files, key))


__all__ = ["purge_refused_raw_mail", "remove_if_unreferenced", "discard_files"]
