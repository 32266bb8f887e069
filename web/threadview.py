"""What the team page, the portal page, "load older", search and the live stream share: loading a page of
a thread through the visibility rule and drawing messages with the one macro in templates/_macros.html.

Every list of messages here starts from `storage.visibility.visible_messages(viewer, thread)`.
"""
from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field
from typing import Any

from flask import abort, g, get_template_attribute, url_for
from markupsafe import Markup
from peewee import fn

from storage.avatars import avatar_versions
from storage.mail_log import CORRECTION, NOTIFICATION, SENT, OutboxEmail, ThreadEvent
from storage.models import VISIBILITY_INTERNAL, Attachment, Message, ReadMarker, Thread, User, Workspace
from storage.notify_schedule import zone_of
from storage.outbox import delivery_status
from storage.rendering import sanitize_html
from storage.search import search_terms
from storage.visibility import (
    Viewer,
    may_delete,
    may_edit,
    visible_messages,
    visible_versions,
)

PAGE_SIZE = 50
UNREAD_CAP = 99


@dataclass
class VersionView:
    """An earlier text of an edited message, sanitized for the page."""

    written_at: dt.datetime
    html: Markup

    @property
    def iso_time(self) -> str:
        return self.written_at.replace(microsecond=0).isoformat() + "Z"


@dataclass
class MessageView:
    """A message as one viewer is shown it. Fields only the team sees stay empty for clients."""

    id: int
    author_name: str
    author_email: str
    author_is_team: bool
    created_at: dt.datetime
    source: str
    internal: bool
    html: Markup
    attachments: list[Attachment] = field(default_factory=list)
    mine: bool = False
    trimmed_text: str | None = None  # team only
    has_email: bool = False  # team only: the original email can be opened
    delivery: dict[str, Any] | None = None  # team only: storage/outbox.py delivery_status
    highlight: Markup | None = None  # search results: the text with matching words in <mark>
    edited_at: dt.datetime | None = None
    deleted: bool = False
    versions: list[VersionView] = field(default_factory=list)  # earlier texts, oldest first
    can_edit: bool = False
    can_delete: bool = False
    text: str = ""  # the Markdown source, for the author's edit box only
    emailed_before_edit: bool = False  # the author's: a notification went out before the last edit
    correction_sent: bool = False  # ... and a correction email was queued since
    workspace_name: str = ""  # search across workspaces: where the message is
    thread_url: str = ""
    avatar_url: str = ""  # the author's uploaded picture (web/avatars.py); initials without one

    @property
    def trimmed_lines(self) -> int:
        return len(self.trimmed_text.splitlines()) if self.trimmed_text else 0

    @property
    def iso_time(self) -> str:
        return self.created_at.replace(microsecond=0).isoformat() + "Z"

    @property
    def display_time(self) -> str:
        return self.created_at.strftime("%Y-%m-%d %H:%M UTC")

    @property
    def edited_iso(self) -> str:
        return self.edited_at.replace(microsecond=0).isoformat() + "Z" if self.edited_at else ""

    @property
    def initials(self) -> str:
        return initials(self.author_name or self.author_email)

    @property
    def day(self) -> str:
        """The UTC date; the page regroups by the reader's own day in the browser."""
        return self.created_at.date().isoformat()


def initials(name: str) -> str:
    """Up to two letters for an avatar: first letters of the first and last words."""
    words = [w for w in re.split(r"[\s@._-]+", name) if w and w[0].isalnum()]
    if not words:
        return "?"
    letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return letters.upper()


def get_visible_message(viewer: Viewer, message_id: int) -> Message:
    """The message if viewer may see it.

    :raise 404: unknown, internal for a client, or in a workspace the viewer cannot open.
    """
    if not 0 < message_id <= MAX_ID:
        abort(404)
    message = Message.get_or_none(Message.id == message_id)
    if message is None:
        abort(404)
    found = visible_messages(viewer, message.thread_id).where(Message.id == message_id).first()
    if found is None:
        abort(404)
    return found


MAX_ID = 2**63 - 1  # larger ids in a URL cannot exist; SQLite would raise OverflowError on them


def latest_event_id(viewer: Viewer, thread: Thread) -> int:
    """The newest ThreadEvent of the thread about a message viewer may see; the page's live stream starts
    after it. Joined through the visibility rule, so a client's page does not count internal notes."""
    visible = visible_messages(viewer, thread).select(Message.id)
    return (ThreadEvent.select(fn.MAX(ThreadEvent.id))
            .where((ThreadEvent.thread == thread.id) & ThreadEvent.message.in_(visible)).scalar() or 0)


def load_page(viewer: Viewer, thread: Thread, before: int | None = None,
              limit: int = PAGE_SIZE) -> tuple[list[Message], bool]:
    """The newest `limit` visible messages (older than `before` when given), oldest first, and whether
    older ones remain. An id cursor on the (thread, id) index: page 200 costs what page 1 costs."""
    query = visible_messages(viewer, thread)
    if before is not None:
        query = query.where(Message.id < before)
    rows = list(query.order_by(Message.id.desc()).limit(limit + 1))
    has_more = len(rows) > limit
    return list(reversed(rows[:limit])), has_more


def _delivery(message_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Delivery lines with held emails' times in the signed-in person's own time zone."""
    user = getattr(g, "user", None)
    zone = zone_of(user.time_zone if user is not None else None)
    return delivery_status(message_ids, zone=zone) if message_ids else {}


def build_views(messages: list[Message], viewer: Viewer, *, terms: list[str] | None = None,
                user: User | None = None) -> list[MessageView]:
    """Turns messages (already filtered by visible_messages) into views with a handful of queries in all.
    `user` (the viewer's own row) enables the Edit/Delete actions; without it none are offered."""
    if not messages:
        return []
    ids = [m.id for m in messages]
    authors = {u.id: u for u in User.select().where(User.id.in_({m.author_id for m in messages}))}
    pictures = {i: url_for("avatars.picture", user_id=i, v=v) for i, v in avatar_versions(authors).items()}
    files: dict[int, list[Attachment]] = {i: [] for i in ids}
    for a in Attachment.select().where(Attachment.message.in_(ids)).order_by(Attachment.id):
        files[a.message_id].append(a)
    versions: dict[int, list[VersionView]] = {}
    edited = [m.id for m in messages if m.edited_at is not None and not m.is_deleted]
    for v in visible_versions(viewer, edited) if edited else []:
        versions.setdefault(v.message_id, []).append(
            VersionView(written_at=v.written_at, html=Markup(sanitize_html(v.html))))
    delivery = _delivery(ids) if viewer.is_team else {}
    mine_edited = [m for m in messages if m.author_id == viewer.user_id and m.edited_at and not m.is_deleted]
    emailed, corrected = _emailed_before_edit(mine_edited)
    views = []
    for m in messages:
        author = authors[m.author_id]
        mine = m.author_id == viewer.user_id
        views.append(MessageView(
            id=m.id, author_name=author.name, author_email=author.email, author_is_team=author.is_team,
            created_at=m.created_at, source=m.source, internal=m.is_internal,
            html=Markup(sanitize_html(m.html)), attachments=files[m.id], mine=mine,
            trimmed_text=m.trimmed_text if viewer.is_team else None,
            has_email=viewer.is_team and m.inbound_email_id is not None and not m.is_deleted,
            delivery=delivery.get(m.id) if viewer.is_team else None,
            highlight=highlight(m.text, terms) if terms else None,
            edited_at=m.edited_at, deleted=m.is_deleted, versions=versions.get(m.id, []),
            can_edit=user is not None and user.id == viewer.user_id and may_edit(user, m),
            can_delete=user is not None and user.id == viewer.user_id and may_delete(user, m),
            text=m.text if mine else "",
            emailed_before_edit=m.id in emailed, correction_sent=m.id in corrected,
            avatar_url=pictures.get(m.author_id, ""),
        ))
    return views


def _emailed_before_edit(messages: list[Message]) -> tuple[set[int], set[int]]:
    """Of these edited messages: those whose notification email went out before the last edit, and those
    of them whose correction email has been queued since."""
    if not messages:
        return set(), set()
    edited_at: dict[int, dt.datetime] = {m.id: m.edited_at for m in messages if m.edited_at is not None}
    emailed: set[int] = set()
    corrected: set[int] = set()
    rows = (OutboxEmail.select(OutboxEmail.message, OutboxEmail.kind, OutboxEmail.sent_at, OutboxEmail.created_at)
            .where(OutboxEmail.message.in_(list(edited_at))
                   & (((OutboxEmail.kind == NOTIFICATION) & (OutboxEmail.status == SENT))
                      | (OutboxEmail.kind == CORRECTION))))
    for row in rows:
        if row.message_id is None:
            continue
        when = edited_at[row.message_id]
        if row.kind == NOTIFICATION and row.sent_at is not None and row.sent_at < when:
            emailed.add(row.message_id)
        elif row.kind == CORRECTION and row.created_at >= when:
            corrected.add(row.message_id)
    return emailed, corrected


def render_views(views: list[MessageView], mode: str) -> str:
    """HTML of messages as the page draws them (used by "load older", the live stream and posting by JS)."""
    render_message = get_template_attribute("_macros.html", "render_message")
    return "".join(str(render_message(v, mode)) for v in views)


def highlight(text: str, terms: list[str] | None) -> Markup:
    """The text, escaped, with each word that starts with a search term wrapped in <mark>."""
    text = text or ""
    if not terms:
        return Markup(html.escape(text))
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE)
    out, pos = [], 0
    for match in pattern.finditer(text):
        out.append(html.escape(text[pos:match.start()]))
        out.append("<mark>" + html.escape(match.group(0)) + "</mark>")
        pos = match.end()
    out.append(html.escape(text[pos:]))
    return Markup("".join(out))


_TAG_RE = re.compile(r"(<[^>]*>)")


def highlight_html(safe_html: str, terms: list[str] | None) -> Markup:
    """Sanitized HTML with each word that starts with a search term wrapped in <mark>: only text between
    tags is touched (never a tag or an attribute), and never inside an entity such as &amp;."""
    if not terms:
        return Markup(safe_html)
    pattern = re.compile(r"(?<![\w&#])(?:" + "|".join(re.escape(html.escape(t)) for t in terms) + r")\w*(?!;)",
                         re.IGNORECASE)
    parts = _TAG_RE.split(safe_html)
    for i in range(0, len(parts), 2):  # even indexes are text, odd ones are tags
        parts[i] = pattern.sub(lambda m: "<mark>" + m.group(0) + "</mark>", parts[i])
    return Markup("".join(parts))


@dataclass
class SearchGroup:
    """The results of one workspace."""

    workspace: Workspace
    url: str
    messages: list[MessageView]

    @property
    def count_label(self) -> str:
        return count_label(len(self.messages), "message")


def count_label(n: int, noun: str) -> str:
    """English counts: "1 message", "3 messages", "no messages"."""
    if n == 0:
        return f"no {noun}s"
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


SEARCH_LIMIT = 50


def search_groups(viewer: Viewer, query: str, thread_url: Any, *, thread: Thread | None = None,
                  limit: int = SEARCH_LIMIT) -> tuple[list[SearchGroup], int, bool]:
    """The newest `limit` matches across every workspace viewer may open (or one thread), grouped by
    workspace (most recent match first), each message drawn with its matches marked; also the number
    of matches shown and whether more exist."""
    from storage.search import search_everywhere, search_messages

    terms = search_terms(query)
    if not terms:
        return [], 0, False
    found_q = search_messages(viewer, thread, query) if thread is not None else search_everywhere(viewer, query)
    found = list(found_q.where(Message.deleted_at.is_null(True)).limit(limit + 1))
    more = len(found) > limit
    found = found[:limit]
    threads = {t.id: t for t in Thread.select(Thread, Workspace).join(Workspace)
               .where(Thread.id.in_({m.thread_id for m in found}))} if found else {}
    groups: dict[int, SearchGroup] = {}
    for view, m in zip(build_views(found, viewer), found, strict=True):
        t = threads[m.thread_id]
        group = groups.get(t.id)
        if group is None:
            group = groups[t.id] = SearchGroup(workspace=t.workspace, url=thread_url(t.workspace), messages=[])
        view.highlight = highlight_html(str(view.html), terms)
        view.thread_url = group.url
        view.workspace_name = t.workspace.name
        group.messages.append(view)
    for group in groups.values():
        group.messages.sort(key=lambda v: v.id)
    return list(groups.values()), len(found), more


def mark_read(user: User, thread: Thread, message_id: int) -> None:
    """Remembers the newest message this person has seen in the thread (for unread counts)."""
    if not message_id:
        return
    updated = (ReadMarker.update(last_read_message_id=message_id)
               .where((ReadMarker.user == user.id) & (ReadMarker.thread == thread.id)
                      & (ReadMarker.last_read_message_id < message_id)).execute())
    if not updated and not ReadMarker.select().where((ReadMarker.user == user.id)
                                                     & (ReadMarker.thread == thread.id)).exists():
        (ReadMarker.insert(user=user.id, thread=thread.id, last_read_message_id=message_id)
         .on_conflict_ignore().execute())


@dataclass
class WorkspaceRow:
    workspace: Workspace
    thread: Thread
    unread: int
    last_activity_at: dt.datetime  # of what this viewer may see: a client's list never dates an internal note
    preview: str = ""  # the start of the newest message this viewer may see
    preview_author: str = ""
    preview_internal: bool = False  # team: the newest message is an internal note (a client's list has none)
    awaiting_reply: bool = False  # team: the client spoke last

    @property
    def unread_label(self) -> str:
        return f"{UNREAD_CAP}+" if self.unread > UNREAD_CAP else str(self.unread)

    @property
    def iso_time(self) -> str:
        return self.last_activity_at.replace(microsecond=0).isoformat() + "Z"


PREVIEW_LENGTH = 90


def preview_text(markdown: str) -> str:
    """One line of plain text from a message's Markdown, for lists."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown or "")
    text = re.sub(r"[*_`>#~]+", "", text)
    text = re.sub(r"^\s*(?:[-+]|\d+\.)\s+", "", text, flags=re.M)
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_LENGTH else text[:PREVIEW_LENGTH - 1].rstrip() + "…"


def workspace_rows(viewer: Viewer, threads: list[Thread]) -> list[WorkspaceRow]:
    """Workspaces with their newest visible message (time, preview, who spoke last) and unread count
    (visible messages after the person's read marker), most recently active first."""
    markers = {r.thread_id: r.last_read_message_id
               for r in ReadMarker.select().where((ReadMarker.user == viewer.user_id)
                                                  & ReadMarker.thread.in_([t.id for t in threads]))} if threads else {}
    rows = []
    for t in threads:
        unread_q = (visible_messages(viewer, t)
                    .where((Message.id > markers.get(t.id, 0)) & (Message.author != viewer.user_id))
                    .select(Message.id).limit(UNREAD_CAP + 1))
        # The newest message through the rule, like storage.visibility.last_activity (one index lookup).
        newest = (visible_messages(viewer, t)
                  .select(Message.text, Message.created_at, Message.deleted_at, Message.visibility, User.name,
                          User.role)
                  .join(User, on=(Message.author == User.id)).order_by(Message.id.desc()).limit(1).first())
        row = WorkspaceRow(workspace=t.workspace, thread=t, unread=unread_q.count(),
                           last_activity_at=newest.created_at if newest else t.created_at)
        if newest is not None:
            row.preview = "Message deleted" if newest.deleted_at else preview_text(newest.text)
            row.preview_author = newest.author.name
            row.preview_internal = newest.visibility == VISIBILITY_INTERNAL
            row.awaiting_reply = viewer.is_team and newest.author.role == "client"
        rows.append(row)
    rows.sort(key=lambda r: r.last_activity_at, reverse=True)
    return rows


def last_read_id(user: User, thread: Thread) -> int:
    """The newest message this person had seen in the thread (0 when none), read before marking new ones."""
    marker = (ReadMarker.select(ReadMarker.last_read_message_id)
              .where((ReadMarker.user == user.id) & (ReadMarker.thread == thread.id)).scalar())
    return int(marker or 0)
