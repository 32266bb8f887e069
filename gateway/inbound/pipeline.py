"""The inbound pipeline: the steps a received mail goes through, in order, and the one place that decides
what its outcome is (Mailman's pipelines: a tuple of handlers and a small driving loop).

A step is `step(mail: InboundMail) -> None`: it fills fields of mail or raises an outcome from
gateway/errors.py (Dropped, Rejected, Deferred). outcome_of() is the one place that turns an exception
into an outcome: an unexpected error becomes Deferred (451, the raw mail is kept with its row).
Two drivers run the same STEPS: run() in one thread, with store_reply's own transaction (tools, tests),
and run_with_committer() for the SMTP server, which stores through the group commit
(committer.py). Both write the InboundEmail row of every outcome other than Accepted; an accepted
mail's row is written by store_reply in the same transaction as the post.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from peewee import DatabaseError, InterfaceError

from gateway.errors import Accepted, DatabaseBusy, Deferred, InboundError, Outcome, ProcessingTimeout, ReplyTooLong
from gateway.inbound.attachments import collect_attachments
from gateway.inbound.authenticate import authenticate_sender
from gateway.inbound.classify import drop_automatic_mail
from gateway.inbound.extract import reply_from_parts
from gateway.inbound.mail import InboundMail
from gateway.inbound.parse import parse_mail
from gateway.inbound.store import _reset_connection, record_outcome, store_reply
from storage.db import database
from storage.posting import MAX_TEXT_LENGTH, normalize_text
from storage.rendering import render_markdown, slow_to_render

if TYPE_CHECKING:
    from gateway.inbound.committer import GroupCommitter

log = logging.getLogger(__name__)


def extract_reply_text(mail: InboundMail) -> None:
    """Step: the new text of the reply, without quoted history and signature (gateway/inbound/extract.py)."""
    parsed = mail.parsed
    assert parsed is not None
    result = reply_from_parts(parsed.plain, parsed.html, parsed.header("subject"))
    mail.text, mail.trimmed = result.post_text.strip(), result.trimmed
    if len(mail.text) > MAX_TEXT_LENGTH:
        raise ReplyTooLong()


STEPS = (
    parse_mail,  # parse.py: keep the raw mail, read it with flanker (stdlib on broken MIME)
    drop_automatic_mail,  # classify.py: bounces, auto-replies, our own loop -> Dropped (before any refusal)
    authenticate_sender,  # authenticate.py: From must be the token's owner, still active and with access
    extract_reply_text,  # extract.py: the new text only, quotes and signature cut
    collect_attachments,  # attachments.py: files stored; nothing at all -> Rejected 550 5.6.0
    store_reply,  # store.py: one transaction: InboundEmail row + post_message(), once per thread
)
assert STEPS[-1] is store_reply  # run() and run_with_committer() store through their own transaction


def run(mail: InboundMail) -> Outcome:
    """Runs every step on mail and returns its outcome; never raises."""
    try:
        database.connect(reuse_if_open=True)
        run_steps(mail)
        if mail.time_left() <= 0:
            raise ProcessingTimeout(detail="before store_reply")
        store_reply(mail)
        return Accepted()
    except Exception as e:
        outcome = outcome_of(mail, e)
    record_outcome(mail, outcome)
    _log(mail, outcome)
    return outcome


async def run_with_committer(mail: InboundMail, committer: GroupCommitter,
                             run_in_thread: Callable[..., Awaitable[Any]], *, on_loop: bool) -> Outcome:
    """run() for the event loop, storing through the group commit (committer.py); never raises.

    on_loop: the steps run right here, listing their files instead of writing them (mail.defer_files),
    and the group commit writes those files durably before the transaction; else they run in one worker
    thread (run_in_thread) and write their files there. Either way store_reply, and the outcome row of a
    mail not posted, go to the group commit, which runs on the event loop on SQLite: a long Markdown text
    is rendered ahead in a worker thread (the renderer keeps the result), so that it never holds the loop.
    """
    mail.defer_files = on_loop
    try:
        if on_loop:
            run_steps(mail)
            if slow_to_render(normalize_text(mail.text)):
                await run_in_thread(_render_ahead, mail)
        else:
            await run_in_thread(_run_steps_in_thread, mail)
        if mail.time_left() <= 0:
            raise ProcessingTimeout(detail="before store_reply")
        await committer.store(mail)
        return Accepted()
    except Exception as e:
        outcome = outcome_of(mail, e)
    await committer.record(mail, outcome)
    _log(mail, outcome)
    return outcome


def run_steps(mail: InboundMail) -> None:
    """The steps before store_reply, in order, within the mail's time limit."""
    for step in STEPS[:-1]:
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
        _reset_connection()
        return DatabaseBusy(detail=str(error)[:200])
    log.error("unexpected error on mail from %s (raw mail kept as %s)", mail.mail_from or "<>",
              mail.raw_key or "not stored", exc_info=error)
    return Deferred(detail=f"{type(error).__name__}: {error}"[:200])


def _log(mail: InboundMail, outcome: Outcome) -> None:
    level = logging.WARNING if isinstance(outcome, Deferred) else logging.INFO
    log.log(level, "%s mail from %s to %s: %s%s", outcome.outcome, mail.mail_from or "<>", mail.rcpt_to,
            outcome.reason, f" ({outcome.detail})" if outcome.detail else "")

