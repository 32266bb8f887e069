"""The one database handle of a process: declared here, bound at run time to SQLite or PostgreSQL."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from peewee import DatabaseProxy, OperationalError, SqliteDatabase
from playhouse.db_url import connect

from config import Settings
from config.settings import create_private_file, make_private_dir

database = DatabaseProxy()

# SQLite pragmas: WAL lets readers run beside the single writer, foreign keys are enforced, and a
# writer waits for the lock instead of failing at once. synchronous=FULL keeps every commit durable
# before the gateway answers 250.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "full",
    "cache_size": -16000,
    # Statement and savepoint journals in memory, not in a temporary file created, written and deleted for
    # every transaction.
    "temp_store": "memory",
}

_bind_lock = threading.Lock()


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached; the message says which and why."""


def make_database(settings: Settings) -> Any:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        _private_sqlite_file(settings)
        db = connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False, timeout=10)
    else:
        # autorollback keeps a pooled connection usable after a failed statement.
        db = connect(url, autorollback=True, connect_timeout=5)
    return db


def _private_sqlite_file(settings: Settings) -> None:
    """The data folder 0700 and the database file 0600 (SQLite gives its -wal and -shm files the same mode)."""
    make_private_dir(settings.data_dir)
    path = settings.effective_database_url.removeprefix("sqlite:///")
    if path and path != ":memory:" and not path.startswith("file:"):
        try:
            make_private_dir(Path(path).parent)
            create_private_file(Path(path))
        except OSError:
            pass  # SQLite cannot open it either: check_connection() says why, in one sentence


def bind(settings: Settings) -> Any:
    """Binds the process-wide proxy to the database that settings name, and returns that database."""
    with _bind_lock:
        db = make_database(settings)
        database.initialize(db)
        return db


def tuples(query: Any) -> Iterator[tuple[Any, ...]]:
    """The rows of a peewee query as plain tuples (peewee's type hints say .tuples() yields models)."""
    return iter(query.tuples())


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def check_connection(wait: float = 10.0) -> None:
    """Opens and closes one connection, raising DatabaseUnavailable with a readable reason.

    A new SQLite file that another process is writing to, or switching to WAL, at this moment answers
    "database is locked" to the journal_mode pragma at once: SQLite does not wait for that lock. Tried again
    for up to `wait` seconds, so that processes started together on a new database all come up.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            database.connect(reuse_if_open=True)
            database.execute_sql("SELECT 1")
            return
        except OperationalError as e:
            if not (is_sqlite() and "locked" in str(e) and time.monotonic() < deadline):
                raise DatabaseUnavailable(f"cannot open the database: {str(e).strip().splitlines()[0]}") from e
        finally:
            if not database.is_closed():
                database.close()
        time.sleep(0.05)


class connection:
    """`with connection():` opens a connection for a unit of work and closes it after (pool-friendly)."""

    def __enter__(self) -> None:
        self._opened = database.connect(reuse_if_open=True)

    def __exit__(self, *exc: object) -> None:
        if self._opened and not database.is_closed():
            database.close()


# SQLite has one writer at a time. Threads of this process queue here instead of in SQLite's busy handler,
# whose sleeps would show up as latency; other processes still wait in it. (The gateway's
# group commit takes it too, around its own BEGIN IMMEDIATE.)
sqlite_writer = threading.Lock()


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (IMMEDIATE), so it waits for
    another process's commit (busy_timeout) instead of failing with 'database is locked' when its first
    write finds the database changed under a read snapshot; on PostgreSQL a plain transaction. Inside an
    open transaction, a savepoint of it."""
    if is_sqlite() and not database.in_transaction():
        with sqlite_writer, database.atomic("IMMEDIATE"):
            yield
    else:
        with database.atomic():
            yield


# --- statements compiled once --------------------------------------------------------------------------
# peewee builds a statement's SQL anew on every execution, which costs more CPU than SQLite takes to run
# it. The few statements that run for every posted message are compiled once per kind of database and then
# executed with new values. The SQL is still generated by peewee from the same query expressions, so the
# visibility rule keeps one definition.

_SENTINEL_BASE = -7_319_426_511_000_000_000  # int64 values no real id or count can take


class PreparedQuery:
    """A peewee query, built by `build(*params)`, compiled once per kind of database.

    `build` receives one placeholder per name in `names` (distinct large negative integers, so only
    integer parameters such as ids can be placeholders) and returns the query; `execute(**values)` runs
    the compiled SQL with the real values in the placeholders' places. Constants in the query stay as
    compiled.
    """

    def __init__(self, build: Callable[..., Any], *names: str) -> None:
        self._build = build
        self._names = names
        self._compiled: dict[type, tuple[str, list[Any], list[int]]] = {}
        self._lock = threading.Lock()

    def _compile(self) -> tuple[str, list[Any], list[int]]:
        kind = type(database.obj)
        compiled = self._compiled.get(kind)
        if compiled is None:
            with self._lock:
                sentinels = [_SENTINEL_BASE - i for i in range(len(self._names))]
                query = self._build(*sentinels)
                sql, params = query.sql()
                slots = [_SENTINEL_BASE - p if isinstance(p, int) and not isinstance(p, bool)
                         and _SENTINEL_BASE - len(sentinels) < p <= _SENTINEL_BASE else -1 for p in params]
                compiled = self._compiled[kind] = (sql, list(params), slots)
        return compiled

    def params(self, values: dict[str, Any]) -> tuple[str, list[Any]]:
        sql, constants, slots = self._compile()
        given = [values[name] for name in self._names]
        return sql, [given[slot] if slot >= 0 else constant for slot, constant in zip(slots, constants, strict=True)]

    def execute(self, **values: Any) -> Any:
        """Runs the statement; returns the DB-API cursor."""
        sql, params = self.params(values)
        return database.execute_sql(sql, params)

    def rows(self, model: Any, **values: Any) -> list[Any]:
        """Runs the statement and returns instances of model (columns matched by name, values converted by
        each field's python_value, as peewee's own row reader does)."""
        sql, params = self.params(values)
        cursor = database.execute_sql(sql, params)
        found = cursor.fetchall()
        if not found:
            return []
        columns = model._meta.columns
        fields = [columns.get(d[0]) for d in cursor.description]
        names = [field.name if field is not None else d[0] for field, d in zip(fields, cursor.description, strict=True)]
        return [model(__no_default__=1, **{name: field.python_value(value) if field is not None else value
                                           for name, field, value in zip(names, fields, row, strict=True)})
                for row in found]

    def scalar(self, **values: Any) -> Any:
        row = self.execute(**values).fetchone()
        return row[0] if row else None


class PreparedInsert:
    """INSERT of `rows` rows of the given fields of model, as one statement compiled once per kind of database.

    Fields left out get their model defaults, and values are converted by each field's db_value, as
    peewee's Model.insert() does. `ignore_conflicts` adds ON CONFLICT DO NOTHING (a unique index decides;
    nothing is inserted and execute() returns None).
    """

    def __init__(self, model: Any, fields: tuple[str, ...], *, rows: int = 1, ignore_conflicts: bool = False) -> None:
        self.model = model
        given = [model._meta.fields[name] for name in fields]
        # (peewee fields overload ==, so they are told apart by name)
        self.defaults = [(field, default) for field, default in model._meta.defaults.items()
                         if field.name not in fields]
        self.fields = given + [field for field, _ in self.defaults]
        self.rows = rows
        self.ignore_conflicts = ignore_conflicts
        self._sql: dict[type, str] = {}

    def _compile(self) -> str:
        db = database.obj
        sql = self._sql.get(type(db))
        if sql is None:
            q = db.quote[0], db.quote[-1]
            columns = ", ".join(f"{q[0]}{f.column_name}{q[1]}" for f in self.fields)
            row = "(" + ", ".join([db.param] * len(self.fields)) + ")"
            sql = (f"INSERT INTO {q[0]}{self.model._meta.table_name}{q[1]} ({columns}) VALUES "
                   + ", ".join([row] * self.rows))
            if self.ignore_conflicts:
                sql += " ON CONFLICT DO NOTHING"
            if db.returning_clause:
                sql += f" RETURNING {q[0]}{self.model._meta.primary_key.column_name}{q[1]}"
            self._sql[type(db)] = sql
        return sql

    def execute(self, *rows: tuple[Any, ...]) -> int | None:
        """Inserts rows (each a tuple in the order of fields); returns the id of the last row inserted, or
        None when a conflict left it out (ignore_conflicts)."""
        assert len(rows) == self.rows
        if self.defaults:
            extra = tuple(default() if callable(default) else default for _, default in self.defaults)
            rows = tuple(row + extra for row in rows)
        params = [field.db_value(value) for row in rows for field, value in zip(self.fields, row, strict=True)]
        cursor = database.execute_sql(self._compile(), params)
        if database.obj.returning_clause:
            found = cursor.fetchall()
            return found[-1][0] if found else None
        return cursor.lastrowid if cursor.rowcount else None


def insert_rows(model: Any, fields: tuple[str, ...], rows: list[tuple[Any, ...]], *, batch: int = 16) -> None:
    """Inserts many rows of model in statements of up to `batch` rows, each shape compiled once."""
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        key = (model, fields, len(chunk))
        statement = _INSERTS.get(key)
        if statement is None:
            statement = _INSERTS.setdefault(key, PreparedInsert(model, fields, rows=len(chunk)))
        statement.execute(*chunk)


_INSERTS: dict[tuple[Any, ...], PreparedInsert] = {}


@contextlib.contextmanager
def using_connection(conn: Any, *, in_transaction: bool = False) -> Iterator[None]:
    """Runs this thread's peewee statements on `conn`, a raw connection of the bound database, instead of
    the thread's own connection, until the block ends (the thread's own is then restored, untouched).

    With in_transaction=True, peewee is told that a transaction is already open on conn (begun by the
    caller, possibly from another thread): atomic() blocks inside become savepoints. Used by the gateway's
    group commit, which runs the statements of several mails on the event loop on its writer connection.
    """
    db = database.obj
    state = db._state
    saved = (state.closed, state.conn, state.ctx, state.transactions, state.commit_callbacks)
    state.closed, state.conn, state.ctx, state.commit_callbacks = False, conn, [], []
    state.transactions = [db.transaction()] if in_transaction else []
    try:
        yield
    finally:
        state.closed, state.conn, state.ctx, state.transactions, state.commit_callbacks = saved
