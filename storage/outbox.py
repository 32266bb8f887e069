"""The outbox: the queries and state changes of OutboxEmail rows (sync-engine's ActionLog, for mail).

post_message() writes one pending notification row per recipient in the message's own transaction. A worker
drains the table: claim_due() (batches leased to it), save_rendered() before handing the mail to the relay,
then mark_sent() | mark_retry() | mark_failed() | mark_skipped() | release(). Delivery is at least once.
"""
from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from peewee import ModelSelect, fn

from storage import notify_schedule
from storage.db import database, is_sqlite, tuples, write_transaction
from storage.mail_log import (
    CONFIRM_POST,
    FAILED,
    LOGIN_LINK,
    LOGIN_REQUEST,
    NOTIFICATION,
    PENDING,
    SENT,
    SKIPPED,
    OutboxEmail,
)
from storage.models import TEAM, Membership, ReadMarker, Thread, User, utcnow

# Any 64-bit number works, as long as every worker uses the same one (differs from the migration lock).
PG_CLAIM_LOCK = 0x576F726B4F757462

DEFAULT_LEASE_SECONDS = 300  # longer than one SMTP conversation may take (see transport.SMTP_TIMEOUT)
GIVE_UP_AFTER = dt.timedelta(days=2)  # a temporarily failing email is retried this long, then failed
RETRY_FIRST_DELAY = 30.0  # seconds before the first retry; doubles each time
RETRY_MAX_DELAY = 3600.0  # never wait longer than an hour between two tries
MAX_MESSAGES_PER_EMAIL = 50  # a longer backlog is split into several emails, oldest first
HARD_BOUNCES_TO_DISABLE = 3  # consecutive hard bounces after which an address is no longer emailed
BOUNCED_PREFIX = "bounced: "
LOGIN_LINK_SCRUBBED = "(The sign-in link was removed from the outbox after sending.)"
CONFIRM_POST_SCRUBBED = "(The confirmation link was removed from the outbox after sending.)"


@dataclass(frozen=True)
class Batch:
    """Rows claimed together that become one email. `lead_id` is the lowest id; it names the email."""

    kind: str
    row_ids: tuple[int, ...]
    recipient_id: int | None
    thread_id: int | None
    internal: bool
    to_address: str
    attempts: int = 0

    @property
    def lead_id(self) -> int:
        return self.row_ids[0]


def _ids(rows: Batch | Iterable[int | OutboxEmail]) -> list[int]:
    if isinstance(rows, Batch):
        return list(rows.row_ids)
    return [r.id if isinstance(r, OutboxEmail) else int(r) for r in rows]


def _lease_free(now: dt.datetime) -> object:
    return OutboxEmail.lease_until.is_null() | (OutboxEmail.lease_until < now)


@contextmanager
def _claim_transaction() -> Iterator[None]:
    """One claimer at a time: BEGIN IMMEDIATE on SQLite, an advisory transaction lock on PostgreSQL."""
    if is_sqlite():
        with database.atomic("IMMEDIATE"):
            yield
    else:
        with write_transaction():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PG_CLAIM_LOCK,))
            yield


def _locked(query: ModelSelect[OutboxEmail]) -> ModelSelect[OutboxEmail]:
    return query if is_sqlite() else query.for_update(skip_locked=True)


def claim_due(now: dt.datetime | None = None, limit: int = 20, worker_id: str = "worker",
              lease_seconds: float = DEFAULT_LEASE_SECONDS) -> list[Batch]:
    """Leases up to `limit` batches whose first row is due, oldest first, to `worker_id`.

    Batching: every pending row of the same (recipient, thread, internal) goes into the due row's batch (up
    to MAX_MESSAGES_PER_EMAIL), so a burst of messages within NOTIFY_DELAY is one email.
    Order: one recipient's notifications leave in the order they were written; a due row is not claimed
    while an older pending notification of the same person waits in another batch (backing off, or leased).
    Several workers: claiming is one short serialized transaction (BEGIN IMMEDIATE on SQLite; an advisory
    lock and FOR UPDATE SKIP LOCKED on PostgreSQL), and each claimed row carries a lease: a worker that dies
    leaves its rows to another once the lease expires.
    A duplicate can only come from a crash between the relay's 250 and mark_sent()'s commit (or a send that
    outlives its lease); the resend has the same Message-ID (gateway/outbound/render.py), so mail clients
    can recognize it.
    """
    now = now or utcnow()
    lease_until = now + dt.timedelta(seconds=lease_seconds)
    batches: list[Batch] = []
    due = (OutboxEmail.status == PENDING) & (OutboxEmail.next_attempt_at <= now) & _lease_free(now)
    if not OutboxEmail.select(OutboxEmail.id).where(due).exists():
        return batches  # the common idle case: no write lock taken (SQLite has only one)
    with _claim_transaction():
        candidates = list(_locked(
            OutboxEmail.select().where(due).order_by(OutboxEmail.id).limit(limit * 10)))
        claimed: set[int] = set()
        blocked: set[int | None] = set()  # recipients whose older notification is not in this claim
        for row in candidates:
            if len(batches) >= limit:
                break
            if row.id in claimed:
                continue
            if row.kind != NOTIFICATION:
                group = [row]
            else:
                if row.recipient_id in blocked or _waits_for_older(row, claimed, now):
                    blocked.add(row.recipient_id)
                    continue
                group = list(_locked(
                    OutboxEmail.select()
                    .where((OutboxEmail.status == PENDING) & (OutboxEmail.kind == NOTIFICATION)
                           & (OutboxEmail.recipient == row.recipient_id) & (OutboxEmail.thread == row.thread_id)
                           & (OutboxEmail.internal == row.internal) & _lease_free(now))
                    .order_by(OutboxEmail.id).limit(MAX_MESSAGES_PER_EMAIL)))
                if not group:
                    continue
            ids = [r.id for r in group]
            taken = (OutboxEmail.update(lease_until=lease_until, leased_by=worker_id)
                     .where(OutboxEmail.id.in_(ids) & (OutboxEmail.status == PENDING) & _lease_free(now))
                     .execute())
            if taken != len(ids):
                raise RuntimeError("outbox rows changed under a serialized claim")
            claimed.update(ids)
            batches.append(Batch(kind=row.kind, row_ids=tuple(ids), recipient_id=row.recipient_id,
                                 thread_id=row.thread_id, internal=bool(row.internal), to_address=row.to_address,
                                 attempts=max(r.attempts for r in group)))
    return batches


def _waits_for_older(row: OutboxEmail, claimed: set[int], now: dt.datetime) -> bool:
    """Whether an older pending notification of the same person must leave first.

    Older rows of the same batch key that are free are folded into this batch, so they do not count. Nor
    do rows never tried that wait for their time (a person's digest or quiet hours, see hold()): only an
    email that failed and waits for its retry, or one being sent, holds the person's newer ones back.
    """
    same_key = ((OutboxEmail.thread == row.thread_id) & (OutboxEmail.internal == row.internal)
                & _lease_free(now))
    waits_for_its_time = (OutboxEmail.attempts == 0) & (OutboxEmail.next_attempt_at > now) & _lease_free(now)
    query = (OutboxEmail.select(OutboxEmail.id)
             .where((OutboxEmail.recipient == row.recipient_id) & (OutboxEmail.kind == NOTIFICATION)
                    & (OutboxEmail.status == PENDING) & (OutboxEmail.id < row.id) & ~same_key
                    & ~waits_for_its_time))
    if claimed:
        query = query.where(OutboxEmail.id.not_in(list(claimed)))
    return query.exists()


def load_rows(batch: Batch | Iterable[int]) -> list[OutboxEmail]:
    """The still-pending rows of a batch, oldest first (another worker may have finished some)."""
    ids = _ids(batch)
    return list(OutboxEmail.select().where(OutboxEmail.id.in_(ids) & (OutboxEmail.status == PENDING))
                .order_by(OutboxEmail.id))


def new_bounce_token() -> str:
    return secrets.token_hex(16)


def save_rendered(rows: Batch | Iterable[int | OutboxEmail], *, mail_message_id: str, bounce_token: str,
                  subject: str, headers: str, body_text: str, body_html: str) -> None:
    """Keeps what is about to be sent on the lead row; the other rows point at it through `batch`.

    Committed before the mail goes to the relay, so that a bounce arriving at once finds its row.
    """
    ids = sorted(_ids(rows))
    lead = ids[0]
    with write_transaction():
        OutboxEmail.update(mail_message_id=mail_message_id, bounce_token=bounce_token, subject=subject,
                           headers=headers, body_text=body_text, body_html=body_html, batch=None
                           ).where(OutboxEmail.id == lead).execute()
        if len(ids) > 1:
            OutboxEmail.update(batch=lead, mail_message_id=mail_message_id, subject=subject
                               ).where(OutboxEmail.id.in_(ids[1:])).execute()


def mark_sent(rows: Batch | Iterable[int | OutboxEmail], now: dt.datetime | None = None) -> int:
    """The relay took the email (250). A sent sign-in link or confirmation link loses its secret body."""
    now = now or utcnow()
    ids = _ids(rows)
    with write_transaction():
        n = (OutboxEmail.update(status=SENT, sent_at=now, attempts=OutboxEmail.attempts + 1, lease_until=None,
                                leased_by=None, last_error="")
             .where(OutboxEmail.id.in_(ids) & (OutboxEmail.status == PENDING)).execute())
        OutboxEmail.update(body_text=LOGIN_LINK_SCRUBBED, body_html="").where(
            OutboxEmail.id.in_(ids) & (OutboxEmail.kind == LOGIN_LINK)).execute()
        OutboxEmail.update(body_text=CONFIRM_POST_SCRUBBED, body_html="").where(
            OutboxEmail.id.in_(ids) & (OutboxEmail.kind == CONFIRM_POST)).execute()
    return n


def retry_delay(attempts: int, first: float = RETRY_FIRST_DELAY, most: float = RETRY_MAX_DELAY) -> float:
    """Seconds to wait after the `attempts`-th failed try: first, 2×first, 4×first, … at most `most`."""
    return min(most, first * (2 ** max(0, min(attempts - 1, 30))))


def mark_retry(rows: Batch | Iterable[int | OutboxEmail], error: str, next_at: dt.datetime,
               now: dt.datetime | None = None) -> str:
    """A temporary failure (4xx, connection, timeout): try again at next_at, or fail after two days.

    Returns the new status: pending, or failed when the oldest row has waited GIVE_UP_AFTER.
    """
    now = now or utcnow()
    ids = _ids(rows)
    first = OutboxEmail.select(fn.MIN(OutboxEmail.created_at)).where(OutboxEmail.id.in_(ids)).scalar() or now
    deadline = first + GIVE_UP_AFTER
    if now >= deadline:
        mark_failed(ids, f"gave up after {GIVE_UP_AFTER.days} days of temporary failures; last: {error}")
        return FAILED
    (OutboxEmail.update(attempts=OutboxEmail.attempts + 1, last_error=error[:2000],
                        next_attempt_at=min(next_at, deadline), lease_until=None, leased_by=None)
     .where(OutboxEmail.id.in_(ids) & (OutboxEmail.status == PENDING)).execute())
    return PENDING


def mark_failed(rows: Batch | Iterable[int | OutboxEmail], error: str) -> int:
    """A permanent failure (5xx with the relay's words, or retried too long): never tried again."""
    return (OutboxEmail.update(status=FAILED, attempts=OutboxEmail.attempts + 1, last_error=error[:2000],
                               lease_until=None, leased_by=None)
            .where(OutboxEmail.id.in_(_ids(rows)) & (OutboxEmail.status == PENDING)).execute())


def mark_skipped(rows: Batch | Iterable[int | OutboxEmail], reason: str) -> int:
    """Not sent on purpose: the person can no longer see the message, muted email or unfollowed."""
    return (OutboxEmail.update(status=SKIPPED, last_error=reason[:2000], lease_until=None, leased_by=None)
            .where(OutboxEmail.id.in_(_ids(rows)) & (OutboxEmail.status == PENDING)).execute())


def hold(batch: Batch, until: dt.datetime, now: dt.datetime | None = None, *, held_for: str = "") -> int:
    """The batch may not leave before `until` (its recipient's timing): its rows, and any other pending row
    of the same email not in it (past MAX_MESSAGES_PER_EMAIL), wait until then, unleased. `held_for` says
    what holds them (notify_schedule.plan), for the team's delivery line. Returns how many."""
    now = now or utcnow()
    same_email = ((OutboxEmail.recipient == batch.recipient_id) & (OutboxEmail.thread == batch.thread_id)
                  & (OutboxEmail.internal == batch.internal) & (OutboxEmail.kind == NOTIFICATION)
                  & _lease_free(now) & (OutboxEmail.next_attempt_at < until))
    return (OutboxEmail.update(next_attempt_at=until, held_for=held_for, lease_until=None, leased_by=None)
            .where((OutboxEmail.id.in_(list(batch.row_ids)) | same_email) & (OutboxEmail.status == PENDING))
            .execute())


def reschedule(user: User | int, now: dt.datetime | None = None) -> int:
    """The person changed their timing: their notifications waiting for a time (never tried) are due now, so
    that the worker decides again with the new choice. Returns how many."""
    now = now or utcnow()
    return (OutboxEmail.update(next_attempt_at=now, held_for="")
            .where((OutboxEmail.recipient == user) & (OutboxEmail.kind == NOTIFICATION)
                   & (OutboxEmail.status == PENDING) & (OutboxEmail.attempts == 0)
                   & (OutboxEmail.next_attempt_at > now) & _lease_free(now))
            .execute())


def already_read(rows: Sequence[OutboxEmail]) -> list[OutboxEmail]:
    """The rows about messages their recipient has seen since (a page or a live stream showed them: the
    read marker has reached them)."""
    found: list[OutboxEmail] = []
    for (recipient_id, thread_id), group in _by_reader(rows).items():
        marker = (ReadMarker.select(ReadMarker.last_read_message_id)
                  .where((ReadMarker.user == recipient_id) & (ReadMarker.thread == thread_id)).scalar()) or 0
        found.extend(r for r in group if r.message_id is not None and r.message_id <= marker)
    return found


def _by_reader(rows: Sequence[OutboxEmail]) -> dict[tuple[int | None, int | None], list[OutboxEmail]]:
    groups: dict[tuple[int | None, int | None], list[OutboxEmail]] = {}
    for r in rows:
        groups.setdefault((r.recipient_id, r.thread_id), []).append(r)
    return groups


def release(rows: Batch | Iterable[int | OutboxEmail]) -> int:
    """Gives claimed rows back untouched (the worker is stopping, or an older email of the person failed)."""
    return (OutboxEmail.update(lease_until=None, leased_by=None)
            .where(OutboxEmail.id.in_(_ids(rows)) & (OutboxEmail.status == PENDING)).execute())


def recipient_block_reason(user: User, thread_id: int | None) -> str:
    """Why a person must not be emailed about this thread now, or "" when they may be."""
    if not user.active:
        return "recipient deactivated"
    if user.email_disabled:
        return "address disabled after repeated hard bounces"
    if user.email_muted:
        return "recipient muted email"
    if thread_id is not None:
        workspace_id = Thread.select(Thread.workspace).where(Thread.id == thread_id)
        unfollowed = Membership.select().where((Membership.user == user.id) & (Membership.workspace == workspace_id)
                                               & (Membership.following == False))  # noqa: E712
        if unfollowed.exists():
            return "recipient unsubscribed from this workspace" if user.role != TEAM else \
                "recipient does not follow this workspace"
    return ""


def previous_mail_ids(recipient_id: int, thread_id: int, internal: bool, before_id: int,
                      limit: int = 10) -> list[str]:
    """Message-IDs of the latest emails already sent to this person about this thread, oldest first."""
    rows = (OutboxEmail.select(OutboxEmail.mail_message_id)
            .where((OutboxEmail.recipient == recipient_id) & (OutboxEmail.thread == thread_id)
                   & (OutboxEmail.internal == internal) & (OutboxEmail.kind == NOTIFICATION)
                   & (OutboxEmail.status == SENT) & OutboxEmail.batch.is_null()
                   & OutboxEmail.mail_message_id.is_null(False) & (OutboxEmail.id < before_id))
            .order_by(OutboxEmail.id.desc()).limit(limit))
    return [r.mail_message_id for r in reversed(list(rows)) if r.mail_message_id]


def record_bounce(bounce_token: str, *, hard: bool, reason: str) -> bool:
    """A delivery report came back to bounce+TOKEN@REPLY_DOMAIN: that email failed, for `reason`.

    After HARD_BOUNCES_TO_DISABLE consecutive hard bounces the address is no longer emailed
    (User.email_disabled) until reenable_email() clears it (no page or command calls it yet). Returns
    False when no email carries that token. A report that arrives twice counts once.
    """
    token = (bounce_token or "").strip().lower()
    if not token:
        return False
    with write_transaction():
        lead = OutboxEmail.get_or_none(OutboxEmail.bounce_token == token)
        if lead is None:
            return False
        if lead.last_error.startswith(BOUNCED_PREFIX):
            return True
        error = (BOUNCED_PREFIX + (" ".join((reason or "").split()) or "delivery failed"))[:2000]
        (OutboxEmail.update(status=FAILED, last_error=error, lease_until=None, leased_by=None)
         .where((OutboxEmail.id == lead.id) | (OutboxEmail.batch == lead.id)).execute())
        if hard and lead.recipient_id is not None:
            User.update(hard_bounces=User.hard_bounces + 1).where(User.id == lead.recipient_id).execute()
            (User.update(email_disabled=True)
             .where((User.id == lead.recipient_id) & (User.hard_bounces >= HARD_BOUNCES_TO_DISABLE)).execute())
    return True


def reenable_email(user: User) -> None:
    """The address works again: email it again and start counting bounces afresh. Not yet reachable
    from the team app or the CLI (only tests call it)."""
    User.update(email_disabled=False, hard_bounces=0).where(User.id == user.id).execute()


def add_login_link(user: User, *, subject: str, body_text: str, body_html: str) -> OutboxEmail:
    """Queues an already rendered sign-in link (or invitation) email for `user`; the worker sends it
    like any other email. gateway/outbound/login_links.py renders it, since only the caller knows the link."""
    return OutboxEmail.create(kind=LOGIN_LINK, recipient=user, to_address=user.email, thread=None, message=None,
                              internal=False, status=PENDING, next_attempt_at=utcnow(),
                              subject=subject, body_text=body_text, body_html=body_html)


def queue_login_request(email: str, target: str | None = None) -> None:
    """Queues a request for a sign-in link to `email`, whoever it belongs to (one insert, the same work for
    a known and an unknown address); the worker decides (gateway/outbound/login_requests.py). `target`, the
    path the link lands on, waits in the row's subject until then."""
    OutboxEmail.insert(kind=LOGIN_REQUEST, recipient=None, to_address=email.strip().lower()[:320], thread=None,
                       message=None, internal=False, status=PENDING, next_attempt_at=utcnow(),
                       subject=target or "").execute()


def delivery_status(message_ids: Sequence[int], *, now: dt.datetime | None = None,
                    zone: dt.tzinfo = dt.UTC) -> dict[int, dict[str, object]]:
    """Per message: how many notification emails were sent, are pending, failed or skipped, and the
    errors of the failed ones ("address: relay's words"), for the team to see next to the message.

    Of the pending ones, "queued" are on their way (or waiting for the operator's NOTIFY_DELAY, or a retry)
    and "held" are those their recipient's timing holds, as short labels with a count: "in digest",
    "waiting: unread", "scheduled 08:00" (quiet hours; the time in `zone`, the viewer's). A client's quiet
    hours stay theirs: their email only says "scheduled", without the time.
    """
    now = now or utcnow()
    ids = [int(i) for i in message_ids]
    counts: dict[int, dict[str, int]] = {i: {"sent": 0, "pending": 0, "failed": 0, "skipped": 0, "queued": 0}
                                         for i in ids}
    errors: dict[int, list[str]] = {i: [] for i in ids}
    held: dict[int, dict[tuple[str, str, str], int]] = {i: {} for i in ids}
    if ids:
        rows = tuples(OutboxEmail.select(OutboxEmail.message, OutboxEmail.status, OutboxEmail.to_address,
                                         OutboxEmail.last_error, OutboxEmail.held_for, OutboxEmail.attempts,
                                         OutboxEmail.next_attempt_at, User.role)
                      .join(User, on=(OutboxEmail.recipient == User.id))
                      .where(OutboxEmail.message.in_(ids) & (OutboxEmail.kind == NOTIFICATION))
                      .order_by(OutboxEmail.id))
        for message_id, status, to_address, last_error, held_for, attempts, next_at, role in rows:
            counts[message_id][status] = counts[message_id].get(status, 0) + 1
            if status == FAILED:
                errors[message_id].append(f"{to_address}: {last_error}")
            if status != PENDING:
                continue
            label = _held_label(held_for, attempts, next_at, role, now, zone)
            if label is None:
                counts[message_id]["queued"] += 1
            else:
                held[message_id][label] = held[message_id].get(label, 0) + 1
    return {i: {**counts[i], "errors": errors[i],
                "held": [{"label": label, "time": time, "at": at, "count": n}
                         for (label, time, at), n in held[i].items()]}
            for i in ids}


def _held_label(held_for: str, attempts: int, next_at: dt.datetime, role: str, now: dt.datetime,
                zone: dt.tzinfo) -> tuple[str, str, str] | None:
    """(label, local time or "", its ISO UTC form or "") of a pending row its recipient's timing holds; None
    when it is just queued."""
    if not held_for or attempts or next_at <= now:
        return None  # never held, already tried (a retry's wait), or due: on its way
    if held_for == notify_schedule.DIGEST:
        return "in digest", "", ""
    if held_for == notify_schedule.UNREAD:
        return "waiting: unread", "", ""
    if role != TEAM:
        return "scheduled", "", ""
    local = next_at.replace(tzinfo=dt.UTC).astimezone(zone)
    today = now.replace(tzinfo=dt.UTC).astimezone(zone).date()
    when = local.strftime("%H:%M") if local.date() == today else local.strftime("%a %H:%M")
    return "scheduled", when, next_at.replace(microsecond=0).isoformat() + "Z"


def apply_unsubscribe(user_id: int, thread_id: int) -> bool:
    """One-click unsubscribe: the person stops getting notification emails about this workspace.

    Sets Membership.following = False (creating the row for a team member who has none; a client always
    has one). Returns False when the person or thread no longer exists. storage.visibility.audience()
    honours it for new messages, and the worker skips rows already queued (recipient_block_reason).
    """
    user = User.get_or_none(User.id == user_id)
    thread = Thread.get_or_none(Thread.id == thread_id)
    if user is None or thread is None:
        return False
    with write_transaction():
        now = utcnow()
        updated = (Membership.update(following=False, unsubscribed_at=now)
                   .where((Membership.user == user.id) & (Membership.workspace == thread.workspace_id)).execute())
        if not updated:
            if user.role != TEAM:
                return False
            Membership.create(user=user, workspace=thread.workspace_id, following=False, unsubscribed_at=now)
    return True


__all__ = [
    "Batch", "claim_due", "load_rows", "save_rendered", "mark_sent", "mark_retry", "mark_failed", "mark_skipped",
    "release", "retry_delay", "record_bounce", "reenable_email", "add_login_link", "queue_login_request",
    "delivery_status",
    "apply_unsubscribe", "recipient_block_reason", "previous_mail_ids", "new_bounce_token",
    "DEFAULT_LEASE_SECONDS", "GIVE_UP_AFTER",
]
