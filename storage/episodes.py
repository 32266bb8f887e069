"""Email episodes: the email conversations one person has about one thread.

A workspace thread lasts for years; one email conversation for all of it would grow for ever (and Gmail
cuts long ones at its own whim). So notifications are grouped into episodes: after EMAIL_EPISODE_DAYS
without an email about the thread (and without a post from the recipient), the next notification opens a
new episode, with its own root Message-ID and its own subject (the workspace and an excerpt of the message
that opened it). Within an episode the subject never changes and References chain to its root and its
earlier emails, so Gmail (which wants both), Outlook and Apple Mail keep one conversation.

Episodes are per (recipient, thread, audience), like reply addresses, so the reply address of any episode
still posts to the right thread with the right audience. An episode holds the outbox rows from the one
that opened it up to the next episode's first row: rows are numbered in order, so no link per row is kept.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from peewee import AutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, IntegrityError, fn

from storage.db import database
from storage.mail_log import NOTIFICATION, SENT, OutboxEmail
from storage.models import BaseModel, Message, Thread, User, utcnow

REFERENCES_KEPT = 10  # earlier emails of the episode named in References (with its root)


class EmailEpisode(BaseModel):
    id = AutoField()
    recipient = ForeignKeyField(User, on_delete="CASCADE")
    recipient_id: int
    thread = ForeignKeyField(Thread, on_delete="CASCADE")
    thread_id: int
    internal = BooleanField(default=False)
    number = IntegerField()  # 1, 2, … per (recipient, thread, internal)
    root_message_id = CharField(max_length=300, unique=True)  # never sent: every email of the episode refers to it
    subject = CharField(max_length=1000)
    opened_by = IntegerField()  # the outbox row whose email opened the episode
    message_id = IntegerField(null=True)  # the message whose excerpt is the subject
    started_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "email_episode"
        indexes = ((("recipient", "thread", "internal", "number"), True),)


def _episodes(recipient_id: int, thread_id: int, internal: bool) -> list[EmailEpisode]:
    return list(EmailEpisode.select()
                .where((EmailEpisode.recipient == recipient_id) & (EmailEpisode.thread == thread_id)
                       & (EmailEpisode.internal == internal))
                .order_by(EmailEpisode.number))


def _sent_rows(recipient_id: int, thread_id: int, internal: bool, from_id: int, before_id: int) -> object:
    return (OutboxEmail.select()
            .where((OutboxEmail.recipient == recipient_id) & (OutboxEmail.thread == thread_id)
                   & (OutboxEmail.internal == internal) & (OutboxEmail.kind == NOTIFICATION)
                   & (OutboxEmail.status == SENT) & OutboxEmail.batch.is_null()
                   & OutboxEmail.mail_message_id.is_null(False)
                   & (OutboxEmail.id >= from_id) & (OutboxEmail.id < before_id)))


def last_activity(episode: EmailEpisode, before_id: int) -> dt.datetime:
    """When the episode last moved: the newest message it has emailed, or the recipient's latest post in the
    thread (a client who just answered an old email expects the answer in that same conversation). Message
    times, not sending times: they are what people saw, and a held email does not make a thread active."""
    emailed = (Message.select(fn.MAX(Message.created_at)).join(OutboxEmail, on=(OutboxEmail.message == Message.id))
               .where((OutboxEmail.recipient == episode.recipient_id) & (OutboxEmail.thread == episode.thread_id)
                      & (OutboxEmail.internal == episode.internal) & (OutboxEmail.kind == NOTIFICATION)
                      & (OutboxEmail.status == SENT) & (OutboxEmail.id >= episode.opened_by)
                      & (OutboxEmail.id < before_id)).scalar())
    posted = (Message.select(fn.MAX(Message.created_at))
              .where((Message.thread == episode.thread_id) & (Message.author == episode.recipient_id)).scalar())
    return max([episode.started_at, *(t for t in (emailed, posted) if t is not None)])


def _opening_message_gone(episode: EmailEpisode) -> bool:
    """The message whose excerpt is the subject was deleted: its words must not keep coming back."""
    if episode.message_id is None:
        return False
    message = Message.get_or_none(Message.id == episode.message_id)
    return message is None or message.deleted_at is not None


def episode_for(recipient_id: int, thread_id: int, internal: bool, row_id: int, *, now: dt.datetime,
                quiet_days: float, root_for: Callable[[int], str], subject: str,
                message_id: int | None = None) -> EmailEpisode:
    """The episode the email led by outbox row `row_id` belongs to, opening a new one (with `subject`, and the
    root Message-ID root_for(number)) when none is open or the latest has been quiet for quiet_days (0:
    never). Rendering the same rows again (a resend) gives the same episode."""
    episodes = _episodes(recipient_id, thread_id, internal)
    containing = [e for e in episodes if e.opened_by <= row_id]
    if containing:
        current = containing[-1]
        if current is not episodes[-1] or current.opened_by == row_id:
            return current  # an older email rendered again, or the opening one
        quiet = quiet_days > 0 and now - last_activity(current, row_id) >= dt.timedelta(days=quiet_days)
        if not quiet and not _opening_message_gone(current):
            return current
    elif episodes:
        return episodes[0]  # rows older than the first episode (none are written that way)
    number = episodes[-1].number + 1 if episodes else 1
    try:
        with database.atomic():
            return EmailEpisode.create(recipient=recipient_id, thread=thread_id, internal=internal, number=number,
                                       root_message_id=root_for(number), subject=subject[:1000], opened_by=row_id,
                                       message_id=message_id, started_at=now)
    except IntegrityError:  # another worker opened it at the same moment
        return EmailEpisode.get((EmailEpisode.recipient == recipient_id) & (EmailEpisode.thread == thread_id)
                                & (EmailEpisode.internal == internal) & (EmailEpisode.number == number))


def current_episode(recipient_id: int, thread_id: int, internal: bool) -> EmailEpisode | None:
    """The latest episode, for an email that joins the conversation without opening one (a correction)."""
    episodes = _episodes(recipient_id, thread_id, internal)
    return episodes[-1] if episodes else None


def episode_mail_ids(episode: EmailEpisode, before_id: int, limit: int = REFERENCES_KEPT) -> list[str]:
    """Message-IDs of the episode's emails already sent before row `before_id`, oldest first."""
    rows = (_sent_rows(episode.recipient_id, episode.thread_id, episode.internal, episode.opened_by, before_id)
            .select(OutboxEmail.mail_message_id)  # type: ignore[attr-defined]
            .order_by(OutboxEmail.id.desc()).limit(limit))
    return [r.mail_message_id for r in reversed(list(rows)) if r.mail_message_id]


def episodes_by_root(message_ids: list[str]) -> list[EmailEpisode]:
    """The episodes whose root Message-ID (with brackets) is one of message_ids, with recipient and thread."""
    if not message_ids:
        return []
    return list(EmailEpisode.select(EmailEpisode, User, Thread).join(User).switch(EmailEpisode).join(Thread)
                .where(EmailEpisode.root_message_id.in_(message_ids)))


__all__ = ["EmailEpisode", "episode_for", "current_episode", "episode_mail_ids", "episodes_by_root", "last_activity"]
