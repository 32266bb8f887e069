"""People's uploaded pictures, shown instead of their initials. A picture is small once re-encoded (web/avatars.py
makes every one a square of AVATAR_SIZE pixels), so it is kept in the database, in one row per person: set or
removed in one transaction, no file to leave behind."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from peewee import BlobField, CharField, DateTimeField, ForeignKeyField

from storage.db import tuples, write_transaction
from storage.models import BaseModel, User, utcnow

AVATAR_SIZE = 256  # pixels a side: twice the largest size drawn, for sharp pictures on dense screens


class Avatar(BaseModel):
    user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE")
    user_id: int
    data = BlobField()
    content_type = CharField(max_length=40)
    updated_at = DateTimeField(default=utcnow)


def set_avatar(user: User, data: bytes, content_type: str, now: dt.datetime | None = None) -> Avatar:
    """Stores (or replaces) user's picture: bytes already checked and re-encoded by the caller."""
    with write_transaction():
        Avatar.delete().where(Avatar.user == user.id).execute()
        return Avatar.create(user=user.id, data=data, content_type=content_type, updated_at=now or utcnow())


def remove_avatar(user: User) -> bool:
    """Removes user's picture (initials show again); False when there was none."""
    with write_transaction():
        return bool(Avatar.delete().where(Avatar.user == user.id).execute())


def avatar_of(user_id: int) -> Avatar | None:
    return Avatar.get_or_none(Avatar.user == user_id)


def avatar_versions(user_ids: Iterable[int]) -> dict[int, int]:
    """For those of user_ids who have a picture: a number that changes with each new picture (for its URL,
    so browsers may cache a picture for long). One query, without the pictures' bytes."""
    ids = list(set(user_ids))
    if not ids:
        return {}
    rows = tuples(Avatar.select(Avatar.user, Avatar.updated_at).where(Avatar.user.in_(ids)))
    return {user_id: _stamp(updated) for user_id, updated in rows}


def _stamp(updated: dt.datetime | str) -> int:
    if isinstance(updated, str):  # a raw value read back by SQLite
        updated = dt.datetime.fromisoformat(updated)
    return int(updated.timestamp() * 1000)


__all__ = ["AVATAR_SIZE", "Avatar", "set_avatar", "remove_avatar", "avatar_of", "avatar_versions"]
