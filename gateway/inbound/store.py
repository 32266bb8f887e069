"""The rows of a received mail: store_rows() records it as accepted and posts it, once per thread;
record_row() records any other outcome. Both run inside a transaction the group commit opened
(gateway/smtp/committer.py), which commits before the gateway answers.

The InboundEmail row and everything storage.posting.post_message() writes (the Message, its attachments,
the notification outbox rows, the thread event) commit together. The partial unique index
inbound_email_accepted_once on (message_id_hash, reply_token) makes a second delivery of the same mail a
Duplicate, decided by the database even when two deliveries race. A small raw mail is written to the
raw_mail table with the row (keep_raw); when the database cannot take the row at all,
keep_raw_in_files() puts the raw mail in the file store instead. record_outcome() is record_row() in a
transaction of its own, for a mail refused before the pipeline ran.
"""
from __future__ import annotations

import logging
from typing import Any

from gateway.errors import Accepted, Duplicate, NotPostable, Outcome, ProcessingTimeout
from gateway.inbound.away import write_away
from gateway.inbound.mail import InboundMail
from gateway.inbound.parse import clean
from storage.db import PreparedInsert, PreparedQuery, database, write_transaction
from storage.files import FileStore
from storage.learned_signatures import remember_blocks
from storage.mail_log import InboundEmail, RawMail
from storage.posting import PostingError, post_message
from storage.redaction import redact
from storage.tokens import hash_secret

log = logging.getLogger(__name__)

ACCEPTED_OUTCOME = Accepted()


def store_rows(mail: InboundMail) -> None:
    """Records the mail as accepted and posts the reply to each target thread, inside a transaction the
    caller opened (the group commit runs several mails' in one). Raises when the mail cannot be posted:
    the caller rolls back what this wrote."""
    settings = mail.settings
    posted = 0  # counted here, not kept on mail: a batch that is rolled back runs this again
    keep_raw(mail)
    # Threads in id order: concurrent transactions (other gateway processes on PostgreSQL) then meet each
    # other's rows in the same order.
    for target in sorted(mail.targets, key=lambda t: t.thread.id):
        # ON CONFLICT DO NOTHING: the partial unique index turns a second delivery into no row at all,
        # without the savepoint an IntegrityError would need.
        fields = row_fields(mail, ACCEPTED_OUTCOME, reply_token=target.dedup_key)
        row_id = _INSERT_ACCEPTED.execute(tuple(fields[name] for name in ROW_FIELDS))
        if row_id is None:
            continue
        try:
            message = post_message(
                target.thread, target.author, mail.text, internal=target.internal, source="email",
                attachments=mail.attachments, trimmed_text=mail.trimmed or None, inbound_email_id=row_id,
                notify_delay=settings.notify_delay)
        except PostingError as e:
            raise NotPostable(str(e)) from e
        _LINK_MESSAGE.execute(message_id=message.id, row_id=row_id)
        posted += 1
    if not posted:
        raise Duplicate()
    remember_blocks(mail.from_address, mail.signature_blocks, now=mail.received_at)  # posted: learn from it
    if mail.time_left() <= 0:
        # The handler has answered (or is about to answer) 451: commit nothing it did not promise.
        raise ProcessingTimeout()


def record_outcome(mail: InboundMail, outcome: Outcome) -> int | None:
    """Writes the InboundEmail row of a dropped, rejected or deferred mail; returns its id, or None when
    the database cannot take it (logged with the raw mail's key, which is kept in the file store)."""
    try:
        with write_transaction():
            return record_row(mail, outcome)
    except Exception as e:
        log.error("could not record %s mail from %s (raw mail kept as %s): %s: %s", outcome.reason,
                  mail.mail_from or "<>", mail.raw_key or "not stored", type(e).__name__, e)
        reset_connection()
        keep_raw_in_files(mail)
        return None


def record_row(mail: InboundMail, outcome: Outcome) -> int:
    """record_outcome's write, inside a transaction the caller opened."""
    keep_raw(mail)
    tokens = mail.reply_tokens
    fields = row_fields(mail, outcome, reply_token=tokens[0] if tokens else None)
    row_id = _INSERT_OUTCOME.execute(tuple(fields[name] for name in ROW_FIELDS))
    assert row_id is not None  # inserted without ON CONFLICT: a row, or an error
    write_away(mail, row_id)  # a client contact's out-of-office reply: they are away (gateway/inbound/away.py)
    return row_id


def keep_raw(mail: InboundMail) -> None:
    """The raw mail into the raw_mail table, inside the transaction that writes the mail's row (once per key:
    a second delivery of the same bytes, or a second try of the same mail, writes nothing)."""
    if mail.raw_in_database and mail.raw_key:
        _INSERT_RAW.execute((mail.raw_key, bytes(mail.raw)))


def keep_raw_in_files(mail: InboundMail) -> None:
    """When the database could not take a mail's row: its raw bytes go to the file store, under the key that
    the log names, so that nothing received is lost unseen. Never raises."""
    if not (mail.raw_in_database and mail.raw_key and mail.raw):
        return
    try:
        FileStore(mail.settings.effective_files_dir).put_bytes(mail.raw)
    except Exception:
        log.exception("could not keep the raw mail %s in the file store either", mail.raw_key)


def row_fields(mail: InboundMail, outcome: Outcome, *, reply_token: str | None) -> dict[str, Any]:
    return {
        "received_at": mail.received_at,
        "peer": _clip(mail.peer, 100),
        "mail_from": _clip(mail.mail_from, 1000),
        "rcpt_to": _clip(redact(mail.rcpt_to), 1000),
        # Only a hash of the address's token (or of the notification it answered): the log is no key.
        "reply_token": hash_secret(reply_token) if reply_token else None,
        "mail_message_id": _clip(mail.message_id, 1000) or None,
        "message_id_hash": mail.message_id_hash or None,
        "subject": _clip(mail.subject, 1000),
        "size": mail.size or len(mail.raw),
        "raw_key": mail.raw_key,
        "outcome": outcome.outcome,
        "reason": outcome.reason[:40],
        "smtp_code": outcome.code,
        "smtp_text": outcome.text,
        "outbox_email_id": mail.outbox_email_id,
        "auth": mail.auth[:300],
    }


ROW_FIELDS = ("received_at", "peer", "mail_from", "rcpt_to", "reply_token", "mail_message_id", "message_id_hash",
              "subject", "size", "raw_key", "outcome", "reason", "smtp_code", "smtp_text", "outbox_email_id",
              "auth")
_INSERT_ACCEPTED = PreparedInsert(InboundEmail, ROW_FIELDS, ignore_conflicts=True)
_INSERT_OUTCOME = PreparedInsert(InboundEmail, ROW_FIELDS)
_INSERT_RAW = PreparedInsert(RawMail, ("key", "data"), ignore_conflicts=True)
_LINK_MESSAGE = PreparedQuery(
    lambda message_id, row_id: InboundEmail.update(message=message_id).where(InboundEmail.id == row_id),
    "message_id", "row_id")


def _clip(text: str, limit: int) -> str:
    return clean(text or "")[:limit]


def reset_connection() -> None:
    """After a database error a connection may be unusable (PostgreSQL server restarted, connection lost,
    transaction left in error): close it, so the next mail on this thread opens a fresh one."""
    try:
        if not database.is_closed() and not database.is_connection_usable():
            database.close()
    except Exception:
        pass
