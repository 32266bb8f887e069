"""Held replies: the last step decides whether a reply is posted or held (storage/held.py), and
write_held() stores a held one with its mail's row, in the group commit's transaction, before the 250.

- Held for confirmation: authenticate_sender set mail.hold (reply@ without an aligned pass, a team member's
  address from another envelope sender without one). A "confirm it was you" email goes to the person it
  would be posted as (gateway/outbound/confirm_mail.py).
- Held as a loop (the loop breaker): the sender's replies by email into the thread within LOOP_MINUTES,
  posted or already held as a loop, reach LOOP_POSTS. Nobody is notified and no email goes out (any
  email could feed the loop); the mail log shows it, which is where the team looks at what mail did.
"""
from __future__ import annotations

import datetime as dt
import logging

from gateway.errors import Held, HeldAsLoop, HeldForConfirmation, SlowDown
from gateway.inbound.mail import InboundMail
from gateway.inbound.quota import drop_attachments
from gateway.outbound.confirm_mail import queue_confirm_email
from storage.db import tuples
from storage.held import CONFIRM, LOOP, MAX_PENDING_PER_PERSON, HeldPost, already_held, hold, pending_for
from storage.models import Message, Workspace, utcnow

log = logging.getLogger(__name__)


def hold_if_needed(mail: InboundMail) -> None:
    """Step: raises HeldForConfirmation when authenticate_sender asked for it, HeldAsLoop when the loop
    breaker trips, SlowDown when the person already has MAX_PENDING_PER_PERSON replies waiting."""
    if mail.hold == CONFIRM:
        for target in mail.targets:
            if pending_for(target.author.id) >= MAX_PENDING_PER_PERSON:
                drop_attachments(mail)  # answered 451: its files are not kept
                raise SlowDown(detail=f"{MAX_PENDING_PER_PERSON} replies already wait for confirmation")
        raise HeldForConfirmation(detail=mail.auth or "not shown to come from its sender")
    looping = [t for t in mail.targets if _recent_by_email(t.author.id, t.thread.id, mail.settings.loop_minutes)
               >= mail.settings.loop_posts]
    if looping:
        log.warning("loop breaker: held a reply by %s to thread %s (%d or more in %g minutes)", mail.from_address,
                    ", ".join(str(t.thread.id) for t in looping), mail.settings.loop_posts, mail.settings.loop_minutes)
        raise HeldAsLoop(detail=f"more than {mail.settings.loop_posts} by email in {mail.settings.loop_minutes:g} min")


LOOP_LOOKBACK = 100  # the thread's newest messages the loop breaker looks at (its (thread, id) index)


def _recent_by_email(author_id: int, thread_id: int, minutes: float, now: dt.datetime | None = None) -> int:
    """The author's replies by email into the thread within `minutes`, posted or held as a loop."""
    since = (now or utcnow()) - dt.timedelta(minutes=minutes)
    newest = tuples(Message.select(Message.author, Message.source, Message.created_at)
                    .where(Message.thread == thread_id).order_by(Message.id.desc()).limit(LOOP_LOOKBACK))
    posted = sum(1 for author, source, at in newest if author == author_id and source == "email" and at > since)
    held = (HeldPost.select(HeldPost.id)
            .where((HeldPost.author == author_id) & (HeldPost.thread == thread_id) & (HeldPost.kind == LOOP)
                   & (HeldPost.created_at > since)).count())
    return posted + int(held)


def write_held(mail: InboundMail, outcome: Held, row_id: int) -> None:
    """Inside the transaction that wrote the mail's row (row_id): the held post of each target thread and,
    for a confirmation, its email. A second delivery of the same mail holds nothing new and sends nothing."""
    settings = mail.settings
    for target in sorted(mail.targets, key=lambda t: t.thread.id):
        if already_held(mail.message_id_hash, target.thread.id, target.author.id):
            continue
        _row, secret = hold(
            outcome.hold_kind, thread_id=target.thread.id, author_id=target.author.id, internal=target.internal,
            text=mail.text, trimmed_text=mail.trimmed, attachments=mail.attachments, from_address=mail.from_address,
            subject=mail.subject, message_id_hash=mail.message_id_hash, inbound_email_id=row_id,
            hours=settings.held_post_hours)
        if secret:
            workspace = Workspace.select(Workspace.name).where(Workspace.id == target.thread.workspace_id).first()
            queue_confirm_email(settings, target.author, secret, workspace_name=workspace.name if workspace else "",
                                internal=target.internal, text=mail.text, file_names=[a.name for a in mail.attachments],
                                from_address=mail.from_address, mail_subject=mail.subject)


__all__ = ["hold_if_needed", "write_held"]
