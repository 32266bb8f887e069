"""Stored files that must go: a deleted message's attachment bytes leave the file store after the delete
commits, durably. The delete writes a FileRemoval row per key in its own transaction; the file is removed
afterwards (the outbox worker sweeps every minute and at start), and the row goes only once the file is gone
or found in use again. A crash anywhere leaves a row, so the next sweep finishes the job; running it twice
is harmless.

The store is content-addressed: one file can serve several rows (the same bytes attached twice, a raw mail,
the agency's logo), so a key in use anywhere is kept. A file written or re-stored within FRESH_SECONDS is
also kept for now: a post that found its bytes already stored may not have committed the row naming them yet
(storage/files.py touches an existing file when storing it again), and the next sweep looks again.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from peewee import AutoField, CharField, DateTimeField

from storage.agency import Agency
from storage.db import tuples, write_transaction
from storage.files import FileStore
from storage.held_posts import held_keys
from storage.mail_log import InboundEmail
from storage.models import Attachment, BaseModel, utcnow

log = logging.getLogger(__name__)

FRESH_SECONDS = 600  # far longer than any post takes from storing its files to committing its rows
SWEEP_BATCH = 500


class FileRemoval(BaseModel):
    """A stored file to remove once nothing names it (a deleted message's attachment)."""

    id = AutoField()
    key = CharField(max_length=128, index=True)
    created_at = DateTimeField(default=utcnow)


def queue_removals(keys: Iterable[str]) -> None:
    """Records keys to remove, in the caller's transaction (the delete that stopped using them)."""
    rows = [{"key": k} for k in sorted(set(keys))]
    if rows:
        FileRemoval.insert_many(rows).execute()


def keys_in_use(keys: Iterable[str]) -> set[str]:
    """Those of keys that an attachment, a received mail, the agency's logo or a held reply still names: the
    one rule for whether a stored file may go (the store keeps one file per content, shared by all)."""
    wanted = list(set(keys))
    if not wanted:
        return set()
    used: set[str] = set()
    for column in (Attachment.storage_key, InboundEmail.raw_key, Agency.logo_key):
        used |= {row[0] for row in tuples(column.model.select(column).where(column.in_(wanted)))}
    return used | held_keys(set(wanted) - used)


def _fresh(files: FileStore, key: str, now: float) -> bool:
    try:
        return now - os.stat(files.path(key)).st_mtime < FRESH_SECONDS
    except FileNotFoundError:
        return False


def sweep_file_removals(files_dir: Path, now: float | None = None, limit: int = SWEEP_BATCH) -> int:
    """Removes the queued files that nothing names and that were not stored again lately; returns how many
    files went. `now` is epoch seconds (the files' clock)."""
    now = time.time() if now is None else now
    rows = list(tuples(FileRemoval.select(FileRemoval.id, FileRemoval.key).order_by(FileRemoval.id).limit(limit)))
    if not rows:
        return 0
    files = FileStore(files_dir)
    used = keys_in_use(key for _, key in rows)
    done: list[int] = []
    removed = 0
    for row_id, key in rows:
        if key in used:
            done.append(row_id)
            continue
        if _fresh(files, key, now):
            continue
        try:
            removed += files.remove(key)
        except (OSError, ValueError):
            log.warning("could not remove the stored file %s of a deleted message", key, exc_info=True)
            continue
        done.append(row_id)
    if done:
        with write_transaction():
            FileRemoval.delete().where(FileRemoval.id.in_(done)).execute()
    if removed:
        log.info("removed %d stored file%s of deleted messages", removed, "" if removed == 1 else "s")
    return removed


__all__ = ["FileRemoval", "FRESH_SECONDS", "queue_removals", "keys_in_use", "sweep_file_removals"]
