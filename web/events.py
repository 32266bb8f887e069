"""Blueprint "events": live updates of a thread as Server-Sent Events, read from the ThreadEvent log.

The database is the bus: whichever process posted the message (web, portal, CLI, gateway), its
ThreadEvent row is committed with it, and every web process reads the table. Each row is joined through
`visible_messages(viewer, thread)` before anything is sent, so a client's stream never carries an
internal note. One watcher thread per process polls the table about twice a second (one cheap query,
whatever the number of open streams) and wakes the streams that wait on it; a stream then reads its own
thread's new rows. No stream holds a database connection while it waits.

A stream ends after settings.live_stream_seconds; the browser's EventSource reconnects with
Last-Event-ID and resumes where it was.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from peewee import InterfaceError, OperationalError, fn

from storage.db import database
from storage.directory import thread_of
from storage.mail_log import ThreadEvent
from storage.models import Message, Workspace
from storage.visibility import Viewer, can_open_thread, visible_messages
from web import app_settings
from web.auth import login_required
from web.threadview import build_views, render_views

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__)

POLL_SECONDS = 0.5  # how often the watcher looks at the event log
HEARTBEAT_SECONDS = 10  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 1000  # what the browser waits before reconnecting
# Event ids come from a sequence, so on PostgreSQL two posts can commit out of id order. Rows are
# therefore re-read for this long after the cursor passed them, and sent once each.
SETTLE_SECONDS = 10
BATCH = 100
WATCHER_IDLE_SECONDS = 30  # the watcher thread stops after this long without any stream
# When a message arrives, every open stream wakes at once. At most this many read the database at the
# same time, so 200 streams never ask PostgreSQL for 200 connections (a read takes a few milliseconds).
READ_SLOTS = 8
read_slots = threading.BoundedSemaphore(READ_SLOTS)


class _Settling:
    """A cursor that also remembers where it was SETTLE_SECONDS ago (the low end of what to re-read)."""

    def __init__(self, start: int) -> None:
        self.cursor = start
        self.history: collections.deque[tuple[float, int]] = collections.deque([(time.monotonic(), start)])

    def advance(self, value: int) -> None:
        if value > self.cursor:
            self.cursor = value
            self.history.append((time.monotonic(), value))

    @property
    def low(self) -> int:
        cutoff = time.monotonic() - SETTLE_SECONDS
        while len(self.history) > 1 and self.history[1][0] <= cutoff:
            self.history.popleft()
        return self.history[0][1]


class EventWatcher:
    """Polls the event log for the whole process and wakes waiting streams when it changes."""

    def __init__(self, interval: float = POLL_SECONDS) -> None:
        self.interval = interval
        self._cond = threading.Condition()
        self._generation = 0
        self._signature: tuple[int, int, int] | None = None
        self._waiters = 0
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._settling = _Settling(0)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def generation(self) -> int:
        with self._cond:
            self._ensure_running()
            return self._generation

    def wait(self, generation: int, timeout: float) -> int:
        """Blocks until the log changed after `generation` (or timeout, or stop); returns the new generation."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._ensure_running()
            self._waiters += 1
            try:
                while not self._stopped and self._generation == generation:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                return self._generation
            finally:
                self._waiters -= 1

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _ensure_running(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="workrate-event-watcher", daemon=True)
            self._thread.start()

    def _poll(self) -> tuple[int, int, int]:
        """(low, count, newest) of the rows after the settling low mark: changes with every commit."""
        low = self._settling.low
        with database.connection_context():
            count, top = (ThreadEvent.select(fn.COUNT(ThreadEvent.id), fn.MAX(ThreadEvent.id))
                          .where(ThreadEvent.id > low).tuples().get())
        top = top or low
        self._settling.advance(top)
        return (low, count or 0, top)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            try:
                signature: tuple[int, int, int] | None = self._poll()
            except Exception:  # the database may be away for a moment; streams just wait longer
                log.warning("live updates: cannot read the event log", exc_info=True)
                signature = None
            with self._cond:
                if self._stopped:
                    return
                if signature is not None and signature != self._signature:
                    self._signature = signature
                    self._generation += 1
                    self._cond.notify_all()
                if self._waiters:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > WATCHER_IDLE_SECONDS:
                    self._thread = None
                    return
                self._cond.wait(self.interval)


def watcher_of(app: Flask) -> EventWatcher:
    watcher = app.extensions.get("workrate_events")
    if watcher is None:
        watcher = app.extensions.setdefault("workrate_events", EventWatcher())
    return watcher


def stop_watcher(app: Flask) -> None:
    watcher = app.extensions.get("workrate_events")
    if watcher is not None:
        watcher.stop()


def _start_cursor() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or ""
    raw = raw.strip()
    return int(raw) if raw.isdigit() and len(raw) < 19 else 0


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.route("/events/w/<slug>")
@login_required
def stream(slug: str) -> Any:
    """text/event-stream of the thread's new messages as the signed-in person may see them.

    :raise 404: unknown workspace, or one the viewer cannot open (no Messages access, another client's).
    """
    workspace = Workspace.get_or_none(Workspace.slug == slug.lower())
    if workspace is None:
        abort(404)
    thread = thread_of(workspace)
    if not can_open_thread(g.viewer, thread):
        abort(404)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = app_settings()
    mode = "team" if g.viewer.is_team else "portal"
    environ = dict(request.environ)
    body = _events(app, environ, g.viewer, thread.id, _start_cursor(), settings.live_stream_seconds, mode)
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"  # tells nginx not to buffer the stream
    return response


def _events(app: Flask, environ: dict[str, Any], viewer: Viewer, thread_id: int, start: int,
            seconds: float, mode: str) -> Iterator[str]:
    """The stream body. Runs after the request's own connection is closed; opens one per read."""
    watcher = watcher_of(app)
    deadline = time.monotonic() + seconds
    cursor = _Settling(start)
    sent: set[int] = set()
    yield f"retry: {RETRY_MS}\n: connected\n\n"
    last_write = time.monotonic()
    while True:
        generation = watcher.generation()
        try:
            chunks, still_open = _read_new(app, environ, viewer, thread_id, cursor, sent, mode)
        except (OperationalError, InterfaceError):
            # The database is away for a moment: end the stream; the browser reconnects and resumes.
            log.warning("live updates: cannot read the event log; closing the stream", exc_info=True)
            return
        for chunk in chunks:
            yield chunk
            last_write = time.monotonic()
        if not still_open:
            yield sse("closed", {"reason": "no access"})
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0 or watcher.stopped:
            return
        if watcher.wait(generation, min(remaining, HEARTBEAT_SECONDS)) == generation \
                and time.monotonic() - last_write >= HEARTBEAT_SECONDS:
            yield ": ping\n\n"
            last_write = time.monotonic()


def _read_new(app: Flask, environ: dict[str, Any], viewer: Viewer, thread_id: int, cursor: _Settling,
              sent: set[int], mode: str) -> tuple[list[str], bool]:
    """New events of the thread after the cursor (re-reading the settling window), as SSE chunks."""
    chunks: list[str] = []
    with read_slots, app.request_context(environ), database.connection_context():
        if not can_open_thread(viewer, _thread(thread_id)):
            return chunks, False
        scan_from = cursor.low
        while True:
            rows = list(ThreadEvent.select(ThreadEvent.id, ThreadEvent.message, ThreadEvent.kind)
                        .where((ThreadEvent.thread == thread_id) & (ThreadEvent.id > scan_from))
                        .order_by(ThreadEvent.id).limit(BATCH))
            fresh = [r for r in rows if r.id not in sent]
            if fresh:
                # The one visibility rule decides what this viewer's stream may carry.
                visible = {m.id: m for m in visible_messages(viewer, thread_id)
                           .where(Message.id.in_({r.message_id for r in fresh}))}
                views = {v.id: v for v in build_views(list(visible.values()), viewer)}
                for r in fresh:
                    sent.add(r.id)
                    cursor.advance(r.id)
                    view = views.get(r.message_id)
                    if view is not None:
                        chunks.append(sse(r.kind, {"message_id": view.id, "html": render_views([view], mode)},
                                          cursor.cursor))
            if len(rows) < BATCH:
                break
            scan_from = rows[-1].id
    low = cursor.low
    sent.difference_update({i for i in sent if i <= low})
    return chunks, True


def _thread(thread_id: int) -> Any:
    from storage.models import Thread

    return Thread.get_by_id(thread_id)
