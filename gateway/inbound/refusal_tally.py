"""Counts refusals at RCPT time in memory and writes them to the mail log in batches, from a thread of its
own: a flood of refused RCPTs costs a dictionary update each, never a database write on the event loop.
"""
from __future__ import annotations

import logging
import threading
import time

from gateway.addresses import parse_reply_address
from storage.models import utcnow
from storage.redaction import redact
from storage.refusals import Refusal, network_of, record_refusals
from storage.tokens import hash_secret

log = logging.getLogger(__name__)

FLUSH_EVERY = 2.0  # seconds between writes while refusals come in
MAX_PENDING = 5_000  # distinct keys held in memory; beyond, new keys are dropped until the next write


class RefusalTally:
    def __init__(self, flush_every: float = FLUSH_EVERY) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Refusal, list] = {}
        self._flush_every = flush_every
        self._thread: threading.Thread | None = None

    def note(self, peer: str, rcpt_to: str, reason: str, smtp_code: int, smtp_text: str) -> None:
        now = utcnow()
        address = (rcpt_to or "").strip().strip("<>").strip().lower()[:320]
        token = parse_reply_address(address)
        # Only a hint of the token is kept (storage/refusals.py), and its hash for the mail log.
        key = Refusal(network_of(peer), redact(address), reason, smtp_code, smtp_text,
                      hash_secret(token) if token else "")
        with self._lock:
            entry = self._pending.get(key)
            if entry is not None:
                entry[0] += 1
                entry[2] = now
            elif len(self._pending) < MAX_PENDING:
                self._pending[key] = [1, now, now]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rcpt-refusals", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._flush_every)
            if not self.flush():
                with self._lock:
                    if not self._pending:
                        self._thread = None
                        return

    def flush(self) -> int:
        """Writes what was counted; returns how many distinct refusals were written."""
        from peewee import DatabaseError, InterfaceError

        from storage.db import database

        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        rows = [(key, count, first, last) for key, (count, first, last) in batch.items()]
        for attempt in range(2):
            try:
                database.connect(reuse_if_open=True)
                record_refusals(rows)
                return len(rows)
            except (DatabaseError, InterfaceError) as e:  # a concurrent first insert: the second try updates it
                if attempt:
                    log.warning("could not record %d RCPT refusals: %s", len(rows), e)
            finally:
                if not database.is_closed():
                    database.close()
        return 0


tally = RefusalTally()
