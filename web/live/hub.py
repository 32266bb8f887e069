"""The live-update hub of one web process: who is listening to which thread, and one read per change.

Runs on the live server's event loop (web/server.py). Streams (web/live/stream.py) register here once
authorised; the wake-up sources (web/live/wakeups.py) tell it which threads changed and whose access
changed. For each woken thread, the streams of one viewer (same person, role, audience and script
root) share one read of the database, run on a reader thread (web/live/reads.py); a read woken again
while it runs is run once more after it, never twice at once. Each stream then takes from the answer
what is newer than its own cursor. No stream holds a thread, a database connection or a timer task of
its own while it waits: an idle stream is a few small objects and two timer handles.

Caps: at most live_streams_per_person open streams per person (opening one more closes that person's
oldest stream with a "closed" event, which the page's script does not reconnect), at most
live_max_streams per process (further ones are answered 503 with Retry-After by the stream endpoint).

Team streams also carry a "sidebar" event, without content, after any thread changed (SIDEBAR_DELAY): the
team sees every workspace, and its pages redraw their workspace sidebar from the event path alone. A
client's stream never carries one, so nothing a client receives depends on other threads.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
from collections.abc import Iterable
from typing import Any

from flask import Flask

from config import Settings
from storage.visibility import Viewer
from web.live.reads import ReadPool, ReadResult, RenderCache, Stopped, open_sessions, read_events
from web.live.wakeups import EventPoller, LocalSignals, PgListener, Settling, WakeSocket

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10  # a comment line this often keeps proxies from closing an idle stream
LIFETIME_JITTER = 0.1  # streams end within ±10 % of live_stream_seconds, so reconnects do not come in waves

# The team's pages keep a sidebar of every workspace: wakes of any thread within this long make one
# "sidebar" event on each team stream (the page then fetches its sidebar, drawn through the rule).
SIDEBAR_DELAY = 0.2

RECENT_WAKES_KEPT = 4096  # threads whose last wake is remembered for streams still catching up

Key = tuple[Any, ...]  # (thread id, user id, role, mode, script root): who shares a read


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Stream:
    """One open stream: its viewer, its cursor, what waits to be written, and its two timers.

    The heartbeat timer fires at opened + k × HEARTBEAT_SECONDS whatever else happens, so the rhythm of a
    client's heartbeats never tells when something (an internal note, say) woke its thread.
    """

    __slots__ = ("viewer", "thread_id", "mode", "environ", "key", "cursor", "sent", "out", "wake", "ended",
                 "opened", "_beats", "_beat", "_end_timer", "hub", "session_id")

    def __init__(self, hub: Hub, viewer: Viewer, thread_id: int, mode: str, environ: dict[str, Any],
                 start: int, session_id: int | None = None) -> None:
        self.hub = hub
        self.session_id = session_id  # the sign-in session it was opened with: ending that ends the stream
        self.viewer = viewer
        self.thread_id = thread_id
        self.mode = mode
        self.environ = environ
        self.key: Key = (thread_id, viewer.user_id, viewer.role, mode, environ.get("SCRIPT_NAME", ""))
        self.cursor = Settling(start)
        self.sent: set[int] = set()
        self.out: list[str] = []
        self.wake = asyncio.Event()
        self.ended = False
        self.opened = 0.0
        self._beats = 0
        self._beat: asyncio.TimerHandle | None = None
        self._end_timer: asyncio.TimerHandle | None = None

    def push(self, chunk: str) -> None:
        self.out.append(chunk)
        self.wake.set()

    def end(self, chunk: str = "") -> None:
        if chunk and not self.ended:
            self.out.append(chunk)
        self.ended = True
        self.wake.set()

    def start_timers(self, loop: asyncio.AbstractEventLoop, lifetime: float) -> None:
        self.opened = loop.time()
        self._schedule_beat(loop)
        jitter = 1 + random.uniform(-LIFETIME_JITTER, LIFETIME_JITTER)
        self._end_timer = loop.call_at(self.opened + lifetime * jitter, self.end)

    def _schedule_beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beats += 1
        self._beat = loop.call_at(self.opened + self._beats * HEARTBEAT_SECONDS, self._on_beat, loop)

    def _on_beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self.push(": ping\n\n")
        self._schedule_beat(loop)

    def stop_timers(self) -> None:
        for timer in (self._beat, self._end_timer):
            if timer is not None:
                timer.cancel()

    def take(self, result: ReadResult) -> None:
        """Queues the events of a read that are newer than this stream's cursor (the settling window is
        re-read, so each event is sent once), or ends the stream when the viewer lost access."""
        if result.too_many:
            self.end(sse("reload", {"reason": "too far behind"}))
            return
        if not result.still_open:
            self.end(sse("closed", {"reason": "no access"}))
            return
        low = self.cursor.low
        for event_id, message_id, kind, html in result.events:
            if event_id <= low or event_id in self.sent:
                continue
            self.sent.add(event_id)
            self.cursor.advance(event_id)
            if html is not None:
                self.out.append(sse(kind, {"message_id": message_id, "html": html}, self.cursor.cursor))
        low = self.cursor.low
        if self.sent:
            self.sent.difference_update([i for i in self.sent if i <= low])
        if self.out:
            self.wake.set()


class Hub:
    """The streams of one web process, their shared reads and their wake-ups (see the module doc)."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.pool = ReadPool()
        self.renders = RenderCache()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.groups: dict[Key, set[Stream]] = {}
        self.by_thread: dict[int, set[Key]] = {}
        self.by_person: dict[int, dict[Stream, None]] = {}  # insertion order: oldest first
        self.team_streams: set[Stream] = set()  # streams of team pages, told when any thread changed
        self._sidebar_timer: asyncio.TimerHandle | None = None
        # Wakes heard, numbered: a stream whose catch-up read ran while its thread was woken reads again.
        self.seq = 0
        self._recent: collections.OrderedDict[int, int] = collections.OrderedDict()  # thread id → seq
        self._all_seq = 0  # seq of the last wake of every thread
        self._floor = 0  # wakes at or below this seq were dropped from _recent
        self.count = 0
        self._reading: set[Key] = set()
        self._again: set[Key] = set()
        self._sources: list[Any] = []
        self.stopped = False
        self.reads = 0  # for tests and benchmarks: shared reads run, wakes heard
        self.wakes = 0

    # -- life cycle (on the loop) --

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        local = LocalSignals(self.wake_threads, self.wake_access)
        self._sources = [local]
        if self.settings.is_postgres:
            self._sources.append(PgListener(self.settings.effective_database_url, self.wake_threads,
                                            self.wake_access))
        else:
            self._sources.append(WakeSocket(loop, self.wake_threads, self.wake_access))
            self._sources.append(EventPoller(self.wake_threads, self.settings.live_poll_seconds))
        for source in self._sources:
            source.start()

    def stop(self) -> None:
        """Ends every stream; wake-up sources and reader threads stop."""
        self.stopped = True
        if self._sidebar_timer is not None:
            self._sidebar_timer.cancel()
            self._sidebar_timer = None
        for streams in list(self.groups.values()):
            for stream in list(streams):
                stream.end()
        for source in self._sources:
            source.stop()
        self.pool.stop()

    @property
    def listener(self) -> PgListener | None:
        return next((s for s in self._sources if isinstance(s, PgListener)), None)

    @property
    def wake_socket(self) -> WakeSocket | None:
        return next((s for s in self._sources if isinstance(s, WakeSocket)), None)

    @property
    def poller(self) -> EventPoller | None:
        return next((s for s in self._sources if isinstance(s, EventPoller)), None)

    # -- admission --

    def full(self) -> bool:
        return self.count >= self.settings.live_max_streams

    def add(self, stream: Stream) -> bool:
        """Registers an authorised stream; False when the process is at its cap. Closes the person's
        oldest stream when they are at theirs."""
        if self.stopped or self.full():
            return False
        mine = self.by_person.setdefault(stream.viewer.user_id, {})
        while len(mine) >= self.settings.live_streams_per_person:
            oldest = next(iter(mine))
            oldest.end(sse("closed", {"reason": "too many open pages"}))
            self.remove(oldest)
        mine[stream] = None
        if stream.mode == "team" and stream.viewer.is_team:
            self.team_streams.add(stream)
        self.groups.setdefault(stream.key, set()).add(stream)
        self.by_thread.setdefault(stream.thread_id, set()).add(stream.key)
        self.count += 1
        return True

    def remove(self, stream: Stream) -> None:
        self.team_streams.discard(stream)
        group = self.groups.get(stream.key)
        if group is None or stream not in group:
            return
        group.discard(stream)
        self.count -= 1
        if not group:
            del self.groups[stream.key]
            keys = self.by_thread.get(stream.thread_id)
            if keys is not None:
                keys.discard(stream.key)
                if not keys:
                    del self.by_thread[stream.thread_id]
        mine = self.by_person.get(stream.viewer.user_id)
        if mine is not None:
            mine.pop(stream, None)
            if not mine:
                del self.by_person[stream.viewer.user_id]

    # -- wake-ups (any thread) --

    def wake_threads(self, thread_ids: set[int] | None) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_threads, thread_ids)

    def wake_access(self, user_id: int) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_access, user_id)

    def _wake_threads(self, thread_ids: Iterable[int] | None) -> None:
        self.seq += 1
        if thread_ids is None:
            self._all_seq = self.seq
        else:
            for thread_id in thread_ids:
                self._recent[thread_id] = self.seq
                self._recent.move_to_end(thread_id)
            while len(self._recent) > RECENT_WAKES_KEPT:
                _, self._floor = self._recent.popitem(last=False)
        if self.team_streams and self._sidebar_timer is None and self.loop is not None:
            self._sidebar_timer = self.loop.call_later(SIDEBAR_DELAY, self._tell_sidebars)
        targets = list(self.by_thread) if thread_ids is None else [t for t in thread_ids if t in self.by_thread]
        for thread_id in targets:
            self.wakes += 1
            for key in list(self.by_thread.get(thread_id, ())):
                self.refresh(key)

    def _tell_sidebars(self) -> None:
        self._sidebar_timer = None
        chunk = sse("sidebar", {})
        for stream in list(self.team_streams):
            stream.push(chunk)

    def woken_since(self, thread_id: int, seq: int) -> bool:
        """Whether the thread may have been woken after wake number `seq`."""
        return self._all_seq > seq or self._floor > seq or self._recent.get(thread_id, 0) > seq

    def _wake_access(self, user_id: int) -> None:
        mine = self.by_person.get(user_id, {})
        for key in {s.key for s in mine}:
            self.refresh(key)
        sessions = {s.session_id for s in mine if s.session_id is not None}
        if sessions:
            asyncio.ensure_future(self._check_sessions(user_id, sessions))

    async def _check_sessions(self, user_id: int, session_ids: set[int]) -> None:
        """Ends the person's streams whose sign-in session has ended (signed out here or anywhere)."""
        try:
            still = await asyncio.wrap_future(self.pool.submit(open_sessions, session_ids))
        except Stopped:
            return
        except Exception:  # the database is away for a moment: the stream's next read or its end decides
            log.warning("live updates: cannot check sessions", exc_info=True)
            return
        for stream in list(self.by_person.get(user_id, {})):
            if stream.session_id in session_ids and stream.session_id not in still:
                stream.end(sse("closed", {"reason": "signed out"}))

    # -- shared reads (on the loop) --

    def refresh(self, key: Key) -> None:
        """Reads the group's new events soon: now, or once more after the read that is running."""
        if key in self._reading:
            self._again.add(key)
            return
        self._reading.add(key)
        asyncio.ensure_future(self._read(key))

    async def _read(self, key: Key) -> None:
        try:
            while not self.stopped:
                group = self.groups.get(key)
                if not group:
                    return
                low = min(s.cursor.low for s in group)
                first = next(iter(group))
                try:
                    result = await asyncio.wrap_future(self.pool.submit(
                        read_events, self.app, self.renders, first.environ, first.viewer, first.thread_id, low,
                        first.mode))
                except Stopped:
                    return
                except Exception:
                    # The database is away for a moment: end the streams; browsers reconnect and resume.
                    log.warning("live updates: cannot read the event log; closing streams", exc_info=True)
                    for stream in list(self.groups.get(key, ())):
                        stream.end()
                    return
                self.reads += 1
                for stream in list(self.groups.get(key, ())):
                    stream.take(result)
                if key not in self._again:
                    return
                self._again.discard(key)
        finally:
            self._reading.discard(key)
            self._again.discard(key)
