"""Held posts: replies by email that the gateway stored but did not post.

Two kinds:
- CONFIRM: the mail could not be shown to come from its sender (reply@ without an aligned SPF/DKIM pass, a
  team member's address from another envelope sender without one). A "confirm it was you" email goes to
  the person it would be posted as; its link carries a secret of which only the SHA-256 is kept here. One
  click (a POST after a confirmation page) posts it through storage/posting.py, once, before it expires.
- LOOP: the same sender posted into the same thread by email too often in a few minutes (an auto-responder
  answering our notifications, two systems answering each other). Held quietly: not posted, nobody notified;
  the team sees it in the mail log. No email goes out for it, as any email could feed the loop.

Admins decide on held posts from the mail log (web/maillog.py): a loop-held post can be posted as its
sender (release), and any waiting post discarded (discard): its files go at once, its link stops working, and
its row stays, marked, until it expires. Who decided and when is kept on the mail's row in the mail log
(InboundEmail.decided_by, decided_at), which outlives the held post.

While held, a post's files count against its author's and its workspace's storage quota (`size`, summed by
storage/quotas.py). Held posts expire after HELD_POST_HOURS: the worker's housekeeping deletes them and the
files only they used (purge_expired_held).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Any

from storage.db import write_transaction
from storage.file_removals import keys_in_use
from storage.files import FileStore
from storage.held_posts import HeldPost, held_file, waiting_clause
from storage.mail_log import ACCEPTED, DROPPED, InboundEmail
from storage.models import CLIENT, Membership, Message, Thread, User, Workspace, utcnow
from storage.posting import NewAttachment, PostingError, post_message
from storage.tokens import hash_secret

log = logging.getLogger(__name__)

CONFIRM = "confirm"
LOOP = "loop"
MAX_PENDING_PER_PERSON = 5  # unconfirmed posts one person may have waiting; beyond, the gateway says 451
PURGE_BATCH = 200


def files_of(row: HeldPost) -> list[NewAttachment]:
    """The files a held reply carries (already stored), as post_message takes them."""
    return [NewAttachment(**item) for item in json.loads(row.attachments or "[]")]


def loop_held_in(thread_id: int, now: dt.datetime | None = None) -> dict[str, int]:
    """Replies held by the loop breaker in a thread and still waiting for the team: count by sender address."""
    now = now or utcnow()
    rows = (HeldPost.select(HeldPost.from_address)
            .where((HeldPost.thread == thread_id) & (HeldPost.kind == LOOP) & waiting_clause()
                   & (HeldPost.expires_at > now)))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.from_address] = counts.get(row.from_address, 0) + 1
    return counts


def pending_for(user_id: int, now: dt.datetime | None = None) -> int:
    """How many unconfirmed CONFIRM posts of user_id are waiting."""
    return (HeldPost.select(HeldPost.id)
            .where((HeldPost.author == user_id) & (HeldPost.kind == CONFIRM) & waiting_clause()
                   & (HeldPost.expires_at > (now or utcnow())))
            .count())


def already_held(message_id_hash: str, thread_id: int, author_id: int) -> bool:
    """Whether this mail (by its Message-ID's hash) is already held for this thread and author: a retry."""
    return bool(message_id_hash) and HeldPost.select(HeldPost.id).where(
        (HeldPost.message_id_hash == message_id_hash) & (HeldPost.thread == thread_id)
        & (HeldPost.author == author_id)).exists()


def hold(kind: str, *, thread_id: int, author_id: int, internal: bool, text: str, trimmed_text: str,
         attachments: list[NewAttachment], from_address: str, subject: str, message_id_hash: str,
         inbound_email_id: int | None, hours: float, now: dt.datetime | None = None) -> tuple[HeldPost, str]:
    """Stores a held post inside the caller's transaction; returns it and, for CONFIRM, the link's secret
    (kept nowhere: only its hash is stored)."""
    now = now or utcnow()
    secret = secrets.token_urlsafe(32) if kind == CONFIRM else ""
    row = HeldPost.create(
        kind=kind, token_hash=hash_secret(secret) if secret else None, thread=thread_id, author=author_id,
        internal=internal, text=text, trimmed_text=trimmed_text or "",
        attachments=json.dumps([asdict(a) for a in attachments]), size=sum(a.size for a in attachments),
        from_address=from_address[:320],
        subject=subject[:1000], message_id_hash=message_id_hash or "", inbound_email_id=inbound_email_id,
        created_at=now, expires_at=now + dt.timedelta(hours=hours))
    return row, secret


def held_by_secret(secret: str, now: dt.datetime | None = None) -> HeldPost | None:
    """The CONFIRM post the link's secret stands for, while it waits and has not expired."""
    if not secret or len(secret) > 200:
        return None
    row: HeldPost | None = (HeldPost.select().where((HeldPost.token_hash == hash_secret(secret))
                                                    & (HeldPost.kind == CONFIRM)).first())
    if row is None or not row.waiting(now):
        return None
    return row


def live_confirm_hashes(hashes: list[str], now: dt.datetime | None = None) -> set[str]:
    """Which of these link hashes still stand for a waiting CONFIRM post (storage/link_mail.py)."""
    return {str(row.token_hash) for row in HeldPost.select(HeldPost.token_hash).where(
        HeldPost.token_hash.in_(hashes) & waiting_clause() & (HeldPost.expires_at > (now or utcnow())))}


class NotConfirmable(Exception):
    """The held post cannot be posted (any more); the message is a sentence for the person who clicked."""


def confirm(secret: str, *, notify_delay: float | None = 0, now: dt.datetime | None = None) -> Message:
    """Posts the held post of the link `secret` as its author, once: the claim and the post share one
    transaction, so two clicks (or two browsers) post it once. Raises NotConfirmable."""
    now = now or utcnow()
    with write_transaction():
        row = held_by_secret(secret, now)
        if row is None:
            raise NotConfirmable("This link has been used already or has expired.")
        message = _post(row, notify_delay=notify_delay, now=now, by=None)
    log.info("held post #%d confirmed by its sender and posted as message #%d", row.id, message.id)
    return message


def release(held_id: int, by: User, *, notify_delay: float | None = 0, now: dt.datetime | None = None) -> Message:
    """An admin posts a loop-held post as its author, with its files and the audience of the address it came
    through, once. A post held for confirmation is not released: only its sender can confirm it. Raises
    NotConfirmable."""
    now = now or utcnow()
    with write_transaction():
        row = HeldPost.get_or_none(HeldPost.id == held_id)
        if row is None or not row.waiting(now):
            raise NotConfirmable("This held reply was posted or discarded already, or has expired.")
        if row.kind != LOOP:
            raise NotConfirmable("Only its sender can post a reply held for confirmation; you can discard it.")
        message = _post(row, notify_delay=notify_delay, now=now, by=by)
    log.info("held post #%d released by %s and posted as message #%d", row.id, by.email, message.id)
    return message


def _post(row: HeldPost, *, notify_delay: float | None, now: dt.datetime, by: User | None) -> Message:
    """Inside the caller's transaction: claims the held post (once) and posts it through the one write path."""
    claimed = (HeldPost.update(posted_at=now)
               .where((HeldPost.id == row.id) & waiting_clause()).execute())
    if claimed != 1:
        raise NotConfirmable("This link has been used already or has expired." if by is None
                             else "This held reply was posted or discarded already.")
    author = User.get_by_id(row.author_id)
    thread = Thread.get_by_id(row.thread_id)
    _check_may_post(author, thread, by)
    try:
        message = post_message(thread, author, row.text, internal=row.internal, source="email",
                               attachments=files_of(row), trimmed_text=row.trimmed_text or None,
                               inbound_email_id=row.inbound_email_id, notify_delay=notify_delay, now=now)
    except PostingError as e:
        raise NotConfirmable(str(e)) from e
    HeldPost.update(message=message.id).where(HeldPost.id == row.id).execute()
    if row.inbound_email_id is not None:
        _mark_posted(row.inbound_email_id, message.id, by, now)
    return message


def discard(held_id: int, by: User, files_dir: Path, now: dt.datetime | None = None) -> HeldPost:
    """An admin discards a waiting held post (either kind): its files go now (unless something else uses the
    same bytes), its link stops working, and the row stays as a mark until it expires. Raises NotConfirmable."""
    now = now or utcnow()
    with write_transaction():
        row = HeldPost.get_or_none(HeldPost.id == held_id)
        if row is None or not row.waiting(now):
            raise NotConfirmable("This held reply was posted or discarded already, or has expired.")
        keys = set(row.file_keys())
        HeldPost.update(discarded_at=now, token_hash=None, attachments="[]", size=0, text="", trimmed_text="").where(
            (HeldPost.id == row.id) & waiting_clause()).execute()
        if row.inbound_email_id is not None:
            InboundEmail.update(reason="discarded", decided_by=by.id, decided_at=now).where(
                (InboundEmail.id == row.inbound_email_id) & (InboundEmail.outcome == DROPPED)).execute()
    _remove_unused(files_dir, keys)
    log.info("held post #%d (%s) discarded by %s", row.id, row.kind, by.email)
    return row


def _mark_posted(inbound_email_id: int, message_id: int, by: User | None, now: dt.datetime) -> None:
    """The held mail's row becomes an accepted one (it keeps its raw mail, as posted replies do), unless the
    same mail was meanwhile posted through the same address (the accepted-once index): then it only links."""
    inbound = InboundEmail.get_or_none(InboundEmail.id == inbound_email_id)
    if inbound is None:
        return
    twin = inbound.message_id_hash is not None and inbound.reply_token is not None and InboundEmail.select(
        InboundEmail.id).where((InboundEmail.message_id_hash == inbound.message_id_hash)
                               & (InboundEmail.reply_token == inbound.reply_token)
                               & (InboundEmail.outcome == ACCEPTED)).exists()
    changes: dict[Any, Any] = {InboundEmail.message: message_id,
                               InboundEmail.reason: "confirmed" if by is None else "released"}
    if by is not None:
        changes.update({InboundEmail.decided_by: by.id, InboundEmail.decided_at: now})
    if not twin:
        changes[InboundEmail.outcome] = ACCEPTED
    InboundEmail.update(changes).where(InboundEmail.id == inbound_email_id).execute()


def _check_may_post(author: User, thread: Thread, by: User | None) -> None:
    """The sender may still post there (as the gateway would check now); sentences for whoever clicked."""
    if not author.active:
        raise NotConfirmable("Your account is deactivated, so this reply cannot be posted." if by is None else
                             f"{author.name}'s account is deactivated, so this reply cannot be posted.")
    workspace = Workspace.get_by_id(thread.workspace_id)
    if workspace.archived_at is not None:
        raise NotConfirmable("This conversation is archived, so replies to it are no longer posted.")
    if author.role == CLIENT and not Membership.select(Membership.id).where(
            (Membership.user == author.id) & (Membership.workspace == thread.workspace_id)
            & (Membership.messages_access == True)).exists():  # noqa: E712
        raise NotConfirmable("You no longer have access to this conversation, so the reply cannot be posted."
                             if by is None else f"{author.name} no longer has access to this conversation, "
                             "so the reply cannot be posted as them.")


def _remove_unused(files_dir: Path, keys: set[str]) -> None:
    """Deletes the stored files `keys` of held posts that are gone, unless something still names the same
    bytes (storage/file_removals.py keys_in_use: a post, a raw mail, the logo, another held reply)."""
    files = FileStore(files_dir)
    for key in set(keys) - keys_in_use(keys):
        try:
            files.remove(key)
        except (OSError, ValueError):
            log.warning("could not delete the file %s of a held post", key, exc_info=True)


def held_of_mails(inbound_ids: list[int]) -> dict[int, list[HeldPost]]:
    """The held posts (any state) of these mail log rows, by row id, each with its thread and workspace."""
    found: dict[int, list[HeldPost]] = {}
    if not inbound_ids:
        return found
    for row in (HeldPost.select(HeldPost, Thread, Workspace).join(Thread).join(Workspace)
                .where(HeldPost.inbound_email_id.in_(inbound_ids)).order_by(HeldPost.id)):
        found.setdefault(int(row.inbound_email_id or 0), []).append(row)
    return found


def purge_expired_held(files_dir: Path, now: dt.datetime | None = None, limit: int = PURGE_BATCH) -> int:
    """Deletes held posts past their expiry (posted or not) and the files only unposted ones used;
    returns how many were deleted."""
    now = now or utcnow()
    rows = list(HeldPost.select().where(HeldPost.expires_at <= now).order_by(HeldPost.id).limit(limit))
    if not rows:
        return 0
    keys = {key for row in rows if row.posted_at is None for key in row.file_keys()}
    with write_transaction():
        HeldPost.delete().where(HeldPost.id.in_([r.id for r in rows])).execute()
    _remove_unused(files_dir, keys)
    log.info("deleted %d expired held post%s", len(rows), "" if len(rows) == 1 else "s")
    return len(rows)


__all__ = ["CONFIRM", "LOOP", "HeldPost", "held_file", "files_of",
           "hold", "held_by_secret", "confirm", "release", "discard", "NotConfirmable",
           "purge_expired_held", "pending_for", "already_held", "MAX_PENDING_PER_PERSON", "live_confirm_hashes",
           "waiting_clause", "held_of_mails", "loop_held_in"]
