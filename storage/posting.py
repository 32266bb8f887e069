"""post_message(), edit_message(), restore_trimmed(), delete_message(): the only write path for messages.

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
from storage.file_removals import queue_removals
from storage.files import safe_filename
from storage.mail_log import CORRECTION, NOTIFICATION, PENDING, SENT, SKIPPED, OutboxEmail, ThreadEvent
from storage.models import (
    CLIENT,
    SOURCES,
    VISIBILITY_CLIENT,
    VISIBILITY_INTERNAL,
    Attachment,
    Message,
    MessageVersion,
    Thread,
    User,
    Workspace,
    utcnow,
)
from storage.rendering import render_markdown
from storage.visibility import Viewer, audience, can_delete, can_edit, can_open_thread, can_see

MAX_TEXT_LENGTH = 100_000
MAX_VERSIONS = 50  # earlier texts kept per message; past that, post a new message

EDIT = "edit"  # ThreadEvent kinds besides "message": the page replaces the message in place
DELETE = "delete"


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
    notify_delay: float | None = 0,
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
        due = now + dt.timedelta(seconds=notify_delay or 0)  # None: the worker holds it per person
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


def edit_message(message: Message, editor: User, text: str, *, now: dt.datetime | None = None) -> Message:
    """Replaces the text of `message` by its author; the earlier text is kept as a MessageVersion.

    Visibility never changes. Notifications not yet sent will carry the new text (they are rendered when
    sent); for one already sent the page offers a correction email. Raises PostingError.
    """
    if not can_edit(editor, message):
        raise PostingError("Only its author can edit a message, and not once it is deleted.")
    text = normalize_text(text)
    if not text and not Attachment.select().where(Attachment.message == message.id).exists():
        raise PostingError("A message needs some text; to remove it, delete it instead.")
    if len(text) > MAX_TEXT_LENGTH:
        raise PostingError(f"A message can hold at most {MAX_TEXT_LENGTH:,} characters.")
    if text == message.text:
        return message
    return _replace_text(message, editor, text, now=now)


def _replace_text(message: Message, editor: User, text: str, *, now: dt.datetime | None = None,
                  **fields: object) -> Message:
    """An edit's write: the earlier text kept as a MessageVersion, the new one stored and rendered, an edit
    event for live updates (and any other `fields` of the message set with it)."""
    if MessageVersion.select().where(MessageVersion.message == message.id).count() >= MAX_VERSIONS:
        raise PostingError(f"This message has been edited {MAX_VERSIONS} times; please post a new one instead.")
    now = now or utcnow()
    html = render_markdown(text)
    with contextlib.nullcontext() if database.in_transaction() else write_transaction():
        MessageVersion.create(message=message.id, text=message.text, html=message.html,
                              written_at=message.edited_at or message.created_at, replaced_at=now, editor=editor.id)
        # The search index follows the text: an FTS5 trigger on SQLite, a generated tsvector on PostgreSQL.
        Message.update(text=text, html=html, edited_at=now, **fields).where(Message.id == message.id).execute()
        _INSERT_EVENT.execute((message.thread_id, message.id, EDIT, now))
        changes.thread_changed(message.thread_id)  # wakes live updates once this commits
    changes.committed()
    message.text, message.html, message.edited_at = text, html, now
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def restore_trimmed(message: Message, editor: User, part: str, *, now: dt.datetime | None = None) -> Message:
    """Puts `part`, the start of what reply extraction cut from an emailed message (its own trimmed part,
    nothing else), back below its text, as an edit by a team member: the earlier text is kept as a
    MessageVersion, both sides see "edited", and the visibility does not change. The caller leaves out any
    quote of our own email (gateway/inbound/own_mail.py). Raises PostingError."""
    if not (editor.is_team and editor.active) or message.is_deleted or not can_see(Viewer.of(editor), message):
        raise PostingError("Only a team member who can see this message can restore its trimmed part.")
    trimmed, part = normalize_text(message.trimmed_text), normalize_text(part)
    if not trimmed:
        raise PostingError("Nothing was trimmed from this message, or it has already been restored.")
    if not part:
        raise PostingError("What was trimmed is only the quoted email from WorkRate; there is nothing to restore.")
    if not trimmed.startswith(part):
        raise PostingError("Only this message's own trimmed part can be restored.")
    text = normalize_text(f"{message.text}\n\n{part}")
    if len(text) > MAX_TEXT_LENGTH:
        raise PostingError(f"With its trimmed part this message would be over {MAX_TEXT_LENGTH:,} characters.")
    # The part moves into the text (the earlier version keeps the text without it): no second restore.
    return _replace_text(message, editor, text, now=now, trimmed_text=None)


def delete_message(message: Message, actor: User, *, now: dt.datetime | None = None) -> Message:
    """Deletes a message: it stays as a "message deleted" mark (same place, author and visibility) while its
    text, earlier versions and attachments are removed, and emails about it not yet sent are cancelled.
    Raises PostingError."""
    if not can_delete(actor, message):
        raise PostingError("Only its author or a team admin can delete a message.")
    now = now or utcnow()
    with contextlib.nullcontext() if database.in_transaction() else write_transaction():
        MessageVersion.delete().where(MessageVersion.message == message.id).execute()
        # Its files leave the store once this commits (storage/file_removals.py; kept while named elsewhere).
        queue_removals(a.storage_key for a in Attachment.select(Attachment.storage_key)
                       .where(Attachment.message == message.id))
        Attachment.delete().where(Attachment.message == message.id).execute()
        (OutboxEmail.update(status=SKIPPED, last_error="the message was deleted")
         .where((OutboxEmail.message == message.id) & (OutboxEmail.status == PENDING)).execute())
        Message.update(text="", html="", trimmed_text=None, deleted_at=now).where(Message.id == message.id).execute()
        _INSERT_EVENT.execute((message.thread_id, message.id, DELETE, now))
        changes.thread_changed(message.thread_id)  # wakes live updates once this commits
    changes.committed()
    message.text, message.html, message.trimmed_text, message.deleted_at = "", "", None, now
    return message


def send_correction(message: Message, editor: User, *, now: dt.datetime | None = None) -> int:
    """Queues a short correction email about an edited message to everyone whose notification about it
    went out before the last edit and who may still see it; once per edit. Returns how many were queued.
    The worker renders it when sending (gateway/outbound/render.py render_correction)."""
    if not can_edit(editor, message) or message.edited_at is None:
        raise PostingError("Only the author of an edited message can send a correction.")
    if OutboxEmail.select().where((OutboxEmail.message == message.id) & (OutboxEmail.kind == CORRECTION)
                                  & (OutboxEmail.created_at >= message.edited_at)).exists():
        raise PostingError("A correction for this edit has already been sent.")
    sent = (OutboxEmail.select(OutboxEmail.recipient, OutboxEmail.to_address)
            .where((OutboxEmail.message == message.id) & (OutboxEmail.kind == NOTIFICATION)
                   & (OutboxEmail.status == SENT) & (OutboxEmail.sent_at < message.edited_at)))
    addresses = {row.recipient_id: row.to_address for row in sent if row.recipient_id}
    candidates = User.select().where(User.id.in_(list(addresses)) & (User.active == True))  # noqa: E712
    people = [p for p in candidates.order_by(User.id) if can_see(Viewer.of(p), message)]
    if not people:
        raise PostingError("Nobody who was emailed this message can still see it, so no correction was sent.")
    now = now or utcnow()
    with contextlib.nullcontext() if database.in_transaction() else write_transaction():
        insert_rows(OutboxEmail, _OUTBOX_FIELDS, [
            (CORRECTION, p.id, addresses[p.id], message.thread_id, message.id, message.is_internal, now, now)
            for p in people])
    return len(people)
