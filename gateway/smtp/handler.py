"""GatewayHandler: aiosmtpd's hooks for the gateway, kept thin.

RCPT checks the address (gateway/inbound/authenticate.py); DATA runs the pipeline
(gateway/inbound/pipeline.py), which stores through the group commit (committer.py), and answers only
after the commit. This package is the only place that writes SMTP reply text; it takes it from the
outcome objects of gateway/errors.py.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from peewee import DatabaseError, InterfaceError

from config import Settings
from gateway.errors import (
    DatabaseBusy,
    Deferred,
    InboundError,
    Outcome,
    ProcessingTimeout,
    TooManyRecipients,
)
from gateway.inbound import pipeline
from gateway.inbound.authenticate import resolve_recipient
from gateway.inbound.mail import InboundMail, Recipient
from gateway.inbound.refusal_tally import tally as refusal_tally
from gateway.inbound.store import record_outcome, reset_connection
from gateway.smtp.committer import GroupCommitter
from gateway.smtp.threads import Gate, WorkerThreads, grace_seconds, steps_on_loop
from storage.db import database

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 50  # per mail; a reply goes to one address, a reply-all to a few
RCPT_OK = "250 2.1.5 OK"


class GatewayHandler:
    """aiosmtpd handler: RCPT and DATA hooks that run the pipeline and store through the group commit."""

    def __init__(self, settings: Settings, workers: WorkerThreads, gate: Gate, committer: GroupCommitter) -> None:
        self.settings = settings
        self.workers = workers
        self.gate = gate
        self.committer = committer
        # SQLite: RCPT is one indexed read, which never waits for writers (WAL); a hand-off to a worker
        # thread and back would cost more than the read. (A PostgreSQL server may be slow to answer.)
        self._rcpt_on_loop = not settings.is_postgres

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.workers, fn, *args)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands in order anyway; say so. There is no AUTH: nobody logs in here.
        lines = [line for line in responses if not line.startswith("250-AUTH")]
        lines.insert(len(lines) - 1, "250-PIPELINING")
        return lines

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TooManyRecipients().smtp_reply
        try:
            if self._rcpt_on_loop:
                recipient = self._resolve(address)
            else:
                limit = self.settings.smtp_processing_timeout
                recipient = await asyncio.wait_for(self.in_thread(self._resolve, address),
                                                   limit + grace_seconds(limit))
        except TimeoutError:
            log.warning("checking RCPT %r took too long; answered 451", address[:200])
            return ProcessingTimeout().smtp_reply
        except InboundError as e:
            log.info("refused RCPT %r from %s: %s", address[:200], _peer(session), e.reason)
            peer = getattr(session, "peer", None)
            refusal_tally.note(str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or ""), address,
                               e.reason, e.code, e.text)  # for the mail log, counted, written in batches
            return e.smtp_reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        recipients: list[Recipient] | None = getattr(envelope, "workrate_recipients", None)
        if recipients is None:
            recipients = []
            envelope.workrate_recipients = recipients  # type: ignore[attr-defined]  # our own attribute
        recipients.append(recipient)
        return RCPT_OK

    def _resolve(self, address: str) -> Recipient:
        """The recipient, or an InboundError to answer with (451 on database trouble)."""
        try:
            database.connect(reuse_if_open=True)
            return resolve_recipient(address, self.settings)
        except InboundError:
            raise
        except (DatabaseError, InterfaceError) as e:
            log.warning("database error checking RCPT %r: %s", address[:200], e)
            reset_connection()
            raise DatabaseBusy() from e
        except Exception as e:
            log.exception("unexpected error checking RCPT %r", address[:200])
            raise Deferred() from e

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        limit = self.settings.smtp_processing_timeout
        mail = InboundMail(
            raw=envelope.original_content or b"", settings=self.settings,
            mail_from=str(envelope.mail_from or ""), recipients=list(getattr(envelope, "workrate_recipients", [])),
            peer=_peer(session), deadline=time.monotonic() + limit)
        self.gate.in_flight += 1
        try:
            # Shielded: past the time limit the handler answers 451 but the mail's attempt goes on and
            # records its outcome, as a worker thread would.
            self.committer.expect(mail)
            work = asyncio.shield(pipeline.run(mail, self.committer, self.in_thread, on_loop=steps_on_loop(mail)))
            outcome = await asyncio.wait_for(work, limit + grace_seconds(limit))
        except TimeoutError:
            log.warning("mail from %s to %s took longer than %ss; answered 451 (raw mail kept as %s)",
                        mail.mail_from or "<>", mail.rcpt_to, limit, mail.raw_key or "not yet stored")
            outcome = ProcessingTimeout()
        finally:
            self.gate.in_flight -= 1
            self.committer.forget(mail)
        return outcome.smtp_reply

    async def record_unread(self, session: Session | None, envelope: Envelope | None, outcome: Outcome) -> None:
        """Records a DATA transaction refused while it was read (too large, line too long)."""
        mail = InboundMail(
            raw=b"", settings=self.settings, mail_from=str(getattr(envelope, "mail_from", "") or ""),
            recipients=list(getattr(envelope, "workrate_recipients", [])), peer=_peer(session))
        try:
            await self.in_thread(record_outcome, mail, outcome)
        except Exception:
            log.exception("could not record a refused mail")

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer "500 Error: (ExceptionType) text": permanent, and it shows internals.
        log.exception("SMTP session error: %s: %s", type(error).__name__, error)
        return Deferred().smtp_reply


def _peer(session: Session | None) -> str:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")
