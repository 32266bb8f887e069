"""Blueprint "events": live updates of a thread as Server-Sent Events, read from the ThreadEvent log.

The database is the bus: whichever process posted the message (web, portal, CLI, gateway), its
ThreadEvent row is committed with it, and every web process reads the table. Each row is joined through
`visible_messages(viewer, thread)` before anything is sent, so a client's stream never carries an
internal note. One watcher thread per process polls the table about twice a second (one cheap query,
whatever the number of open streams), learns which threads have new rows and wakes only the streams of
those threads; a woken stream then reads its own thread's new rows. No stream holds a database
connection while it waits: the reads run on a few reader threads (ReadPool) that keep their connections
between reads, as the watcher keeps its own.

Work is shared where the visibility rule allows it. Streams of the same viewer on the same thread, woken
by the same change, read once (SharedReads). Streams of different viewers each run visible_messages for
their own viewer, but an event's HTML is drawn once per (message, audience) and kept for a short while
in a RenderCache; the cache is only consulted for messages that visible_messages has just returned for
the asking viewer, and its key holds the viewer's role, so a client's stream can never be handed a team
rendering (or an internal note).

A stream ends after settings.live_stream_seconds; the browser's EventSource reconnects with
Last-Event-ID and resumes where it was.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from peewee import Case, InterfaceError, OperationalError, fn

from storage.db import database
from storage.directory import thread_of
from storage.mail_log import ThreadEvent
from storage.models import Message, Workspace
from storage.visibility import Viewer, can_open_thread, visible_messages
from web.auth import login_required
from web.context import LIVE_READ, app_settings
from web.threadview import build_views, render_views

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__)

POLL_SECONDS = 0.5  # how often the watcher looks at the event log
HEARTBEAT_SECONDS = 10  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 1000  # what the browser waits before reconnecting
# Event ids come from a sequence, so on PostgreSQL two posts can commit out of id order. Rows are
# therefore re-read for this long after the cursor passed them, and sent once each.
SETTLE_SECONDS = 10
# When the watcher starts, it also watches this many ids below the newest row, so that transactions
# which took their ids before it started and commit just after are still seen.
START_MARGIN = 1000
BATCH = 100
WATCHER_IDLE_SECONDS = 30  # the watcher thread stops after this long without any stream
# Streams opening at once (a reconnect burst) check access with at most this many connections at a time
# (web/__init__.py), and the streams' reads after that run on this many reader threads (ReadPool).
READ_SLOTS = 8
read_slots = threading.BoundedSemaphore(READ_SLOTS)
READER_IDLE_SECONDS = 5  # a reader thread closes its connection after this long without work
RENDER_CACHE_SIZE = 2048  # rendered events kept per process
RENDER_CACHE_SECONDS = 30  # and for how long (the team's rendering shows the delivery state of the moment)
SHARE_SECONDS = 2.0  # how long one read of a thread may serve the same viewer's other streams
FOLLOW_WAIT_SECONDS = 10  # a stream waits this long at most for another stream's read, then reads itself
SHARED_READS_KEPT = 1024  # above this many (thread, viewer) entries, old ones are dropped
SHARED_EVENTS_KEPT = 5 * BATCH  # longer answers (a stream resuming from far back) are not kept for others

Token = tuple[int, int]
EventRow = tuple[int, int, str, "str | None"]  # (event id, message id, kind, HTML for the viewer or None)


class _Settling:
    """A cursor that also remembers where it was `settle` seconds ago (the low end of what to re-read)."""

    def __init__(self, start: int, settle: float = SETTLE_SECONDS) -> None:
        self.cursor = start
        self.settle = settle
        self.history: collections.deque[tuple[float, int]] = collections.deque([(time.monotonic(), start)])

    def advance(self, value: int) -> None:
        if value > self.cursor:
            self.cursor = value
            self.history.append((time.monotonic(), value))

    @property
    def low(self) -> int:
        cutoff = time.monotonic() - self.settle
        while len(self.history) > 1 and self.history[1][0] <= cutoff:
            self.history.popleft()
        return self.history[0][1]


class EventWatcher:
    """Polls the event log for the whole process and wakes the streams of the threads that changed.

    Each poll is one query over the rows after the previous poll's low mark (`since`), grouped by thread:
    the number of rows after `since`, the number after the current low mark, and the newest id. The first
    count is compared with the second count of the previous poll: both count the rows after the same
    mark, so they differ exactly when rows were committed in between, including rows that commit late
    with an id below the newest one (PostgreSQL sequences). Moving the low mark alone wakes nobody.
    """

    def __init__(self, interval: float = POLL_SECONDS, settle: float = SETTLE_SECONDS) -> None:
        self.interval = interval
        self.settle = settle
        self._lock = threading.Lock()
        self._tick = threading.Condition(self._lock)  # the watcher's own sleep between polls
        self._conds: dict[int, threading.Condition] = {}  # thread id → where its streams wait
        self._waiters: dict[int, int] = {}
        self._epoch = 0  # moves when every stream should look (first poll after a start, stop)
        self._generations: dict[int, int] = {}  # thread id → value of _counter at its last change
        self._counter = itertools.count(1)
        self._counts: dict[int, tuple[int, int]] = {}  # thread id → (rows after the low mark, newest id)
        self._since: int | None = None  # the low mark of the previous poll
        self._settling: _Settling | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.polls = 0  # for tests and benchmarks: polls done, and threads woken in all
        self.wakeups = 0

    @property
    def stopped(self) -> bool:
        return self._stopped

    def token(self, thread_id: int) -> Token:
        """What wait() compares against: take it before reading, then wait with it."""
        with self._lock:
            self._ensure_running()
            return self._token(thread_id)

    def _token(self, thread_id: int) -> Token:
        return (self._epoch, self._generations.get(thread_id, 0))

    def wait(self, thread_id: int, token: Token, timeout: float) -> Token:
        """Blocks until the thread's events changed after `token` (or timeout, or stop); returns the new token."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._ensure_running()
            cond = self._conds.get(thread_id)
            if cond is None:
                cond = self._conds[thread_id] = threading.Condition(self._lock)
            self._waiters[thread_id] = self._waiters.get(thread_id, 0) + 1
            try:
                while not self._stopped and self._token(thread_id) == token:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    cond.wait(remaining)
                return self._token(thread_id)
            finally:
                self._waiters[thread_id] -= 1
                if not self._waiters[thread_id]:
                    del self._waiters[thread_id]
                    del self._conds[thread_id]

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._tick.notify_all()
            for cond in self._conds.values():
                cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _ensure_running(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="workrate-event-watcher", daemon=True)
            self._thread.start()

    def _poll(self) -> set[int] | None:
        """The threads with rows committed since the previous poll; None on the first poll (look everywhere)."""
        if self._settling is None:
            newest = ThreadEvent.select(fn.MAX(ThreadEvent.id)).scalar() or 0
            self._settling = _Settling(max(0, newest - START_MARGIN), self.settle)
        low = self._settling.low
        first = self._since is None
        since = low if self._since is None else self._since
        after_low = fn.SUM(Case(None, [(ThreadEvent.id > low, 1)], 0))
        rows = list(ThreadEvent.select(ThreadEvent.thread, fn.COUNT(ThreadEvent.id), after_low,
                                       fn.MAX(ThreadEvent.id))
                    .where(ThreadEvent.id > since).group_by(ThreadEvent.thread).tuples())
        changed = {t for t, count, _, top in rows if self._counts.get(t, (0, 0)) != (count, top)}
        changed |= set(self._counts) - {t for t, _, _, _ in rows}  # rows gone (a deleted thread): look again
        self._counts = {t: (int(above), top) for t, _, above, top in rows if above}
        self._since = low
        if rows:
            self._settling.advance(max(top for _, _, _, top in rows))
        return None if first else changed

    def _run(self) -> None:
        connection = _KeptConnection()
        try:
            self._loop(connection)
        finally:
            connection.close()

    def _loop(self, connection: _KeptConnection) -> None:
        idle_since = time.monotonic()
        while True:
            try:
                connection.open()
                changed: set[int] | None = self._poll()
                failed = False
            except Exception:  # the database may be away for a moment; streams just wait longer
                log.warning("live updates: cannot read the event log", exc_info=True)
                connection.close()
                changed, failed = set(), True
            with self._lock:
                if self._stopped:
                    return
                self.polls += 1
                if changed is None:
                    self._epoch += 1
                    for cond in self._conds.values():
                        cond.notify_all()
                elif not failed:
                    for thread_id in changed:
                        self._generations[thread_id] = next(self._counter)
                        self.wakeups += 1
                        cond = self._conds.get(thread_id)
                        if cond is not None:
                            cond.notify_all()
                if self._waiters:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > WATCHER_IDLE_SECONDS:
                    # Start afresh next time, from the newest row then (not from a low mark hours old).
                    self._thread, self._since, self._settling, self._counts = None, None, None, {}
                    return
                self._tick.wait(self.interval)


class _KeptConnection:
    """This thread's connection to the bound database, kept open from one use to the next (opening one
    costs about 4 ms on PostgreSQL here, more than a poll or a stream's read) until close(). Follows a
    rebinding of the database proxy (tests bind a new database for each test)."""

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


class Stopped(Exception):
    """Live updates are shutting down (the server stops)."""


class ReadPool:
    """Runs the streams' database reads on at most `size` threads, which keep their connection open
    between reads and close it after `idle` seconds without work. A burst of wakes (a post to a thread
    with 200 open pages of different people) thus costs a handful of connections instead of 200, and no
    stream holds a connection while it waits.
    """

    def __init__(self, size: int = READ_SLOTS, idle: float = READER_IDLE_SECONDS) -> None:
        self.size = size
        self.idle = idle
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle_threads = 0
        self._pending = 0  # jobs not taken by a thread yet
        self._stopped = False

    def run(self, fn: Any, *args: Any) -> Any:
        """fn(*args) on a reader thread with an open connection; its result, or its exception raised here."""
        done = threading.Event()
        box: dict[str, Any] = {}
        with self._lock:
            if self._stopped:
                raise Stopped()
            self._pending += 1
            if self._pending > self._idle_threads and self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._work, name="workrate-live-reader", daemon=True).start()
            self._jobs.put((fn, args, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["result"]

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for _ in range(self._threads):
                self._jobs.put(None)

    def _work(self) -> None:
        connection = _KeptConnection()
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
                fn, args, box, done = job
                try:
                    connection.open()
                    box["result"] = fn(*args)
                except BaseException as e:  # handed to the stream that asked
                    box["error"] = e
                    connection.close()
                finally:
                    done.set()
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


class _Read:
    """One read of a thread's recent events for one viewer, which the viewer's other streams may share."""

    def __init__(self, token: Token, scan_from: int) -> None:
        self.token = token
        self.scan_from = scan_from
        self.started = time.monotonic()
        self.done = threading.Event()
        self.events: list[EventRow] | None = None  # None: failed, or too long to keep
        self.still_open = True


class SharedReads:
    """Streams of the same viewer on the same thread, woken by the same change, read the database once.

    The first stream to look leads and reads; the others wait for its answer and take from it what is
    newer than their own cursor. An answer is shared only for the same viewer (its visibility was decided
    by visible_messages for that viewer), the same watcher token (nothing changed in the thread since),
    if it starts at or below the follower's own low mark, and for SHARE_SECONDS at most (so a stream
    waking for its heartbeat checks access afresh).
    """

    def __init__(self, seconds: float = SHARE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._reads: dict[tuple[Any, ...], _Read] = {}
        self.led = 0  # for tests and benchmarks: reads done, and reads shared
        self.shared = 0

    def join(self, key: tuple[Any, ...], token: Token, low: int) -> tuple[_Read, bool]:
        """(the read to use, whether the caller leads it and must call finish())."""
        now = time.monotonic()
        with self._lock:
            read = self._reads.get(key)
            if read is not None and read.token == token and read.scan_from <= low \
                    and now - read.started < self.seconds and (read.events is not None or not read.done.is_set()):
                self.shared += 1
                return read, False
            if len(self._reads) > SHARED_READS_KEPT:
                for old_key in [k for k, r in self._reads.items() if now - r.started >= self.seconds]:
                    del self._reads[old_key]
            read = self._reads[key] = _Read(token, low)
            self.led += 1
            return read, True

    @staticmethod
    def finish(read: _Read, events: list[EventRow] | None, still_open: bool) -> None:
        read.events = events if events is not None and len(events) <= SHARED_EVENTS_KEPT else None
        read.still_open = still_open
        read.done.set()


def _extension(app: Flask, key: str, make: Callable[[], Any]) -> Any:
    """The app's one instance of a live-update part, made on first use (setdefault: one wins a race)."""
    part = app.extensions.get(key)
    return part if part is not None else app.extensions.setdefault(key, make())


def watcher_of(app: Flask) -> EventWatcher:
    return _extension(app, "workrate_events", EventWatcher)


def renders_of(app: Flask) -> RenderCache:
    return _extension(app, "workrate_event_renders", RenderCache)


def shared_reads_of(app: Flask) -> SharedReads:
    return _extension(app, "workrate_event_reads", SharedReads)


def readers_of(app: Flask) -> ReadPool:
    return _extension(app, "workrate_event_readers", ReadPool)


def stop_watcher(app: Flask) -> None:
    """Ends live updates: open streams return, the watcher and the reader threads stop."""
    watcher = app.extensions.get("workrate_events")
    if watcher is not None:
        watcher.stop()
    pool = app.extensions.get("workrate_event_readers")
    if pool is not None:
        pool.stop()


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
        token = watcher.token(thread_id)
        try:
            chunks, still_open = _read_new(app, environ, viewer, thread_id, cursor, sent, mode, token)
        except Stopped:
            return
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
        if watcher.wait(thread_id, token, min(remaining, HEARTBEAT_SECONDS)) == token \
                and time.monotonic() - last_write >= HEARTBEAT_SECONDS:
            yield ": ping\n\n"
            last_write = time.monotonic()


def _read_new(app: Flask, environ: dict[str, Any], viewer: Viewer, thread_id: int, cursor: _Settling,
              sent: set[int], mode: str, token: Token) -> tuple[list[str], bool]:
    """New events of the thread after the cursor (re-reading the settling window), as SSE chunks, and
    whether the viewer may still open the thread. Shares one read with the viewer's other streams."""
    shared = shared_reads_of(app)
    key = (thread_id, viewer.user_id, viewer.role, mode, environ.get("SCRIPT_NAME", ""))
    low = cursor.low
    read, lead = shared.join(key, token, low)
    events: list[EventRow] | None = None
    still_open = True
    if not lead and read.done.wait(FOLLOW_WAIT_SECONDS) and read.events is not None:
        events, still_open = read.events, read.still_open
    if events is None:
        try:
            events, still_open = readers_of(app).run(_query, app, environ, viewer, thread_id, low, mode)
        finally:
            if lead:
                shared.finish(read, events, still_open)
    if not still_open:
        return [], False
    chunks: list[str] = []
    for event_id, message_id, kind, html in events:
        if event_id <= low or event_id in sent:
            continue
        sent.add(event_id)
        cursor.advance(event_id)
        if html is not None:
            chunks.append(sse(kind, {"message_id": message_id, "html": html}, cursor.cursor))
    low = cursor.low
    sent.difference_update({i for i in sent if i <= low})
    return chunks, True


def _query(app: Flask, environ: dict[str, Any], viewer: Viewer, thread_id: int, low: int,
           mode: str) -> tuple[list[EventRow], bool]:
    """The thread's events after `low`, each with its HTML when the viewer may see its message, and
    whether the viewer may still open the thread. Runs on a ReadPool thread, which holds the connection."""
    renders = renders_of(app)
    events: list[EventRow] = []
    with app.request_context({**environ, LIVE_READ: True}):
        # When visible_messages returns every message, it has checked the viewer's access itself;
        # otherwise (or with nothing new) can_open_thread decides whether the stream goes on.
        all_visible = True
        scan_from = low
        while True:
            rows = list(ThreadEvent.select(ThreadEvent.id, ThreadEvent.message, ThreadEvent.kind)
                        .where((ThreadEvent.thread == thread_id) & (ThreadEvent.id > scan_from))
                        .order_by(ThreadEvent.id).limit(BATCH))
            if rows:
                wanted = {r.message_id for r in rows}
                # The one visibility rule decides what this viewer's stream may carry.
                visible = list(visible_messages(viewer, thread_id).where(Message.id.in_(wanted)))
                all_visible = all_visible and len(visible) == len(wanted)
                html = _rendered(visible, viewer, mode, renders)
                events.extend((r.id, r.message_id, r.kind, html.get(r.message_id)) for r in rows)
            if len(rows) < BATCH:
                break
            scan_from = rows[-1].id
        if (not events or not all_visible) and not can_open_thread(viewer, _thread(thread_id)):
            return [], False
    return events, True


def _rendered(messages: list[Message], viewer: Viewer, mode: str, renders: RenderCache) -> dict[int, str]:
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


def _thread(thread_id: int) -> Any:
    from storage.models import Thread

    return Thread.get_by_id(thread_id)
