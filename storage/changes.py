"""Change signals for live updates: "thread T has new events", "user U's access changed".

On PostgreSQL a signal is a NOTIFY on channel `workrate_live`, sent inside the writing transaction: the
database delivers it at COMMIT (never for a rolled-back transaction) to every process that LISTENs,
the writer's own included. On SQLite there is no such thing, so a signal is kept until the writing
transaction has committed (committed() is called after it) and then handed to this process's
listeners; other processes find the change by polling the event log (web/live/wakeups.py).

The payload is "t<thread id>" or "a<user id>": ids only, never content, so a signal says nothing that
the visibility rule has not yet decided on.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from storage.db import database, is_sqlite

log = logging.getLogger(__name__)

CHANNEL = "workrate_live"
THREAD = "t"
ACCESS = "a"

Listener = Callable[[str, int], None]
_listeners: list[Listener] = []
_listeners_lock = threading.Lock()
_pending = threading.local()  # signals of this thread's open transaction (SQLite)


def subscribe(listener: Listener) -> None:
    """listener(kind, id) is called (on the writer's thread) after each commit that signalled, in this process."""
    with _listeners_lock:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    with _listeners_lock:
        if listener in _listeners:
            _listeners.remove(listener)


def thread_changed(thread_id: int) -> None:
    """Call inside the transaction that wrote the thread's ThreadEvent rows."""
    _signal(THREAD, thread_id)


def access_changed(user_id: int) -> None:
    """Call inside the transaction that changed what the user may open (access, active, role)."""
    _signal(ACCESS, user_id)


def _signal(kind: str, ident: int) -> None:
    if is_sqlite():
        pending = getattr(_pending, "signals", None)
        if pending is None:
            pending = _pending.signals = set()
        pending.add((kind, int(ident)))
        if not database.in_transaction():
            committed()
        return
    # NOTIFY is transactional: delivered at COMMIT, deduplicated within the transaction.
    database.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, f"{kind}{int(ident)}"))


def committed() -> None:
    """After a writing transaction: hands the signals it made to this process's listeners (SQLite).
    Inside a still-open outer transaction it waits for a later call (other processes' polls see the
    commit in any case)."""
    pending = getattr(_pending, "signals", None)
    if not pending or database.in_transaction():
        return
    _pending.signals = set()
    with _listeners_lock:
        listeners = list(_listeners)
    for kind, ident in sorted(pending):
        for listener in listeners:
            try:
                listener(kind, ident)
            except Exception:  # a listener's trouble must never fail the post that committed
                log.warning("live updates: a change listener failed", exc_info=True)


def parse(payload: str) -> tuple[str, int] | None:
    """(kind, id) of a NOTIFY payload, None when it is not one of ours."""
    kind, digits = payload[:1], payload[1:]
    if kind in (THREAD, ACCESS) and digits.isdigit() and len(digits) < 19:
        return kind, int(digits)
    return None
