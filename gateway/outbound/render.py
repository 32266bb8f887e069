"""Turns outbox rows into mail: notifications from templates/email/new_message.{txt,html}, sign-in links
from templates/email/login_link.{txt,html}.

Rendering happens at send time and asks the visibility rule again (defense in depth): a row whose
message the recipient can no longer see is left out (visible_rows), and render_notification refuses
to draw one. Subjects and threading headers come from the recipient's email episode (storage/episodes.py);
earlier messages shown for context come through the same rule. Every header value that comes from people
(names, workspace names) goes through _one_line(), so a CR, LF or other control character can never start a
header of its own.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from html import escape
from urllib.parse import quote

import jinja2

import templates
from config import Settings
from gateway.addresses import format_reply_address
from gateway.markers import HTML_MARKER_ID_PREFIX, LOOP_HEADER, REPLY_ABOVE_LINE
from gateway.outbound.unsubscribe import unsubscribe_url
from storage import serialize
from storage.db import tuples
from storage.episodes import EmailEpisode, current_episode, episode_for, episode_mail_ids
from storage.mail_log import OutboxEmail
from storage.models import VISIBILITY_INTERNAL, Attachment, Message, Thread, User, Workspace
from storage.rendering import sanitize_html
from storage.time_zones import zone_of
from storage.tokens import EMAIL, create_login_token, reply_token_for
from storage.units import human_size
from storage.visibility import Viewer, visible_messages

TEMPLATES_DIR = templates.FOLDER / "email"
PRODUCT = "WorkRate"
SUBJECT_SEPARATOR = " \u2014 "  # em dash: "Acme Co — messages"
INTERNAL_SUBJECT_PREFIX = "[Internal] "
MAX_NAME_LENGTH = 120



class MailPolicy(EmailPolicy):
    """The SMTP policy (CRLF), except that a few ASCII headers made of one long token stay on one line.

    Folding `List-Unsubscribe: <https://…/unsubscribe/…>` puts the URL on a continuation line, and some
    receivers then read the value with a leading space; RFC 5322 allows lines up to 998 octets.
    """

    UNFOLDED = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id", "in-reply-to", "reply-to"})

    def fold_binary(self, name: str, value: str) -> bytes:
        text = str(value)
        if (name.lower() in self.UNFOLDED and text.isascii() and len(name) + len(text) + 2 <= 998
                and not any(c in text for c in "\r\n")):
            return f"{name}: {text}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


MAIL_POLICY = MailPolicy(linesep="\r\n")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


class NothingVisible(ValueError):
    """None of the rows may be shown to their recipient; the batch is skipped, not sent."""


@dataclass(frozen=True)
class RenderedLoginLink:
    subject: str
    text: str
    html: str


def _one_line(value: str, limit: int = MAX_NAME_LENGTH) -> str:
    """A header-safe single line: control and line/paragraph-separator characters become spaces, and
    "=?" is broken up, because Python's header parser decodes RFC 2047 encoded-words in the values we set
    (an encoded "=0D=0A" would come out as a real CR LF on the wire; CVE-2024-6923, unfixed in 3.11.7)."""
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in value or "")
    cleaned = " ".join(cleaned.split()).replace("=?", "= ?")
    return cleaned[:limit].strip()


class UnsafeHeaders(ValueError):
    """The serialized mail has a header line we did not set: never send it."""


def wire_bytes(mail: EmailMessage) -> bytes:
    """The mail as it goes to the relay (CRLF), after checking that every header line on the wire is one
    of the headers we set, in the same number: a last guard against header injection."""
    raw = mail.as_bytes(policy=MAIL_POLICY)
    head = raw.split(b"\r\n\r\n", 1)[0]
    starts = [line.split(b":", 1)[0].decode("ascii", "replace").lower()
              for line in head.split(b"\r\n") if line and line[:1] not in (b" ", b"\t")]
    expected = [k.lower() for k in mail.keys()]
    if starts != expected or b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise UnsafeHeaders(f"serialized headers {starts} differ from the headers set {expected}")
    return raw


def mail_domain(settings: Settings) -> str:
    return settings.effective_mail_from.rpartition("@")[2].lower() or settings.reply_domain


def _digest(settings: Settings, text: str) -> str:
    return hmac.new(settings.secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()[:12]


def mail_message_id(row_ids: Sequence[int], settings: Settings) -> str:
    """The Message-ID of the email made of these outbox rows.

    Derived from the row ids (and the secret, so two installations never collide): a resend of the same
    rows after a crash carries the same Message-ID; a batch that grew meanwhile gets a new one, so a
    mail client never hides the new messages as a duplicate.
    """
    ids = sorted(int(i) for i in row_ids)
    return f"<wr.{ids[0]}.{_digest(settings, ','.join(map(str, ids)))}@{mail_domain(settings)}>"


def thread_root_id(settings: Settings, recipient_id: int, thread_id: int, internal: bool, episode: int = 1) -> str:
    """A stable, never-sent Message-ID every notification of this episode of the thread to this person refers
    to. The first episode's is the root every notification had before episodes, so those conversations go on."""
    key = f"thread:{thread_id}:{recipient_id}:{'internal' if internal else 'client'}"
    if episode == 1:
        return f"<wr.thread.{thread_id}.{_digest(settings, key)}@{mail_domain(settings)}>"
    key += f":episode:{episode}"
    return f"<wr.thread.{thread_id}.e{episode}.{_digest(settings, key)}@{mail_domain(settings)}>"


def _episode_headers(mail: EmailMessage, settings: Settings, episode: EmailEpisode | None, *, recipient_id: int,
                     thread_id: int, internal: bool, before_id: int) -> None:
    """In-Reply-To the latest email of the episode (its root for the first), References its root and its
    earlier emails: the chain Gmail, Outlook and Apple Mail use to keep one conversation. Thread-Topic is
    the stable subject, which Outlook groups by."""
    if episode is None:
        root, previous = thread_root_id(settings, recipient_id, thread_id, internal), []
    else:
        root, previous = episode.root_message_id, episode_mail_ids(episode, before_id)
    mail["In-Reply-To"] = previous[-1] if previous else root
    mail["References"] = " ".join([root, *previous])
    mail["Thread-Topic"] = _one_line(episode.subject, 1000) if episode is not None else str(mail["Subject"])


SUBJECT_EXCERPT_LENGTH = 60


def subject_for(workspace: Workspace, internal: bool, excerpt: str = "") -> str:
    """ "Acme Co — The homepage draft is ready…": the workspace and the start of the message that opened the
    email episode. It stays the same for the whole episode: Gmail starts a new conversation when the subject
    changes, whatever In-Reply-To and References say (storage/episodes.py)."""
    subject = f"{_one_line(workspace.name, 150) or 'Workspace'}{SUBJECT_SEPARATOR}{excerpt or 'messages'}"
    return INTERNAL_SUBJECT_PREFIX + subject if internal else subject


def excerpt(markdown: str, limit: int = SUBJECT_EXCERPT_LENGTH) -> str:
    """The start of a message as one line of plain text, cut at a word."""
    text = plain_text(markdown)
    text = re.sub(r"(?m)^\s*(?:[-*+>]|\d+\.)\s+", "", text)
    text = " ".join(re.sub(r"(?<!\w)[*_`~]+|[*_`~]+(?!\w)", "", text).split())
    text = _one_line(text, 1000)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,.;:-—") + "…"


def thread_url(settings: Settings, recipient: User, workspace: Workspace) -> str:
    base = settings.effective_base_url
    slug = quote(workspace.slug, safe="")
    return f"{base}/w/{slug}" if recipient.is_team else f"{base}/portal/w/{slug}"


def attachment_url(settings: Settings, attachment: Attachment) -> str:
    return serialize.attachment_url(settings.effective_base_url, attachment)


def brand_context(settings: Settings) -> dict[str, str]:
    """The agency's name, accent colour and logo address for the email templates (defaults before setup)."""
    from storage.agency import DEFAULT_ACCENT, Agency

    row = Agency.get_or_none(Agency.id == 1)
    if row is None or row.setup_done_at is None:
        return {"brand_name": PRODUCT, "accent": row.accent if row is not None else DEFAULT_ACCENT, "logo_url": ""}
    return {"brand_name": _one_line(row.name, 200), "accent": row.accent,
            "logo_url": f"{settings.effective_base_url}/branding/logo" if row.logo_key else ""}


def signed_in_url(settings: Settings, secret: str | None, url: str) -> str:
    """url on this site, reached through the email's sign-in link when there is one (a client's email):
    one click signs the recipient in (after one confirmation on a new device) and lands on url."""
    base = settings.effective_base_url
    if secret is None or not url.startswith(base + "/"):
        return url
    return f"{base}/login/{secret}?next={quote(url[len(base):], safe='')}"


def email_link_secret(settings: Settings, recipient: User, workspace: Workspace) -> str | None:
    """A client's notification carries a sign-in link bound to them and to this email, valid for days
    (EMAIL_LINK_DAYS) and dead once their access is revoked; the team signs in with a password."""
    if recipient.is_team:
        return None
    return create_login_token(recipient, settings.email_link_days * 24 * 60, purpose=EMAIL, reusable=True,
                              workspace_id=workspace.id)


def _when(created_at: dt.datetime, recipient: User | None = None) -> str:
    """The time in the recipient's own time zone (stored from their browser), UTC when unknown."""
    zone = zone_of(recipient.time_zone if recipient is not None else None)
    local = created_at.replace(tzinfo=dt.UTC).astimezone(zone)
    return local.strftime("%a %d %b %Y, %H:%M ") + (local.tzname() or "UTC")


def _digest_line(count: int, since: dt.datetime, recipient: User) -> str:
    """"Your daily digest: 5 messages since Tuesday 08:00" (the recipient's own time)."""
    local = since.replace(tzinfo=dt.UTC).astimezone(zone_of(recipient.time_zone))
    return f"Your daily digest: {count} message{'' if count == 1 else 's'} since {local:%A %H:%M}"


_MD_LINK = re.compile(r"(?<!!)\[([^\]\n]{1,500})\]\(\s*<?([^\s)>]{1,2000})>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_IMAGE = re.compile(r"!\[([^\]\n]{0,500})\]\(\s*<?([^\s)>]{1,2000})>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_AUTOLINK = re.compile(r"<((?:https?|mailto):[^\s>]{1,2000})>")
_MD_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")


def plain_text(markdown: str) -> str:
    """Markdown as a person reads it in a plain-text email: links as "text (URL)" (or just the URL),
    no emphasis markers. Lists, quotes and code stay as written (they read well as they are)."""
    def link(match: re.Match[str]) -> str:
        label, url = match.group(1).strip(), match.group(2)
        bare = url.removeprefix("mailto:")
        return url if label in (url, bare, "") else f"{label} ({url})"

    text = _MD_IMAGE.sub(lambda m: f"{m.group(1) or 'image'} ({m.group(2)})", markdown or "")
    text = _MD_LINK.sub(link, text)
    text = _MD_AUTOLINK.sub(r"\1", text)
    return _MD_STRONG.sub(r"\2", text)


def _address(name: str, addr: str) -> Address | str:
    try:
        return Address(display_name=_one_line(name), addr_spec=addr)
    except (ValueError, IndexError):
        return addr


def visible_rows(rows: Sequence[OutboxEmail]) -> tuple[list[OutboxEmail], list[OutboxEmail]]:
    """(rows the recipient may still be told about, rows they may not), through the one rule: two queries per
    recipient and thread (a batch is one of each), not three per row.

    A message that became internal after a client-visible notification row was written is not sent in
    that email either: the reply address it carries would post client-visible answers.
    """
    groups: dict[tuple[int, int], list[OutboxEmail]] = {}
    for row in rows:
        if row.recipient_id is not None and row.thread_id is not None:  # notification rows have both
            groups.setdefault((row.recipient_id, row.thread_id), []).append(row)
    ok_ids: set[int] = set()
    for (recipient_id, thread_id), group in groups.items():
        recipient = User.get_or_none(User.id == recipient_id)
        if recipient is None:
            continue
        # A deleted message is visible as a mark, but nothing is emailed about it.
        seen: dict[int | None, str] = dict(tuples(visible_messages(Viewer.of(recipient), thread_id)
                                                  .where(Message.id.in_([r.message_id for r in group])
                                                         & Message.deleted_at.is_null(True))
                                                  .select(Message.id, Message.visibility)))
        for row in group:
            visibility = seen.get(row.message_id)
            if (visibility is not None and not (visibility == VISIBILITY_INTERNAL and not row.internal)
                    and not (row.internal and not recipient.is_team)):
                ok_ids.add(row.id)
    visible = [row for row in rows if row.id in ok_ids]
    hidden = [row for row in rows if row.id not in ok_ids]
    return visible, hidden


def _base_headers(mail: EmailMessage, settings: Settings, *, display_name: str, to_name: str, to_address: str,
                  subject: str, message_id: str, now: dt.datetime) -> None:
    mail["From"] = _address(f"{display_name} via {PRODUCT}" if display_name else PRODUCT,
                            settings.effective_mail_from)
    mail["To"] = _address(to_name, to_address)
    mail["Subject"] = subject
    mail["Date"] = format_datetime(now.replace(tzinfo=dt.UTC))
    mail["Message-ID"] = message_id
    # Out-of-office responders and mail servers: this is automatic mail, do not answer it (RFC 3834).
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    mail[LOOP_HEADER] = settings.reply_domain


def render_notification(rows: Sequence[OutboxEmail], settings: Settings, now: dt.datetime | None = None, *,
                        digest_since: dt.datetime | None = None) -> EmailMessage:
    """One notification email for rows of one (recipient, thread, internal), oldest message first.

    digest_since (naive UTC), for a daily digest: a line at the top of the new messages says it is one
    ("Your daily digest: 5 messages since Tuesday 08:00"); the subject stays the episode's.

    Raises NothingVisible when the recipient may see none of the messages, and ValueError when the rows
    do not belong together (a programming error).
    """
    rows = sorted(rows, key=lambda r: r.id)
    if not rows:
        raise NothingVisible("no rows to render")
    keys = {(r.recipient_id, r.thread_id, bool(r.internal)) for r in rows}
    if len(keys) != 1:
        raise ValueError(f"rows of different recipients, threads or audiences in one email: {sorted(keys)}")
    rows, _hidden = visible_rows(rows)
    if not rows:
        raise NothingVisible("the recipient can no longer see any of these messages")
    lead = rows[0]
    internal = bool(lead.internal)
    recipient = User.get_by_id(lead.recipient_id)
    thread = Thread.get_by_id(lead.thread_id)
    workspace = Workspace.get_by_id(thread.workspace_id)
    messages = list(visible_messages(Viewer.of(recipient), thread)
                    .where(Message.id.in_([r.message_id for r in rows]) & Message.deleted_at.is_null(True))
                    .order_by(Message.id))
    if not messages:
        raise NothingVisible("the messages were deleted")
    authors = {u.id: u for u in User.select().where(User.id.in_({m.author_id for m in messages}))}
    attachments: dict[int, list[Attachment]] = {}
    for a in Attachment.select().where(Attachment.message.in_([m.id for m in messages])).order_by(Attachment.id):
        attachments.setdefault(a.message_id, []).append(a)

    row_ids = [r.id for r in rows]
    message_id = mail_message_id(row_ids, settings)
    token = reply_token_for(recipient, thread, internal=internal, secret_key=settings.secret_key).token
    unsubscribe = unsubscribe_url(settings, recipient.id, thread.id)
    secret = email_link_secret(settings, recipient, workspace)
    workspace_name = _one_line(workspace.name, 200) or "Workspace"
    now = now or _utcnow()
    opening = messages[0]
    opening_text = excerpt(opening.text)
    if not opening_text:
        files = attachments.get(opening.id, [])
        opening_text = f"{_one_line(authors[opening.author_id].name)} sent {files[0].name}" if files else ""
    episode = episode_for(recipient.id, thread.id, internal, lead.id, now=now,
                          quiet_days=settings.email_episode_days,
                          root_for=lambda n: thread_root_id(settings, recipient.id, thread.id, internal, n),
                          subject=subject_for(workspace, internal, opening_text), message_id=opening.id)
    subject = _one_line(episode.subject, 1000)
    last_author = authors[messages[-1].author_id]
    names = sorted({_one_line(authors[m.author_id].name) for m in messages})
    earlier = context_messages(recipient, thread, internal=internal, before_id=opening.id,
                               limit=settings.email_context_messages)
    missing = {m.author_id for m in earlier} - authors.keys()
    authors.update({u.id: u for u in User.select().where(User.id.in_(missing))} if missing else {})
    for a in Attachment.select().where(Attachment.message.in_([m.id for m in earlier])).order_by(Attachment.id):
        attachments.setdefault(a.message_id, []).append(a)

    def drawn(m: Message, *, short: bool = False) -> dict[str, object]:
        return {
            "author": _one_line(authors[m.author_id].name),
            "initials": initials(authors[m.author_id].name),
            "when": _when(m.created_at, recipient),
            "internal": m.is_internal,
            **_bodies(m, short=short),
            "attachments": [{"name": a.name, "size": human_size(a.size),
                             "url": signed_in_url(settings, secret, attachment_url(settings, a))}
                            for a in attachments.get(m.id, [])],
        }

    context = {
        "subject": subject,
        "workspace": workspace_name,
        "internal": internal,
        "recipient": _one_line(recipient.name),
        "intro": (f"{len(messages)} new messages in {workspace_name} from {', '.join(names)}:" if len(messages) > 1
                  else f"New {'internal note' if internal else 'message'} in {workspace_name}:"),
        "messages": [drawn(m) for m in messages],
        "digest_line": _digest_line(len(messages), digest_since, recipient) if digest_since else "",
        "earlier": [drawn(m, short=True) for m in earlier],
        "thread_url": signed_in_url(settings, secret,
                                    thread_url(settings, recipient, workspace) + f"#m-{messages[-1].id}"),
        "unsubscribe_url": unsubscribe,
        "reply_above_line": REPLY_ABOVE_LINE,
        **brand_context(settings),
        "marker_id": f"{HTML_MARKER_ID_PREFIX}{lead.id:x}",
    }
    text = _env.get_template("new_message.txt").render(context)
    html = _env.get_template("new_message.html").render(context)

    mail = EmailMessage(policy=MAIL_POLICY)
    _base_headers(mail, settings, display_name=_one_line(last_author.name), to_name=recipient.name,
                  to_address=lead.to_address, subject=subject, message_id=message_id, now=now)
    mail["Reply-To"] = format_reply_address(token, settings.reply_domain)
    _episode_headers(mail, settings, episode, recipient_id=recipient.id, thread_id=thread.id, internal=internal,
                     before_id=lead.id)
    mail["List-Unsubscribe"] = f"<{unsubscribe}>"
    mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    return mail


def initials(name: str) -> str:
    """Up to two capital letters for the avatar circle: the first letters of the first and last words."""
    words = [w for w in _one_line(name).split() if w[:1].isalnum()]
    letters = (words[0][0] + words[-1][0]) if len(words) > 1 else (words[0][:1] if words else "?")
    return letters.upper()


CONTEXT_TEXT_LENGTH = 400  # characters of an earlier message shown for context; the rest is a click away


def context_messages(recipient: User, thread: Thread, *, internal: bool, before_id: int,
                     limit: int) -> list[Message]:
    """The last `limit` messages before `before_id` that the recipient may see, oldest first, through the one
    rule. An email of the client audience never holds an internal note, even a team member's: its reply
    address posts client-visible, so a quoted note could be posted to the client (asked of the query too,
    so the limit counts only client-visible ones)."""
    if limit <= 0:
        return []
    query = (visible_messages(Viewer.of(recipient), thread)
             .where((Message.id < before_id) & Message.deleted_at.is_null(True)))
    if not (internal and recipient.is_team):
        query = query.where(Message.visibility != VISIBILITY_INTERNAL)
    return list(reversed(list(query.order_by(Message.id.desc()).limit(limit))))


def _bodies(m: Message, *, short: bool) -> dict[str, object]:
    """The text and HTML of a message; for context (short) a long one is cut at a word and drawn as text."""
    text = plain_text(m.text)
    if not short or len(text) <= CONTEXT_TEXT_LENGTH:
        return {"text": text, "html": sanitize_html(m.html), "cut": False}
    cut = text[:CONTEXT_TEXT_LENGTH].rsplit(" ", 1)[0].rstrip(" ,.;:-\u2014") + "\u2026"
    paragraphs = [p for p in cut.split("\n\n") if p.strip()]
    html = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)  # drawn with | safe
    return {"text": cut, "html": html, "cut": True}


def render_correction(row: OutboxEmail, settings: Settings, now: dt.datetime | None = None) -> EmailMessage:
    """A short email saying a message emailed earlier was edited, with its text as it reads now; it joins
    the recipient's thread of notification emails. Raises NothingVisible when the recipient may no longer
    see the message (or it was deleted)."""
    visible, _hidden = visible_rows([row])
    if not visible:
        raise NothingVisible("the recipient can no longer see this message")
    recipient = User.get_by_id(row.recipient_id)
    thread = Thread.get_by_id(row.thread_id)
    workspace = Workspace.get_by_id(thread.workspace_id)
    message = Message.get_by_id(row.message_id)
    author = User.get_by_id(message.author_id)
    internal = bool(row.internal)
    workspace_name = _one_line(workspace.name, 200) or "Workspace"
    # It refers to the current episode (Apple Mail and Outlook show it in that conversation); its subject
    # says "Correction:" up front, which Gmail shows as a conversation of its own: a correction should stand out.
    episode = current_episode(recipient.id, thread.id, internal)
    subject = "Correction: " + (_one_line(episode.subject, 1000) if episode is not None
                                else subject_for(workspace, internal, excerpt(message.text)))
    context = {
        "author": _one_line(author.name), "workspace": workspace_name, "internal": internal,
        "when": _when(message.created_at, recipient), "text": plain_text(message.text),
        "html": sanitize_html(message.html), "thread_url": thread_url(settings, recipient, workspace),
        "reply_above_line": REPLY_ABOVE_LINE, **brand_context(settings),
    }
    mail = EmailMessage(policy=MAIL_POLICY)
    _base_headers(mail, settings, display_name=_one_line(author.name), to_name=recipient.name,
                  to_address=row.to_address, subject=subject, message_id=mail_message_id([row.id], settings),
                  now=now or _utcnow())
    mail["Reply-To"] = format_reply_address(reply_token_for(recipient, thread, internal=internal,
                                                            secret_key=settings.secret_key).token,
                                            settings.reply_domain)
    _episode_headers(mail, settings, episode, recipient_id=recipient.id, thread_id=thread.id, internal=internal,
                     before_id=row.id)
    mail.set_content(_env.get_template("correction.txt").render(context))
    mail.add_alternative(_env.get_template("correction.html").render(context), subtype="html")
    return mail


def render_login_link(settings: Settings, user: User, url: str, *, invitation: bool = False,
                      workspace_name: str = "", valid_for: str | None = None,
                      agency_name: str = "") -> RenderedLoginLink:
    """Subject and bodies of a sign-in link (or an invitation) email, kept on its outbox row.

    A team member's invitation (invitation without a workspace, user on the team) asks them to choose a
    password. valid_for says how long the link works ("for 7 days"); by default once, for minutes.
    """
    workspace = _one_line(workspace_name, 200)
    agency = _one_line(agency_name, 200)
    team_invite = invitation and user.is_team
    subject = (f"{agency or 'Your agency'} invites you to {PRODUCT}" if team_invite
               else f"You are invited to {workspace} on {PRODUCT}" if invitation and workspace
               else f"You are invited to {PRODUCT}" if invitation else f"Your sign-in link for {PRODUCT}")
    context = {"subject": subject, "name": _one_line(user.name), "url": url, "invitation": invitation,
               "workspace": workspace, "minutes": settings.login_link_minutes, "team_invite": team_invite,
               "agency": agency, **brand_context(settings),
               "valid_for": valid_for or f"once and for {settings.login_link_minutes} minutes"}
    return RenderedLoginLink(subject=subject, text=_env.get_template("login_link.txt").render(context),
                             html=_env.get_template("login_link.html").render(context))


def stored_mail(row: OutboxEmail, settings: Settings, now: dt.datetime | None = None) -> EmailMessage:
    """The email of a row whose subject and bodies were rendered when it was queued (sign-in links)."""
    recipient = User.get_or_none(User.id == row.recipient_id)
    mail = EmailMessage(policy=MAIL_POLICY)
    _base_headers(mail, settings, display_name="", to_name=recipient.name if recipient else "",
                  to_address=row.to_address, subject=_one_line(row.subject, 300),
                  message_id=mail_message_id([row.id], settings), now=now or _utcnow())
    mail.set_content(row.body_text)
    if row.body_html:
        mail.add_alternative(row.body_html, subtype="html")
    return mail


def header_block(mail: EmailMessage) -> str:
    """The headers of a mail, one per line, as kept on the outbox row."""
    return "\n".join(f"{k}: {v}" for k, v in mail.items())


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


__all__ = ["render_notification", "render_correction", "render_login_link", "stored_mail", "visible_rows",
           "mail_message_id", "thread_root_id", "plain_text",
           "subject_for", "excerpt", "NothingVisible", "header_block", "MAIL_POLICY", "context_messages",
           "initials"]
