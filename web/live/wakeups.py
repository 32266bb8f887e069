"""What wakes the live-update hub: which threads have new events, whose access changed.

- PostgreSQL: one LISTEN connection per web process (PgListener). storage/changes.py sends a NOTIFY
  inside each posting transaction, so every web process learns of a commit the moment it happens, and
  nothing polls. After the listening connection is lost and made again, every open stream looks once
  (a NOTIFY sent meanwhile was not heard).
- SQLite: posts made in this process are handed over by storage/changes.py right after their commit
  (LocalSignals). Other processes (the gateway, the CLI, another web process) send their signals as a
  datagram to a Unix socket each web process binds beside the database file (WakeSocket, read on the
  event loop: no thread). The backstop is EventPoller: every live_poll_seconds it asks SQLite whether any
  other connection committed (PRAGMA data_version, no table read), and only then runs one grouped query
  over the newest rows of the event log, whatever the number of open streams.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peewee import Case, fn

from config.settings import make_private_dir
from storage import changes
from storage.db import database
from storage.mail_log import ThreadEvent
from web.live.reads import KeptConnection

log = logging.getLogger(__name__)

# Event ids come from a sequence, so on PostgreSQL two posts can commit out of id order: the poller
# (and each stream's cursor, web/live/cursor.py) keeps looking this long below the newest id it saw.
SETTLE_SECONDS = 10
# When the poller starts, it also watches this many ids below the newest row, so that transactions which
# took their ids before it started and commit just after are still seen.
START_MARGIN = 1000
RECONNECT_SECONDS = 1.0  # the listener's pause before connecting again after losing its connection

OnThreads = Callable[["set[int] | None"], None]  # thread ids with new events; None: every thread
OnAccess = Callable[[int], None]  # a user whose access changed


class Settling:
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


class LocalSignals:
    """This process's commits (storage/changes.py listeners), handed to the hub."""

    def __init__(self, on_threads: OnThreads, on_access: OnAccess) -> None:
        self.on_threads = on_threads
        self.on_access = on_access

    def start(self) -> None:
        changes.subscribe(self._heard)

    def stop(self) -> None:
        changes.unsubscribe(self._heard)

    def _heard(self, kind: str, ident: int) -> None:
        if kind == changes.THREAD:
            self.on_threads({ident})
        elif kind == changes.ACCESS:
            self.on_access(ident)


class WakeSocket:
    """This process's Unix datagram socket in storage/changes.py's wake folder (SQLite), read on the event
    loop: other processes' commits, handed to the hub as they arrive."""

    RECEIVE_BUFFER = 1 << 20  # room for bursts of signals while the loop is busy

    def __init__(self, loop: asyncio.AbstractEventLoop, on_threads: OnThreads, on_access: OnAccess) -> None:
        self.loop = loop
        self.on_threads = on_threads
        self.on_access = on_access
        self.sock: socket.socket | None = None
        self.path: Path | None = None
        self.heard = 0  # for tests: datagrams read

    def start(self) -> None:
        folder = changes.wake_folder()
        if folder is None:
            return
        try:
            make_private_dir(folder)
            path = folder / f"{os.getpid()}-{secrets.token_hex(4)}{changes.SOCKET_SUFFIX}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER)
                sock.setblocking(False)
                sock.bind(changes.socket_address(path))
                os.chmod(path, 0o600)
            except BaseException:
                sock.close()
                raise
        except OSError:
            # Other processes' posts then arrive by the poll alone.
            log.warning("live updates: cannot listen for other processes' signals", exc_info=True)
            return
        self.sock, self.path = sock, path
        changes.listening(path.name, True)
        self.loop.add_reader(sock.fileno(), self._readable)

    def stop(self) -> None:
        sock, path = self.sock, self.path
        self.sock = self.path = None
        if sock is None or path is None:
            return
        changes.listening(path.name, False)
        try:
            if not self.loop.is_closed():
                self.loop.remove_reader(sock.fileno())
        except (RuntimeError, ValueError):  # stopped from another thread while the loop closes
            pass
        sock.close()
        try:
            path.unlink()
        except OSError:
            pass

    def _readable(self) -> None:
        threads: set[int] = set()
        access: set[int] = set()
        sock = self.sock
        while sock is not None:
            try:
                data = sock.recv(changes.DATAGRAM_BYTES + 64)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                log.debug("live updates: reading the wake socket failed", exc_info=True)
                break
            self.heard += 1
            for kind, ident in changes.parse_datagram(data):
                (threads if kind == changes.THREAD else access).add(ident)
        if threads:
            self.on_threads(threads)
        for user_id in access:
            self.on_access(user_id)


class _Worker:
    """A daemon thread running self._run until stop()."""

    name = "workrate-live"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        raise NotImplementedError


class EventPoller(_Worker):
    """Polls the event log for the whole process (SQLite: other processes' posts).

    A poll first asks SQLite whether another connection committed since the previous poll (PRAGMA
    data_version: a read of the WAL index, no table read); when nothing did, it stops there.
    Otherwise it runs one query over the rows after the previous poll's low mark (`since`), grouped by thread:
    the number of rows after `since`, the number after the current low mark, and the newest id. The first
    count is compared with the second count of the previous poll: both count the rows after the same
    mark, so they differ exactly when rows were committed in between, including rows that commit late
    with an id below the newest one. Moving the low mark alone wakes nobody.
    """

    name = "workrate-live-poller"

    def __init__(self, on_threads: OnThreads, interval: float, settle: float = SETTLE_SECONDS) -> None:
        super().__init__()
        self.on_threads = on_threads
        self.interval = interval
        self.settle = settle
        self._counts: dict[int, tuple[int, int]] = {}
        self._since: int | None = None
        self._settling: Settling | None = None
        self._version: Any = None
        self.polls = 0
        self.queries = 0  # for tests: polls that went on to read the event log

    def poll(self) -> set[int] | None:
        """The threads with rows committed since the previous poll; None on the first poll (look everywhere)."""
        version = database.execute_sql("PRAGMA data_version").fetchone()[0]
        if version == self._version and self._settling is not None:
            return set()  # no other connection committed: the query would find what the last one found
        self._version = version
        self.queries += 1
        if self._settling is None:
            newest = ThreadEvent.select(fn.MAX(ThreadEvent.id)).scalar() or 0
            self._settling = Settling(max(0, newest - START_MARGIN), self.settle)
        low = self._settling.low
        first = self._since is None
        since = low if self._since is None else self._since
        after_low = fn.SUM(Case(None, [(ThreadEvent.id > low, 1)], 0))
        rows: list[Any] = list(ThreadEvent.select(ThreadEvent.thread, fn.COUNT(ThreadEvent.id), after_low,
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
        connection = KeptConnection()
        try:
            while not self._stop.is_set():
                try:
                    connection.open()
                    changed = self.poll()
                except Exception:  # the database may be away for a moment; streams just wait longer
                    log.warning("live updates: cannot read the event log", exc_info=True)
                    connection.close()
                    changed = set()
                self.polls += 1
                if changed is None or changed:
                    self.on_threads(changed)
                self._stop.wait(self.interval)
        finally:
            connection.close()


class PgListener(_Worker):
    """LISTENs on storage/changes.py's channel with a connection of its own (PostgreSQL)."""

    name = "workrate-live-listener"

    def __init__(self, url: str, on_threads: OnThreads, on_access: OnAccess) -> None:
        super().__init__()
        self.url = url
        self.on_threads = on_threads
        self.on_access = on_access
        self.listening = threading.Event()  # for tests: set while a LISTEN connection is up
        self.connections = 0

    def _connect(self) -> Any:
        import psycopg2  # type: ignore[import-untyped]
        from playhouse.db_url import parse

        params = parse(self.url)
        dbname = params.pop("database", None)
        conn = psycopg2.connect(dbname=dbname, **params)
        conn.set_isolation_level(0)  # autocommit: LISTEN takes effect at once
        with conn.cursor() as cursor:
            cursor.execute(f"LISTEN {changes.CHANNEL}")
        return conn

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                self.connections += 1
                self.listening.set()
                self.on_threads(None)  # anything committed while nobody listened: every stream looks once
                self._listen(conn)
            except Exception:
                log.warning("live updates: the LISTEN connection failed; connecting again", exc_info=True)
            finally:
                self.listening.clear()
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        log.debug("live updates: closing the LISTEN connection failed", exc_info=True)
            self._stop.wait(RECONNECT_SECONDS)

    def _listen(self, conn: Any) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], 1.0)
            if not ready:
                continue
            conn.poll()
            threads: set[int] = set()
            notifies = conn.notifies
            while notifies:
                parsed = changes.parse(notifies.pop(0).payload)
                if parsed is None:
                    continue
                kind, ident = parsed
                if kind == changes.THREAD:
                    threads.add(ident)
                else:
                    self.on_access(ident)
            if threads:
                self.on_threads(threads)
