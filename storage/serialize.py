"""The JSON shape of a thread, shared by `workrate thread --json`, search and the team's JSON API.

The README documents it as a contract: fields are added, never changed or removed. A deleted message keeps
its place (id, author, visibility, created_at) with `deleted: true` and no text, html or attachments.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any
from urllib.parse import quote

from storage.db import tuples
from storage.models import Attachment, Message, MessageVersion, User
from storage.visibility import Viewer, visible_versions


def attachment_url(base_url: str, attachment: Attachment) -> str:
    """The download address of an attachment: its name percent-encoded, so `report #2.pdf` stays a name."""
    return f"{base_url}/attachments/{attachment.id}/{quote(attachment.name, safe='')}"


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat() + "Z"


def message_json(message: Message, base_url: str, authors: dict[int, User] | None = None,
                 attachments: list[Attachment] | None = None, versions: int = 0) -> dict[str, Any]:
    """One message, already read through the visibility rule by the caller; `versions` is how many earlier
    texts of it the viewer may see (visible_versions)."""
    author = (authors or {}).get(message.author_id) or User.get_by_id(message.author_id)
    deleted = message.deleted_at is not None
    if deleted:
        attachments = []  # their rows go with the delete; never name a file of a deleted message
    elif attachments is None:
        attachments = list(Attachment.select().where(Attachment.message == message.id).order_by(Attachment.id))
    return {
        "id": message.id,
        "author": {"email": author.email, "name": author.name, "role": author.role},
        "visibility": message.visibility,
        "text": "" if deleted else message.text,
        "html": "" if deleted else message.html,
        "source": message.source,
        "created_at": _iso(message.created_at),
        "attachments": [
            {"name": a.name, "content_type": a.content_type, "size": a.size, "url": attachment_url(base_url, a)}
            for a in attachments
        ],
        "edited_at": _iso(message.edited_at),
        "versions": 0 if deleted else versions,
        "deleted": deleted,
        "deleted_at": _iso(message.deleted_at),
    }


def messages_json(messages: list[Message], base_url: str, viewer: Viewer) -> list[dict[str, Any]]:
    """Serializes many messages, which viewer read through visible_messages, with three queries instead of
    three per message. Version counts go through the rule too (visible_versions)."""
    ids = [m.id for m in messages]
    authors = {u.id: u for u in User.select().where(User.id.in_({m.author_id for m in messages}))} if ids else {}
    by_message: dict[int, list[Attachment]] = {i: [] for i in ids}
    if ids:
        for a in Attachment.select().where(Attachment.message.in_(ids)).order_by(Attachment.id):
            by_message[a.message_id].append(a)
    edited = [m.id for m in messages if m.edited_at is not None and m.deleted_at is None]
    counts: Counter[int] = Counter()
    if edited:
        counts.update(row[0] for row in tuples(visible_versions(viewer, edited).select(MessageVersion.message)))
    return [message_json(m, base_url, authors, by_message[m.id], counts[m.id]) for m in messages]
