"""Mail in and out, and the thread event log: InboundEmail, RawMail, OutboxEmail, ThreadEvent."""
from __future__ import annotations

from peewee import (
    AutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from storage.files import FileStore
from storage.models import BaseModel, Message, Thread, User, utcnow

# InboundEmail.outcome
ACCEPTED = "accepted"  # posted to a thread
DROPPED = "dropped"  # answered 250 but not posted: auto-reply, bounce, loop, duplicate
REJECTED = "rejected"  # answered 5xx
DEFERRED = "deferred"  # answered 4xx, the sender retries
OUTCOMES = (ACCEPTED, DROPPED, REJECTED, DEFERRED)

# OutboxEmail.status
PENDING = "pending"
SENT = "sent"
FAILED = "failed"  # permanent failure (5xx, bounce, gave up after retrying)
SKIPPED = "skipped"  # recipient can no longer see the message, or muted
STATUSES = (PENDING, SENT, FAILED, SKIPPED)

# OutboxEmail.kind
NOTIFICATION = "notification"
LOGIN_LINK = "login_link"
CORRECTION = "correction"  # a short email after an edit of a message whose notification went out
# Someone asked /login/link for a sign-in link: only to_address is known; the worker looks the person up
# and turns the row into a LOGIN_LINK (an active client) or deletes it (anyone else).
LOGIN_REQUEST = "login_request"
CONFIRM_POST = "confirm_post"  # "confirm it was you" for a held reply (gateway/outbound/confirm_mail.py)
KINDS = (NOTIFICATION, LOGIN_LINK, CORRECTION, LOGIN_REQUEST, CONFIRM_POST)


class InboundEmail(BaseModel):
    """Every mail the gateway received at DATA time, with what became of it.

    The raw bytes are kept under `raw_key` (their SHA-256): in the raw_mail table up to RAW_IN_DATABASE_MAX
    bytes, written in the same transaction as this row, and in the content-addressed file store above that
    (read either way with read_raw_mail). A partial unique index
    on (message_id_hash, reply_token) WHERE outcome = 'accepted' lets the database refuse a second
    posting of the same mail through the same reply address (created in storage/migrations.py).
    """

    id = AutoField()
    received_at = DateTimeField(default=utcnow)  # in id order; the log is read by id
    peer = CharField(max_length=100, default="")
    mail_from = CharField(max_length=1000, default="")
    rcpt_to = CharField(max_length=1000, default="")
    reply_token = CharField(max_length=64, null=True)
    mail_message_id = CharField(max_length=1000, null=True)  # the Message-ID header
    message_id_hash = CharField(max_length=64, null=True)
    subject = CharField(max_length=1000, default="")
    size = BigIntegerField(default=0)
    raw_key = CharField(max_length=128, null=True)
    outcome = CharField(max_length=10, choices=[(o, o) for o in OUTCOMES])
    reason = CharField(max_length=40, default="")  # short machine word: posted, auto_reply, bounce, …
    smtp_code = IntegerField(default=250)
    smtp_text = TextField(default="")
    message = ForeignKeyField(Message, null=True, backref="inbound_emails", on_delete="SET NULL")
    message_id: int | None
    outbox_email_id = BigIntegerField(null=True)  # for bounces: which notification bounced
    auth = CharField(max_length=300, default="")  # SPF/DKIM/DMARC results and what was decided on them
    # A held reply posted ("released") or discarded by an admin: who, and when (storage/held.py).
    decided_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    decided_by_id: int | None
    decided_at = DateTimeField(null=True)


# Raw mails up to this size are kept in the database (RawMail), larger ones in the file store. A row in the
# same transaction costs the gateway a fraction of what creating and fsyncing a file of its own does.
RAW_IN_DATABASE_MAX = 256 * 1024


class RawMail(BaseModel):
    """The raw bytes of a received mail of up to RAW_IN_DATABASE_MAX bytes, by their SHA-256 (InboundEmail.raw_key).

    Content-addressed like the file store: a mail delivered twice is kept once.
    """

    key = CharField(max_length=64, primary_key=True)
    data = BlobField()

    class Meta:
        table_name = "raw_mail"  # WITHOUT ROWID on SQLite (storage/migrations.py)


def read_raw_mail(key: str, files: FileStore, limit: int | None = None) -> bytes | None:
    """The raw mail kept under key (at most limit bytes), from the database or the file store; None when
    neither has it."""
    row = RawMail.select(RawMail.data).where(RawMail.key == key).tuples().first()
    if row is not None:
        data = bytes(row[0])
        return data if limit is None else data[:limit]
    try:
        with files.open(key) as f:
            return f.read() if limit is None else f.read(limit)
    except (OSError, ValueError):
        return None


class OutboxEmail(BaseModel):
    """One email to send, written in the same transaction as the change that causes it.

    A notification row is written per (recipient, message). The worker sends all pending rows of one
    recipient and thread together as one email (batching); the row that led the batch keeps the
    rendered mail and the others point at it through `batch`.
    """

    id = AutoField()
    kind = CharField(max_length=20, default=NOTIFICATION, choices=[(k, k) for k in KINDS])
    recipient = ForeignKeyField(User, null=True, backref="outbox_emails", on_delete="CASCADE")
    recipient_id: int | None
    to_address = CharField(max_length=320)
    thread = ForeignKeyField(Thread, null=True, on_delete="CASCADE")
    thread_id: int | None
    message = ForeignKeyField(Message, null=True, backref="outbox_emails", on_delete="CASCADE")
    message_id: int | None
    internal = BooleanField(default=False)
    status = CharField(max_length=10, default=PENDING, index=True, choices=[(s, s) for s in STATUSES])
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow, index=True)
    # What holds a notification until next_attempt_at, when its recipient's timing does (notify_schedule.plan:
    # "unread", "digest", "quiet"); "" otherwise. Read only while the row is pending and never tried.
    held_for = CharField(max_length=10, default="")
    lease_until = DateTimeField(null=True)
    leased_by = CharField(max_length=100, null=True)
    last_error = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)
    batch = ForeignKeyField("self", null=True, backref="batched", on_delete="SET NULL")
    batch_id: int | None
    mail_message_id = CharField(max_length=300, null=True, index=True)  # reply@ finds a notification by it
    bounce_token = CharField(max_length=64, null=True, unique=True)
    subject = CharField(max_length=1000, default="")
    headers = TextField(default="")  # rendered headers, one per line
    body_text = TextField(default="")
    body_html = TextField(default="")


class ThreadEvent(BaseModel):
    """Append-only log of what happened in threads; live updates read it after Last-Event-ID."""

    id = AutoField()
    thread = ForeignKeyField(Thread, backref="events", on_delete="CASCADE", index=False)  # by (thread, id)
    thread_id: int
    message = ForeignKeyField(Message, backref="events", on_delete="CASCADE")
    message_id: int
    kind = CharField(max_length=20, default="message")
    created_at = DateTimeField(default=utcnow)
