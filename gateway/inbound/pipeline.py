"""The inbound pipeline: the steps a received mail goes through, in order, the driver that runs them, and
the one place that decides what a mail's outcome is (Mailman's pipelines: a tuple of handlers and a small
driving loop).

A step is `step(mail: InboundMail) -> None`: it fills fields of mail or raises an outcome from
gateway/errors.py (Dropped, Rejected, Deferred). outcome_of() is the one place that turns an exception
into an outcome: an unexpected error becomes Deferred (451, the raw mail is kept with its row).
run() is the one driver (the SMTP handler's, and the tests'): after the steps, an accepted mail is stored,
and any other outcome recorded, through a Committer (gateway/smtp/committer.py's group commit).
`workrate trim` uses gateway/inbound/preview.py instead: what the gateway would post, storing nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from peewee import DatabaseError, InterfaceError

from gateway.errors import (
    Accepted,
    DatabaseBusy,
    Deferred,
    Held,
    InboundError,
    Outcome,
    ProcessingTimeout,
    ReplyTooLong,
)
from gateway.inbound.attachments import collect_attachments
from gateway.inbound.authenticate import authenticate_sender
from gateway.inbound.away import note_client_away, read_return_date
from gateway.inbound.classify import drop_automatic_mail
from gateway.inbound.extract import reply_from_parts
from gateway.inbound.files import WriteAtCommit
from gateway.inbound.hold import hold_if_needed
from gateway.inbound.learned_signatures import cut_from
from gateway.inbound.mail import InboundMail
from gateway.inbound.parse import parse_mail
from gateway.inbound.quota import check_storage_quota
from gateway.inbound.store import reset_connection
from gateway.inbound.strangers import keep_head_only, keeps_too_much
from storage.db import database
from storage.learned_signatures import learned_keys
from storage.posting import MAX_TEXT_LENGTH, normalize_text
from storage.redaction import redact
from storage.rendering import render_markdown, slow_to_render

log = logging.getLogger(__name__)


def extract_reply_text(mail: InboundMail) -> None:
    """Step: the new text of the reply, without quoted history and signature (gateway/inbound/extract.py),
    nor a signature learned from the sender's earlier mails."""
    parsed = mail.parsed
    assert parsed is not None
    result = reply_from_parts(parsed.plain, parsed.html, parsed.header("subject"))
    # A block the sender ended two earlier mails with is their signature (learned_signatures.py).
    result, blocks = cut_from(result, learned_keys(mail.from_address))
    mail.text, mail.trimmed = result.post_text.strip(), result.trimmed
    mail.signature_blocks = [(block.key, block.text) for block in blocks]
    if len(mail.text) > MAX_TEXT_LENGTH:
        raise ReplyTooLong()


STEPS = (
    parse_mail,  # parse.py: keep the raw mail, read it with flanker (stdlib on broken MIME)
    drop_automatic_mail,  # classify.py: bounces, auto-replies, our own loop -> Dropped (before any refusal)
    note_client_away,  # away.py: an out-of-office reply -> Dropped; from a client contact, noted as away
    authenticate_sender,  # authenticate.py: From must be the token's owner, still active and with access
    extract_reply_text,  # extract.py: the new text only, quotes and signature cut
    collect_attachments,  # attachments.py: files stored; nothing at all -> Rejected 550 5.6.0
    check_storage_quota,  # quota.py: over a person's or workspace's quota -> Rejected 552 5.2.2, files gone
    hold_if_needed,  # hold.py: unconfirmed sender or a mail loop -> Held (stored, answered 250, not posted)
)
# Then the committer stores the reply (store.py store_rows: InboundEmail row + post_message(), once per
# thread, in one transaction) or records the outcome (store.py record_row).


class Committer(Protocol):
    """Where run() stores a mail; gateway/smtp/committer.py's GroupCommitter is the one there is."""

    async def store(self, mail: InboundMail) -> None: ...

    async def record(self, mail: InboundMail, outcome: Outcome) -> None: ...

    async def hold(self, mail: InboundMail, outcome: Held) -> None: ...


async def run(mail: InboundMail, committer: Committer, run_in_thread: Callable[..., Awaitable[Any]], *,
              on_loop: bool) -> Outcome:
    """Runs every step on mail, stores it through committer and returns its outcome; never raises.

    on_loop: the steps run right here, and their files go to the committer, which writes them durably
    before its transaction (mail.files: WriteAtCommit); else they run in one worker thread (run_in_thread)
    and write their files there. Either way the mail's rows are written by the committer. A long Markdown
    text is rendered ahead in a worker thread (the renderer keeps the result), so that storing it, which
    may run on the event loop, never holds the loop.
    """
    # DNS lookups (SENDER_CHECKS = dns) must never hold the event loop: such mails go to a thread.
    on_loop = on_loop and mail.settings.sender_checks == "off"
    try:
        if on_loop:
            mail.files = WriteAtCommit(mail.files.store)
            run_steps(mail)
            if slow_to_render(normalize_text(mail.text)):
                await run_in_thread(_render_ahead, mail)
        else:
            await run_in_thread(_run_steps_in_thread, mail)
        if mail.time_left() <= 0:
            raise ProcessingTimeout(detail="before storing")
        await committer.store(mail)
        return Accepted()
    except Exception as e:
        outcome = outcome_of(mail, e)
    if isinstance(outcome, Held):
        try:  # a held reply is answered 250 only once it is stored, as a posted one is
            if keeps_too_much(mail, outcome):  # held for confirmation: its text and files are kept apart
                await run_in_thread(keep_head_only, mail)
            await committer.hold(mail, outcome)
            _log(mail, outcome)
            return outcome
        except Exception as e:
            outcome = outcome_of(mail, e)
    if keeps_too_much(mail, outcome):
        await run_in_thread(keep_head_only, mail)
    if mail.away_user_ids:  # a client contact's out-of-office reply (away.py)
        await run_in_thread(read_return_date, mail, outcome)
    await committer.record(mail, outcome)
    _log(mail, outcome)
    return outcome


def run_steps(mail: InboundMail) -> None:
    """The steps, in order, within the mail's time limit."""
    for step in STEPS:
        if mail.time_left() <= 0:
            raise ProcessingTimeout(detail=f"before {step.__name__}")
        step(mail)


def _run_steps_in_thread(mail: InboundMail) -> None:
    database.connect(reuse_if_open=True)
    run_steps(mail)
    _render_ahead(mail)


def _render_ahead(mail: InboundMail) -> None:
    """Renders the post's text now (cached by storage/rendering.py) when that is slow."""
    text = normalize_text(mail.text)
    if slow_to_render(text):
        render_markdown(text)


def outcome_of(mail: InboundMail, error: Exception) -> Outcome:
    """The outcome a step's exception stands for: the one place that turns errors into SMTP answers."""
    if isinstance(error, InboundError):
        return error
    if isinstance(error, (DatabaseError, InterfaceError)):
        # "database is locked", a lost PostgreSQL connection, a serialization failure: try again later.
        log.warning("database error on mail from %s (raw mail kept as %s): %s: %s", mail.mail_from or "<>",
                    mail.raw_key or "not stored", type(error).__name__, error)
        reset_connection()
        return DatabaseBusy(detail=str(error)[:200])
    log.error("unexpected error on mail from %s (raw mail kept as %s)", mail.mail_from or "<>",
              mail.raw_key or "not stored", exc_info=error)
    return Deferred(detail=f"{type(error).__name__}: {error}"[:200])


def _log(mail: InboundMail, outcome: Outcome) -> None:
    level = logging.WARNING if isinstance(outcome, Deferred) else logging.INFO
    log.log(level, "%s mail from %s to %s: %s%s%s", outcome.outcome, mail.mail_from or "<>", redact(mail.rcpt_to),
            outcome.reason, f" ({outcome.detail})" if outcome.detail else "",
            f" [{mail.auth}]" if mail.auth and mail.auth not in outcome.detail else "")

