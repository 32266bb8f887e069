"""post_message(): the only write path for a new Message.

In one transaction it writes the message, its attachments, one OutboxEmail per person to notify and a
ThreadEvent for live updates, so a crash can never leave a message without its notifications or the
reverse. The web app, the portal, the CLI, the JSON API and the SMTP gateway all post through here.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from storage import changes
from storage.db import PreparedInsert, database, insert_rows, write_transaction
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
    Workspace,
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


def normalize_text(text: str | None) -> str:
    """A message's text as post_message stores it (and renders it)."""
    return (text or "").replace("\r\n", "\n").strip()


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
    text = normalize_text(text)
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
    if Workspace.select(Workspace.archived_at).where(Workspace.id == thread.workspace_id).scalar() is not None:
        raise PostingError("This workspace is archived, so nothing more can be posted in it.")
    now = now or utcnow()
    visibility = VISIBILITY_INTERNAL if internal else VISIBILITY_CLIENT
    # On SQLite, take the write lock at BEGIN (IMMEDIATE): a deferred transaction whose first write meets
    # another process's commit fails at once with "database is locked", whatever busy_timeout says.
    # Inside a caller's transaction (the gateway's group commit) the rows join it, without a savepoint of
    # their own: the checks above write nothing, and the caller rolls its transaction back when this raises.
    # Every statement is compiled once (storage/db.py): this runs for every post.
    with contextlib.nullcontext() if database.in_transaction() else write_transaction():
        values = (thread.id, author.id, visibility, text, render_markdown(text), source, trimmed_text or None,
                  inbound_email_id, now)
        message = Message(id=_INSERT_MESSAGE.execute(values), thread=thread, author=author, visibility=visibility,
                          text=values[3], html=values[4], source=source, trimmed_text=values[6],
                          inbound_email_id=inbound_email_id, created_at=now)
        if attachments:
            insert_rows(Attachment, _ATTACHMENT_FIELDS, [
                (message.id, safe_filename(a.name), a.content_type, a.size, a.sha256, a.storage_key, now)
                for a in attachments])
        due = now + dt.timedelta(seconds=notify_delay)
        people = audience(message, thread=thread, author=author)
        if people:
            insert_rows(OutboxEmail, _OUTBOX_FIELDS, [
                (NOTIFICATION, person.id, person.email, thread.id, message.id, internal, due, now)
                for person in people])
        _INSERT_EVENT.execute((thread.id, message.id, "message", now))
        changes.thread_changed(thread.id)  # wakes live updates once this commits
    changes.committed()
    return message


_INSERT_MESSAGE = PreparedInsert(Message, ("thread", "author", "visibility", "text", "html", "source", "trimmed_text",
                                           "inbound_email_id", "created_at"))
_ATTACHMENT_FIELDS = ("message", "name", "content_type", "size", "sha256", "storage_key", "created_at")
_OUTBOX_FIELDS = ("kind", "recipient", "to_address", "thread", "message", "internal", "next_attempt_at", "created_at")
_INSERT_EVENT = PreparedInsert(ThreadEvent, ("thread", "message", "kind", "created_at"))
