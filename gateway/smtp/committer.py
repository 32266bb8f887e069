"""Group commit: the rows of received mails, several mails per transaction, each answered only after it.

The pipeline (gateway/inbound/pipeline.py run) hands each mail here to be stored or its outcome recorded.
Per batch, whatever mails are waiting:

1. the batch's files (those the steps left to the commit: mail.files.take_unwritten()), each mail's
   written in a worker thread as soon as it arrives, are durable;
2. SQLite: the write lock is taken (BEGIN IMMEDIATE on the writer's own connection: on the event loop when
   it is free, else in a worker thread, since another process may hold it a while), each mail's rows are
   written on the event loop, and COMMIT runs in a worker thread. PostgreSQL: the whole transaction runs in
   a worker thread. When a mail raises, the transaction is rolled back and the others go again without it
   (rare: a mail that can no longer be posted, or a duplicate);
3. only then is each mail's handler told, and it answers 250 (or the mail's refusal).

So every answer follows the durable commit of what it promises, as with one transaction per mail, while a
busy gateway pays the commit and the hand-offs between threads once per batch instead of once per mail.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from peewee import OperationalError

from gateway.errors import Held, Outcome
from gateway.inbound.hold import write_held
from gateway.inbound.mail import InboundMail
from gateway.inbound.store import keep_raw_in_files, record_row, reset_connection, store_rows
from storage import changes
from storage.db import SQLITE_PRAGMAS, database, sqlite_writer, using_connection
from storage.files import FileStore

log = logging.getLogger(__name__)

MAX_BATCH = 64  # mails per transaction
# PostgreSQL's commit_delay and commit_siblings, for the gateway: while other mails are arriving (answered
# 354) or being processed (expect()), a batch waits up to this long for them, so that one commit carries
# them all and writes each table's last page once for all of them; a quiet gateway commits at once, as
# nothing else is under way.
COMMIT_DELAY = 0.001  # seconds
BUSY_RETRY = 0.0005  # seconds between tries for SQLite's write lock when another process holds it


@dataclass
class _Entry:
    mail: InboundMail
    outcome: Outcome | None  # None: store the reply; else: record this outcome
    # Made on the running event loop (entries are made in store() and record()).
    future: asyncio.Future[None] = field(repr=False, default_factory=lambda: asyncio.get_running_loop().create_future())
    files_written: asyncio.Future[Any] | None = field(repr=False, default=None)  # its files, durable


class _MailFailed(Exception):
    """The mail at `index` of a batch raised `error`; the transaction is to be rolled back."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _first_thread_id(entry: _Entry) -> int:
    targets = entry.mail.targets if entry.outcome is None else ()
    return min((t.thread.id for t in targets), default=0)


class GroupCommitter:
    """Stores mails for the event loop, several per transaction; start() on the loop, then store()/record()."""

    def __init__(self, files: FileStore, run_in_thread: Callable[..., Any], *, on_loop: bool,
                 receiving: Callable[[], int] = lambda: 0) -> None:
        self._files = files
        self._on_loop = on_loop  # SQLite: the rows are written on the event loop (see the module docstring)
        self._run_in_thread = run_in_thread  # (fn, *args) -> awaitable, in a worker thread
        # BEGIN and COMMIT run in a thread of their own: a batch holds the process's SQLite writer lock
        # (storage.db.sqlite_writer) from BEGIN to COMMIT, and tasks of the shared pool may be waiting for
        # that lock (a refused mail's record, a bounce); were COMMIT queued behind them, it would never run.
        self._lock_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smtp-commit")
        self._queue: list[_Entry] = []
        self._wake = asyncio.Event()
        self._arrived = asyncio.Event()  # set by every submission (see _gather)
        self._expected: set[int] = set()  # id() of the mails under way that will come here (expect())
        self._receiving = receiving  # how many mails are still arriving over SMTP (they will come here too)
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="smtp-group-commit")

    async def close(self) -> None:
        """Commits what is queued, then stops."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._in_lock_thread(conn.close)
        self._lock_thread.shutdown(wait=False)

    def _in_lock_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(self._lock_thread, fn, *args)

    def expect(self, mail: InboundMail) -> None:
        """Tells the group commit that mail is being processed and will be stored or recorded here soon:
        a batch about to be committed waits a moment for it (COMMIT_DELAY)."""
        self._expected.add(id(mail))

    def forget(self, mail: InboundMail) -> None:
        """mail's handler is done: no batch waits for it any more, whether or not it came here."""
        self._expected.discard(id(mail))

    async def store(self, mail: InboundMail) -> None:
        """Stores mail: returns once its rows are committed; raises what store_rows raised (Duplicate,
        NotPostable, ProcessingTimeout, a database error)."""
        await self._submit(_Entry(mail, None))

    async def record(self, mail: InboundMail, outcome: Outcome) -> None:
        """record_outcome for mail; a failure is logged, never raised (the raw mail stays in the file store)."""
        try:
            await self._submit(_Entry(mail, outcome))
        except Exception as e:
            log.error("could not record %s mail from %s (raw mail kept as %s): %s: %s", outcome.reason,
                      mail.mail_from or "<>", mail.raw_key or "not stored", type(e).__name__, e)
            await self._run_in_thread(keep_raw_in_files, mail)

    async def hold(self, mail: InboundMail, outcome: Held) -> None:
        """Records mail's row with its held post (gateway/inbound/hold.py write_held); returns once they are
        committed and raises what they raised (so that the mail is answered 451, not 250)."""
        await self._submit(_Entry(mail, outcome))

    async def _submit(self, entry: _Entry) -> None:
        if self._task is not None and self._task.done():
            raise RuntimeError("the gateway is shutting down")
        self._expected.discard(id(entry.mail))
        files = entry.mail.files.take_unwritten()
        if files:
            # Written at once, in parallel with other mails' files and with the commit under way.
            entry.files_written = asyncio.ensure_future(self._run_in_thread(self._files.put_pending, files))
        self._queue.append(entry)
        self._wake.set()
        self._arrived.set()
        await entry.future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._gather()
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
            if self._closing:
                return

    async def _gather(self) -> None:
        """Waits up to COMMIT_DELAY for the mails under way (arriving, or expect()ed) to join the queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COMMIT_DELAY
        while (self._expected or self._receiving()) and len(self._queue) < MAX_BATCH and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _commit(self, batch: list[_Entry]) -> None:
        # A mail whose files could not be written fails alone; its row is never written.
        ready: list[_Entry] = []
        for entry in batch:
            if entry.files_written is not None:
                try:
                    await entry.files_written
                except Exception as e:
                    self._fail([entry], e)
                    continue
            ready.append(entry)
        batch = ready
        if not batch:
            return
        # Posts in thread order (stable: a thread's replies keep their order): concurrent transactions (other
        # gateway processes on PostgreSQL) then meet each other's index entries in the same order.
        batch.sort(key=_first_thread_id)
        if self._on_loop:
            await self._commit_on_loop(batch)
            return
        try:
            errors = await self._run_in_thread(self._commit_in_thread, batch)
        except Exception as e:
            self._fail(batch, e)
            return
        self._resolve(batch, errors)

    @staticmethod
    def _apply(entry: _Entry) -> None:
        if entry.outcome is None:
            store_rows(entry.mail)
        else:
            row_id = record_row(entry.mail, entry.outcome)
            if isinstance(entry.outcome, Held):
                write_held(entry.mail, entry.outcome, row_id)

    @classmethod
    def _apply_all(cls, batch: list[_Entry]) -> None:
        """Inside an open transaction: every mail's rows, one after the other; raises _MailFailed with the
        index of the first mail that raised (the caller rolls the transaction back and goes again without
        it). No savepoint per mail: they cost two statements each (two round trips on PostgreSQL, and the
        pages they journal on SQLite) for a failure that is rare."""
        for i, entry in enumerate(batch):
            try:
                cls._apply(entry)
            except Exception as e:
                raise _MailFailed(i, e) from e

    @classmethod
    def _commit_in_thread(cls, batch: list[_Entry]) -> dict[int, Exception]:
        """PostgreSQL, in a worker thread: the batch in one transaction; a mail that fails is left out and the
        others go again in a new one. Returns each failed mail's error by its index; raises when the
        transaction itself failed."""
        errors: dict[int, Exception] = {}
        todo = list(range(len(batch)))
        try:
            database.connect(reuse_if_open=True)
            while todo:
                try:
                    with database.atomic():
                        cls._apply_all([batch[i] for i in todo])
                    return errors
                except _MailFailed as failed:
                    errors[todo.pop(failed.index)] = failed.error
        except Exception:
            reset_connection()
            raise
        return errors

    async def _commit_on_loop(self, batch: list[_Entry]) -> None:
        """SQLite: the rows on the event loop, between a BEGIN and a COMMIT that may wait (worker threads); a
        mail that fails is left out and the others go again in a new transaction."""
        errors: dict[int, Exception] = {}
        todo = list(range(len(batch)))
        while todo:
            try:
                conn = self._conn = self._conn or self._connect()
                if not self._try_begin(conn):
                    await self._in_lock_thread(self._begin, conn)
            except BaseException as e:
                self._fail(batch, e)
                if not isinstance(e, Exception):
                    raise
                return
            open_transaction = True
            try:
                try:
                    with using_connection(conn, in_transaction=True):
                        self._apply_all([batch[i] for i in todo])
                except _MailFailed as failed:
                    errors[todo.pop(failed.index)] = failed.error
                    open_transaction = False  # _end gives the lock back whatever happens
                    changes.forget()
                    await self._in_lock_thread(self._end, conn, False)
                    continue
                open_transaction = False
                await self._in_lock_thread(self._end, conn, True)
                changes.committed()  # wakes the web processes' live updates
            except BaseException as e:
                changes.forget()
                if open_transaction:
                    try:
                        await self._in_lock_thread(self._end, conn, False)
                    except Exception:
                        log.exception("rollback of a group commit failed")
                if not isinstance(e, asyncio.CancelledError):
                    self._drop_connection()
                self._fail(batch, e)
                if not isinstance(e, Exception):
                    raise
                return
            break
        self._resolve(batch, errors)

    @staticmethod
    def _resolve(batch: list[_Entry], errors: dict[int, Exception]) -> None:
        for i, entry in enumerate(batch):
            if not entry.future.done():
                if i in errors:
                    entry.future.set_exception(errors[i])
                else:
                    entry.future.set_result(None)

    @staticmethod
    def _connect() -> sqlite3.Connection:
        conn: sqlite3.Connection = database.obj._connect()
        conn.execute("PRAGMA busy_timeout = 0")  # BEGIN never waits on the event loop; see _begin
        return conn

    @staticmethod
    def _try_begin(conn: sqlite3.Connection) -> bool:
        """On the event loop: takes the write lock when it is free at once (the usual case)."""
        if not sqlite_writer.acquire(blocking=False):
            return False
        try:
            conn.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError:  # another process is writing: wait in a thread
            sqlite_writer.release()
            return False
        except BaseException:
            sqlite_writer.release()
            raise

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        """In a worker thread: waits for the write lock (this process's, then SQLite's, up to busy_timeout).

        Another gateway process holds SQLite's lock for about one commit; SQLite's own busy handler sleeps
        longer and longer between tries, so the lock is tried again every BUSY_RETRY seconds instead."""
        sqlite_writer.acquire()
        try:
            deadline = time.monotonic() + cast(int, SQLITE_PRAGMAS["busy_timeout"]) / 1000
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) and "busy" not in str(e):
                        raise
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(BUSY_RETRY)
        except sqlite3.Error as e:
            sqlite_writer.release()
            raise OperationalError(str(e)) from e
        except BaseException:
            sqlite_writer.release()
            raise

    @staticmethod
    def _end(conn: sqlite3.Connection, commit: bool) -> None:
        """In a worker thread: COMMIT (or ROLLBACK), then the write lock is given back."""
        try:
            conn.execute("COMMIT" if commit else "ROLLBACK")
        except sqlite3.Error as e:
            if commit and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise OperationalError(str(e)) from e
        finally:
            sqlite_writer.release()

    def _drop_connection(self) -> None:
        """After a failed commit the connection may be unusable (disk trouble): the next batch opens another."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    @staticmethod
    def _fail(batch: list[_Entry], error: BaseException) -> None:
        for entry in batch:
            if not entry.future.done():
                entry.future.set_exception(error if isinstance(error, Exception) else RuntimeError(str(error)))
