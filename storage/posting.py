"""post_message(): the only write path for a new Message.

In one transaction it writes the message, its attachments, one OutboxEmail per person to notify and a
ThreadEvent for live updates, so a crash can never leave a message without its notifications or the
reverse. The web app, the portal, the CLI, the JSON API and the SMTP gateway all post through here.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from storage.db import write_transaction
from storage.files import safe_filename
from storage.mail_log import NOTIFICATION, OutboxEmail, ThreadEvent
from storage.models import (
    CLIENT,
    SOURCES,
    VISIBILITY_CLIENT,
    VISIBILITY_INTERNAL,
    Attachment,
    Message,
    Thread,
    User,
    utcnow,
)
from storage.rendering import render_markdown
from storage.visibility import Viewer, audience, can_open_thread

MAX_TEXT_LENGTH = 100_000


class PostingError(ValueError):
    """The post cannot be made; the message is a sentence for the person who tried."""


@dataclass(frozen=True)
class NewAttachment:
    """An attachment whose bytes are already in the file store (storage/files.py)."""

    name: str
    content_type: str
    size: int
    sha256: str
    storage_key: str


def post_message(
    thread: Thread,
    author: User,
    text: str,
    *,
    internal: bool = False,
    source: str = "web",
    attachments: Iterable[NewAttachment] = (),
    trimmed_text: str | None = None,
    inbound_email_id: int | None = None,
    notify_delay: float = 0,
    now: dt.datetime | None = None,
) -> Message:
    """Posts `text` (Markdown) by `author` to `thread`; raises PostingError with a readable reason."""
    attachments = list(attachments)
    text = (text or "").replace("\r\n", "\n").strip()
    if not text and not attachments:
        raise PostingError("A message needs some text or an attachment.")
    if len(text) > MAX_TEXT_LENGTH:
        raise PostingError(f"A message can hold at most {MAX_TEXT_LENGTH:,} characters.")
    if source not in SOURCES:
        raise PostingError(f"Unknown message source {source!r}.")
    if not author.active:
        raise PostingError(f"{author.email} is deactivated and cannot post.")
    if internal and author.role == CLIENT:
        raise PostingError("Only team members can post internal notes.")
    if not can_open_thread(Viewer.of(author), thread):
        raise PostingError(f"{author.email} has no Messages access to this workspace.")
    now = now or utcnow()
    # On SQLite, take the write lock at BEGIN (IMMEDIATE): a deferred transaction whose first write meets
    # another process's commit fails at once with "database is locked", whatever busy_timeout says.
    with write_transaction():
        message = Message.create(
            thread=thread, author=author, visibility=VISIBILITY_INTERNAL if internal else VISIBILITY_CLIENT,
            text=text, html=render_markdown(text), source=source, trimmed_text=trimmed_text or None,
            inbound_email_id=inbound_email_id, created_at=now)
        for a in attachments:
            Attachment.create(message=message, name=safe_filename(a.name), content_type=a.content_type,
                              size=a.size, sha256=a.sha256, storage_key=a.storage_key, created_at=now)
        due = now + dt.timedelta(seconds=notify_delay)
        for person in audience(message):
            OutboxEmail.create(kind=NOTIFICATION, recipient=person, to_address=person.email, thread=thread,
                               message=message, internal=message.is_internal, next_attempt_at=due,
                               created_at=now)
        ThreadEvent.create(thread=thread, message=message, kind="message", created_at=now)
        Thread.update(last_activity_at=now).where(Thread.id == thread.id).execute()
    return message
