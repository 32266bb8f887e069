"""The JSON shape of a thread, shared by `workrate thread --json`, search and the team's JSON API."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from storage.models import Attachment, Message, User


def attachment_url(base_url: str, attachment: Attachment) -> str:
    """The download address of an attachment: its name percent-encoded, so `report #2.pdf` stays a name."""
    return f"{base_url}/attachments/{attachment.id}/{quote(attachment.name, safe='')}"


def message_json(message: Message, base_url: str, authors: dict[int, User] | None = None,
                 attachments: list[Attachment] | None = None) -> dict[str, Any]:
    author = (authors or {}).get(message.author_id) or User.get_by_id(message.author_id)
    if attachments is None:
        attachments = list(Attachment.select().where(Attachment.message == message.id).order_by(Attachment.id))
    return {
        "id": message.id,
        "author": {"email": author.email, "name": author.name, "role": author.role},
        "visibility": message.visibility,
        "text": message.text,
        "html": message.html,
        "source": message.source,
        "created_at": message.created_at.isoformat() + "Z",
        "attachments": [
            {"name": a.name, "content_type": a.content_type, "size": a.size, "url": attachment_url(base_url, a)}
            for a in attachments
        ],
    }


def messages_json(messages: list[Message], base_url: str) -> list[dict[str, Any]]:
    """Serializes many messages with two queries instead of two per message."""
    ids = [m.id for m in messages]
    authors = {u.id: u for u in User.select().where(User.id.in_({m.author_id for m in messages}))} if ids else {}
    by_message: dict[int, list[Attachment]] = {i: [] for i in ids}
    if ids:
        for a in Attachment.select().where(Attachment.message.in_(ids)).order_by(Attachment.id):
            by_message[a.message_id].append(a)
    return [message_json(m, base_url, authors, by_message[m.id]) for m in messages]
