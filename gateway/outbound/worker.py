"""OutboxWorker: claim due outbox rows → render → send → mark, with back-off; stops cleanly.

It runs on the same asyncio loop as the SMTP gateway (cli/processes.py), so it never blocks that loop:
every database step runs in the worker's own single database thread (one connection per step, returned
at once), and SMTP goes through aiosmtplib.

Delivery is at least once. A row is marked sent only after the relay's 250; a crash between that 250 and
the commit of mark_sent() sends that email again once its lease expires (with the same Message-ID).
That window, plus a send that outlives its lease, is the only way an email goes out twice; several
workers never claim the same row while its lease holds.

When a notification is sent is decided here, at send time: with NOTIFY_DELAY set (the operator's override,
0 = at once) every due batch leaves; unset, each person's timing (storage/notify_schedule.py) holds the
batch until its time, and what they have read meanwhile is left out, so that nothing already seen is emailed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from config import Settings
from gateway.addresses import format_bounce_address
from gateway.outbound import dkim, transport
from gateway.outbound.login_requests import expand_login_request
from gateway.outbound.render import (
    NothingVisible,
    header_block,
    render_correction,
    render_notification,
    stored_mail,
    visible_rows,
)
from storage import notify_schedule, outbox
from storage.db import connection
from storage.file_removals import sweep_file_removals
from storage.held import purge_expired_held
from storage.link_mail import EML_FOLDER, link_mail_name, purge_spent_link_mail
from storage.mail_log import CORRECTION, LOGIN_LINK, LOGIN_REQUEST, NOTIFICATION, OutboxEmail
from storage.models import User, utcnow
from storage.rate_limits import purge_old_counts
from storage.retention import purge_refused_raw_mail

log = logging.getLogger(__name__)

T = TypeVar("T")

POLL_INTERVAL = 0.5  # seconds between two looks at the outbox when nothing was due
ERROR_PAUSE = 5.0  # seconds to wait after a round failed (database unreachable, …)
BATCH_SIZE = 20  # emails claimed per round
HOUSEKEEPING_INTERVAL = 60.0  # seconds between two cleanups (spent secret link files, expired raw mail,
# files of deleted messages)


@dataclass(frozen=True)
class Prepared:
    """A rendered email, saved on its rows, ready for the relay."""

    row_ids: tuple[int, ...]
    raw: bytes
    envelope_from: str
    to_address: str
    eml_name: str | None = None  # for a secret link's email written as a file: named after the link


class OutboxWorker:
    """Drains the outbox. `run(stop)` until stop is set; `run_once()` for one round (tests, CLI)."""

    def __init__(self, settings: Settings, *, worker_id: str | None = None, batch_size: int = BATCH_SIZE,
                 lease_seconds: float = outbox.DEFAULT_LEASE_SECONDS, poll_interval: float = POLL_INTERVAL,
                 retry_first: float = outbox.RETRY_FIRST_DELAY, retry_max: float = outbox.RETRY_MAX_DELAY,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.tls_context = tls_context
        self._executor: ThreadPoolExecutor | None = None
        self._next_housekeeping = 0.0  # loop time; 0: at the first round
        self.defaults = notify_schedule.Defaults(unread_minutes=settings.notify_unread_minutes,
                                                 team_quiet_hours=settings.team_quiet_hours)

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sends due emails until `stop` is set; then finishes the email in flight and returns."""
        log.info("outbox worker %s started (%s)", self.worker_id, self._relay_description())
        try:
            while not stop.is_set():
                try:
                    handled = await self._round(stop, None)
                    pause = 0.0 if handled >= self.batch_size else self.poll_interval
                except Exception:
                    log.exception("outbox worker round failed; trying again in %.0f s", ERROR_PAUSE)
                    pause = ERROR_PAUSE
                if pause and not stop.is_set():
                    try:
                        await asyncio.wait_for(stop.wait(), pause)
                    except TimeoutError:
                        pass
        finally:
            self.close()
            log.info("outbox worker %s stopped", self.worker_id)

    async def run_once(self, now: dt.datetime | None = None) -> int:
        """Handles what is due now (or at `now`); returns how many emails were sent, failed or skipped."""
        return await self._round(None, now)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- one round ------------------------------------------------------------------------------------

    async def _round(self, stop: asyncio.Event | None, now: dt.datetime | None) -> int:
        await self._housekeeping(now)
        batches = await self._db(outbox.claim_due, now or utcnow(), self.batch_size, self.worker_id,
                                 self.lease_seconds)
        handled = 0
        waiting: set[int] = set()  # recipients whose older email failed in this round: keep their order
        for i, batch in enumerate(batches):
            if stop is not None and stop.is_set():
                await self._db(outbox.release, [rid for b in batches[i:] for rid in b.row_ids])
                break
            if batch.kind == NOTIFICATION and batch.recipient_id in waiting:
                await self._db(outbox.release, batch)
                continue
            if not await self._deliver(batch, now):
                waiting.add(batch.recipient_id)  # type: ignore[arg-type]
            handled += 1
        return handled

    async def _housekeeping(self, now: dt.datetime | None) -> None:
        """Every HOUSEKEEPING_INTERVAL: deletes what must not be kept (never fails the round)."""
        clock = asyncio.get_running_loop().time()
        if now is None and clock < self._next_housekeeping:
            return
        self._next_housekeeping = clock + HOUSEKEEPING_INTERVAL
        try:
            if not self.settings.relay_url:
                await self._db(purge_spent_link_mail, self.settings.data_dir, now)  # storage/link_mail.py
            await self._db(purge_refused_raw_mail, self.settings.effective_files_dir, self.settings.refused_mail_days,
                           now)
            await self._db(sweep_file_removals, self.settings.effective_files_dir)  # files' own clock
            await self._db(purge_expired_held, self.settings.effective_files_dir, now)  # storage/held.py
            await self._db(purge_old_counts, now)  # storage/rate_limits.py
        except Exception:
            log.exception("outbox worker housekeeping failed; trying again in %.0f s", HOUSEKEEPING_INTERVAL)

    async def _deliver(self, batch: outbox.Batch, now: dt.datetime | None) -> bool:
        """Sends one batch and marks it; False when it must be tried again later."""
        try:
            prepared = await self._db(self._prepare, batch, now)
        except Exception as e:
            log.exception("could not render outbox email #%d", batch.lead_id)
            await self._retry(batch, f"could not render the email: {type(e).__name__}: {e}", now)
            return False
        if prepared is None:
            return True
        try:
            where = await transport.send(prepared.raw, prepared.envelope_from, [prepared.to_address], self.settings,
                                         tls_context=self.tls_context, eml_name=prepared.eml_name)
        except transport.PermanentFailure as e:
            await self._db(outbox.mark_failed, prepared.row_ids, e.text)
            log.warning("outbox email #%d to %s failed for good: %s", batch.lead_id, prepared.to_address, e.text)
            return True
        except transport.TemporaryFailure as e:
            await self._retry(batch, e.text, now, prepared.row_ids)
            return False
        await self._db(outbox.mark_sent, prepared.row_ids)
        log.info("outbox email #%d (%d message%s) to %s sent: %s", batch.lead_id, len(prepared.row_ids),
                 "" if len(prepared.row_ids) == 1 else "s", prepared.to_address, where)
        return True

    async def _retry(self, batch: outbox.Batch, error: str, now: dt.datetime | None,
                     row_ids: tuple[int, ...] | None = None) -> None:
        at = now or utcnow()
        delay = outbox.retry_delay(batch.attempts + 1, self.retry_first, self.retry_max)
        status = await self._db(outbox.mark_retry, row_ids or batch, error, at + dt.timedelta(seconds=delay), at)
        if status == outbox.PENDING:
            log.warning("outbox email #%d to %s not sent (%s); next try in %.3g s", batch.lead_id,
                        batch.to_address, error, delay)
        else:
            log.error("outbox email #%d to %s given up: %s", batch.lead_id, batch.to_address, error)

    def _prepare(self, batch: outbox.Batch, now: dt.datetime | None) -> Prepared | None:
        """In the database thread: re-check, render, sign and save the email of a batch (None: nothing to send)."""
        rows = outbox.load_rows(batch)
        if not rows:
            return None
        if batch.kind == LOGIN_REQUEST:
            expanded = expand_login_request(rows[0], self.settings)
            if expanded is None:
                return None
            rows = [expanded[0]]
            batch = dataclasses.replace(batch, kind=LOGIN_LINK, recipient_id=expanded[1].id)
        recipient = User.get_or_none(User.id == batch.recipient_id) if batch.recipient_id else None
        if batch.kind == NOTIFICATION:
            reason = "recipient no longer exists" if recipient is None else \
                outbox.recipient_block_reason(recipient, batch.thread_id)
            if reason or recipient is None:
                outbox.mark_skipped(rows, reason)
                log.info("outbox email #%d to %s skipped: %s", batch.lead_id, batch.to_address, reason)
                return None
            digest_since = None  # a daily digest says so at its top
            if self.settings.notify_delay is None:
                rows, digest_since = self._when_personal(batch, rows, recipient, now or utcnow())
                if not rows:
                    return None
            visible, hidden = visible_rows(rows)
            if hidden:
                outbox.mark_skipped(hidden, "the recipient can no longer see the message")
                log.info("outbox rows %s skipped: %s can no longer see their messages",
                         [r.id for r in hidden], batch.to_address)
            if not visible:
                return None
            try:
                mail = render_notification(visible, self.settings, now, digest_since=digest_since)
            except NothingVisible as e:
                outbox.mark_skipped(visible, str(e))
                return None
        elif batch.kind == CORRECTION:
            visible = rows[:1]
            reason = "recipient no longer exists" if recipient is None else \
                outbox.recipient_block_reason(recipient, batch.thread_id)
            if reason:  # the same rule as notifications: muted and unsubscribed people get no correction
                outbox.mark_skipped(visible, reason)
                return None
            try:
                mail = render_correction(visible[0], self.settings, now)
            except NothingVisible as e:
                outbox.mark_skipped(visible, str(e))
                return None
        else:
            visible = rows[:1]
            reason = "recipient no longer exists" if recipient is None else \
                outbox.recipient_block_reason(recipient, batch.thread_id)
            if reason:  # the same rule as notifications: muted and unsubscribed people get no correction
                outbox.mark_skipped(visible, reason)
                return None
            mail = stored_mail(visible[0], self.settings, now)
        lead = visible[0]
        bounce_token = lead.bounce_token or outbox.new_bounce_token()
        raw = dkim.sign(transport.to_bytes(mail), self.settings)
        text_part = mail.get_body(("plain",))
        html_part = mail.get_body(("html",))
        outbox.save_rendered(
            visible, mail_message_id=str(mail["Message-ID"]), bounce_token=bounce_token, subject=str(mail["Subject"]),
            headers=header_block(mail), body_text=text_part.get_content() if text_part else "",
            body_html=html_part.get_content() if html_part else "")
        return Prepared(row_ids=tuple(r.id for r in visible), raw=raw,
                        envelope_from=format_bounce_address(bounce_token, self.settings.reply_domain),
                        to_address=lead.to_address,
                        eml_name=link_mail_name(batch.kind, lead.body_text))

    def _when_personal(self, batch: outbox.Batch, rows: list[OutboxEmail], recipient: User,
                       now: dt.datetime) -> tuple[list[OutboxEmail], dt.datetime | None]:
        """The person's own timing decides (NOTIFY_DELAY unset): what they have read since is left out, and
        the rest waits for their time (their N minutes, digest hour, quiet hours). Returns what may leave now
        and, for a digest, the digest time it covers messages since."""
        read = outbox.already_read(rows)
        if read:
            outbox.mark_skipped(read, "read before the email went out")
            log.info("outbox rows %s skipped: %s has read their messages", [r.id for r in read], batch.to_address)
            rows = [r for r in rows if r not in read]
        if not rows or batch.thread_id is None:
            return rows, None
        timing = notify_schedule.timing_for(recipient, batch.thread_id, self.defaults)
        first = min(r.created_at for r in rows)
        at, held_for = notify_schedule.plan(timing, first, now)
        if at > now:
            outbox.hold(batch, at, now, held_for=held_for)
            log.debug("outbox email #%d to %s waits until %s UTC (%s)", batch.lead_id, batch.to_address,
                      at.isoformat(timespec="minutes"), timing.mode)
            return [], None
        return rows, notify_schedule.digest_since(timing, first)

    # -- helpers --------------------------------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn in this worker's database thread, inside a connection opened for it and closed after."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")

        def job() -> T:
            with connection():
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def _relay_description(self) -> str:
        if not self.settings.relay_url:
            return f"no relay: writing .eml files to {self.settings.data_dir}/{EML_FOLDER}"
        relay = transport.Relay.parse(self.settings.relay_url)
        return f"relay {relay.scheme}://{relay.host}:{relay.port}" + (" with login" if relay.username else "")


__all__ = ["OutboxWorker"]
