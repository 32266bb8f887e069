"""Storage quotas: how many bytes of attachments one person, and one workspace, may keep.

Counted from the attachments themselves (Attachment.size), so every process agrees, plus the files of
replies held and not yet posted or discarded (HeldPost.size, storage/held.py): a held reply's files are on
disk too, so that nobody can park files beyond the quota in replies that are never confirmed. A post that
would go over is refused with a sentence (web: 400 next to the form; email: 552 5.2.2), and its files are
deleted.
"""
from __future__ import annotations

from peewee import fn

from storage.held import HeldPost, waiting_clause
from storage.models import Attachment, Message, Thread, User

MB = 1024 * 1024


def bytes_of_person(user_id: int) -> int:
    posted = Attachment.select(fn.COALESCE(fn.SUM(Attachment.size), 0)).join(Message).where(Message.author == user_id)
    held = HeldPost.select(fn.COALESCE(fn.SUM(HeldPost.size), 0)).where((HeldPost.author == user_id) & waiting_clause())
    return int(posted.scalar() or 0) + int(held.scalar() or 0)


def bytes_of_workspace(workspace_id: int) -> int:
    posted = (Attachment.select(fn.COALESCE(fn.SUM(Attachment.size), 0)).join(Message).join(Thread)
              .where(Thread.workspace == workspace_id))
    held = (HeldPost.select(fn.COALESCE(fn.SUM(HeldPost.size), 0)).join(Thread)
            .where((Thread.workspace == workspace_id) & waiting_clause()))
    return int(posted.scalar() or 0) + int(held.scalar() or 0)


def quota_problem(user: User, workspace_id: int, adding: int, person_mb: int, workspace_mb: int) -> str | None:
    """A sentence when `adding` more bytes by user in the workspace would go over a quota (0 MB: none)."""
    if adding <= 0:
        return None
    if person_mb and bytes_of_person(user.id) + adding > person_mb * MB:
        return (f"Your files would take more than your {person_mb:,} MB of storage. "
                "Please ask the team to remove old files, or share a link instead.")
    if workspace_mb and bytes_of_workspace(workspace_id) + adding > workspace_mb * MB:
        return (f"This workspace's files would take more than its {workspace_mb:,} MB of storage. "
                "Please ask the team to remove old files, or share a link instead.")
    return None


__all__ = ["quota_problem", "bytes_of_person", "bytes_of_workspace", "MB"]
