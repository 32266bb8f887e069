"""The database side of live updates: the reads of a thread's new events for one viewer, run on a few
reader threads that keep their connections, and the per-audience cache of rendered events.

Each event row is joined through `visible_messages(viewer, thread)` before anything is rendered, so a
client's stream never carries an internal note. An event's HTML is drawn once per (message, audience) and
kept for a short while; the cache is only consulted for messages that visible_messages has just returned
for the asking viewer, and its key holds the viewer's role, so a client can never be handed a team
rendering (or an internal note).
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, request

from storage.db import database, tuples
from storage.mail_log import ThreadEvent
from storage.models import Message, Thread
from storage.sessions import WebSession
from storage.visibility import Viewer, can_open_thread, visible_messages
from web.context import LIVE_READ
from web.threadview import build_views, render_views

log = logging.getLogger(__name__)

BATCH = 100
READ_SLOTS = 8  # reader threads (and so database connections) per web process for live updates
READER_IDLE_SECONDS = 5  # a reader thread closes its connection after this long without work
RENDER_CACHE_SIZE = 2048  # rendered events kept per process
RENDER_CACHE_SECONDS = 30  # and for how long (the team's rendering shows the delivery state of the moment)

EventRow = tuple[int, int, str, "str | None"]  # (event id, message id, kind, HTML for the viewer or None)


@dataclass
class ReadResult:
    """What one read found: the events after the low mark, whether the viewer may still open the thread,
    and whether there were more events to catch up on than a stream may replay."""

    events: list[EventRow]
    still_open: bool = True
    too_many: bool = False


class Stopped(Exception):
    """Live updates are shutting down (the server stops)."""


class KeptConnection:
    """This thread's connection to the bound database, kept open from one use to the next (opening one
    costs more than a read) until close(). Follows a rebinding of the database proxy (tests bind a new
    database for each test)."""

    def __init__(self) -> None:
        self._db: Any = None

    def open(self) -> None:
        if self._db is not None and self._db is not database.obj:
            self.close()
        self._db = database.obj
        database.connect(reuse_if_open=True)

    def close(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        try:
            if not db.is_closed():
                db.close()
        except Exception:  # a connection that broke is gone either way
            log.debug("live updates: closing a database connection failed", exc_info=True)


class ReadPool:
    """Runs the live-update reads on at most `size` threads, which keep their connection open between
    reads and close it after `idle` seconds without work. A burst of wakes (a post to a thread with many
    open pages of different people) thus costs a handful of connections, and no stream holds one."""

    def __init__(self, size: int = READ_SLOTS, idle: float = READER_IDLE_SECONDS) -> None:
        self.size = size
        self.idle = idle
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle_threads = 0
        self._pending = 0  # jobs not taken by a thread yet
        self._stopped = False

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
        """fn(*args) on a reader thread with an open connection, as a future."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._stopped:
                raise Stopped()
            self._pending += 1
            if self._pending > self._idle_threads and self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._work, name="workrate-live-reader", daemon=True).start()
            self._jobs.put((fn, args, future))
        return future

    def run(self, fn: Any, *args: Any) -> Any:
        """fn(*args) on a reader thread; its result, or its exception raised here."""
        return self.submit(fn, *args).result()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for _ in range(self._threads):
                self._jobs.put(None)

    def _work(self) -> None:
        connection = KeptConnection()
        try:
            while True:
                with self._lock:
                    self._idle_threads += 1
                try:
                    job = self._jobs.get(timeout=self.idle)
                except queue.Empty:
                    connection.close()
                    job = self._jobs.get()
                finally:
                    with self._lock:
                        self._idle_threads -= 1
                        if job is not None:
                            self._pending -= 1
                if job is None:
                    return
                fn, args, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    connection.open()
                    future.set_result(fn(*args))
                except BaseException as e:  # handed to whoever asked
                    future.set_exception(e)
                    connection.close()
        finally:
            connection.close()
            with self._lock:
                self._threads -= 1


class RenderCache:
    """Rendered events by (message id, mode, role, whether the viewer wrote it, script root), for a short while.

    Only ever asked about messages that visible_messages returned for the asking viewer.
    """

    def __init__(self, size: int = RENDER_CACHE_SIZE, seconds: float = RENDER_CACHE_SECONDS) -> None:
        self.size = size
        self.seconds = seconds
        self._items: collections.OrderedDict[tuple[Any, ...], tuple[float, str]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> str | None:
        now = time.monotonic()
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < now:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[1]

    def put(self, key: tuple[Any, ...], html: str) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.seconds, html)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def read_events(app: Flask, renders: RenderCache, environ: dict[str, Any], viewer: Viewer, thread_id: int,
                low: int, mode: str, limit: int | None = None) -> ReadResult:
    """The thread's events after `low`, each with its HTML when the viewer may see its message, and whether
    the viewer may still open the thread. With `limit`, a catch-up of more than `limit` events the viewer
    may see answers too_many instead. Runs on a ReadPool thread, which holds the connection."""
    events: list[EventRow] = []
    visible_count = 0
    with app.request_context({**environ, LIVE_READ: True}):
        # When visible_messages returns every message, it has checked the viewer's access itself;
        # otherwise (or with nothing new) can_open_thread decides whether the stream goes on.
        all_visible = True
        scan_from = low
        while True:
            rows: list[Any] = list(ThreadEvent.select(ThreadEvent.id, ThreadEvent.message, ThreadEvent.kind)
                        .where((ThreadEvent.thread == thread_id) & (ThreadEvent.id > scan_from))
                        .order_by(ThreadEvent.id).limit(BATCH))
            if rows:
                wanted = {r.message_id for r in rows}
                # The one visibility rule decides what this viewer's stream may carry.
                visible: list[Any] = list(visible_messages(viewer, thread_id).where(Message.id.in_(wanted)))
                all_visible = all_visible and len(visible) == len(wanted)
                visible_ids = {m.id for m in visible}
                visible_count += sum(1 for r in rows if r.message_id in visible_ids)
                if limit is not None and visible_count > limit:
                    return ReadResult([], True, too_many=True)
                html = _rendered(visible, viewer, mode, renders)
                events.extend((r.id, r.message_id, r.kind, html.get(r.message_id)) for r in rows)
            if len(rows) < BATCH:
                break
            scan_from = rows[-1].id
        if (not events or not all_visible) and not can_open_thread(viewer, Thread.get_by_id(thread_id)):
            return ReadResult([], False)
    return ReadResult(events)


def _rendered(messages: list[Any], viewer: Viewer, mode: str, renders: RenderCache) -> dict[int, str]:
    """HTML of each message (all already returned by visible_messages for this viewer), drawn once per
    audience: the cache key holds everything in a rendering that depends on who looks."""
    script_root = request.script_root

    def key(m: Message) -> tuple[Any, ...]:
        # An edit or a delete changes the drawing: its time is part of the key.
        return (m.id, m.edited_at, m.deleted_at, mode, viewer.role, m.author_id == viewer.user_id, script_root)

    html: dict[int, str] = {}
    missing = []
    for m in messages:
        cached = renders.get(key(m))
        if cached is None:
            missing.append(m)
        else:
            html[m.id] = cached
    for view, m in zip(build_views(missing, viewer), missing, strict=True):
        html[view.id] = render_views([view], mode)
        renders.put(key(m), html[view.id])
    return html


def open_sessions(session_ids: set[int]) -> set[int]:
    """Those of the sessions that have not been ended (signed out, cut off). On a ReadPool thread."""
    return {int(row[0]) for row in tuples(WebSession.select(WebSession.id).where(
        WebSession.id.in_(sorted(session_ids)) & WebSession.ended_at.is_null()))}
