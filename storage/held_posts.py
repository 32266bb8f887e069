"""The held_post table: replies by email that the gateway stored but did not post (storage/held.py says
what they are and what happens to them). Apart, so that storage/file_removals.py can tell which stored files
a held reply still needs without importing the write path."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from peewee import AutoField, BigIntegerField, BooleanField, CharField, DateTimeField, ForeignKeyField, TextField

from storage.models import BaseModel, Message, Thread, User, utcnow


class HeldPost(BaseModel):
    id = AutoField()
    kind = CharField(max_length=10)  # CONFIRM or LOOP
    token_hash = CharField(max_length=64, null=True, unique=True)  # CONFIRM: SHA-256 of the link's secret
    thread = ForeignKeyField(Thread, on_delete="CASCADE")
    thread_id: int
    author = ForeignKeyField(User, on_delete="CASCADE")
    author_id: int
    internal = BooleanField(default=False)
    text = TextField(default="")
    trimmed_text = TextField(default="")
    attachments = TextField(default="[]")  # JSON: the NewAttachment fields of each file (already stored)
    from_address = CharField(max_length=320, default="")
    subject = CharField(max_length=1000, default="")
    message_id_hash = CharField(max_length=64, default="")
    inbound_email_id = BigIntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)
    posted_at = DateTimeField(null=True)
    discarded_at = DateTimeField(null=True)  # an admin discarded it: no files, no link, kept as a mark
    size = BigIntegerField(default=0)  # bytes of its files, counted against quotas while it waits
    message = ForeignKeyField(Message, null=True, on_delete="SET NULL")
    message_id: int | None

    class Meta:
        indexes = ((("author", "posted_at"), False),)

    def file_names(self) -> list[str]:
        """The names of its files, as the sender gave them."""
        return [item["name"] for item in json.loads(self.attachments or "[]")]

    def file_keys(self) -> list[str]:
        """The storage keys of its files."""
        return [item["storage_key"] for item in json.loads(self.attachments or "[]")]

    def waiting(self, now: dt.datetime | None = None) -> bool:
        """Neither posted nor discarded, and not expired."""
        return self.posted_at is None and self.discarded_at is None and self.expires_at > (now or utcnow())


def waiting_clause() -> Any:
    """Held posts whose files are still kept for them: neither posted nor discarded (expired ones too, until
    the worker's cleanup deletes them)."""
    return HeldPost.posted_at.is_null() & HeldPost.discarded_at.is_null()


def held_keys(keys: Iterable[str]) -> set[str]:
    """Those of keys that a waiting held reply carries, in one query (few replies wait: a handful a person)."""
    wanted = set(keys)
    if not wanted:
        return set()
    carried: set[str] = set()
    for row in HeldPost.select(HeldPost.attachments).where(waiting_clause()):
        carried.update(row.file_keys())
    return carried & wanted


def held_file(key: str) -> bool:
    """Whether a waiting held reply carries the stored file `key`."""
    return bool(held_keys([key]))


__all__ = ["HeldPost", "held_file", "held_keys", "waiting_clause"]
