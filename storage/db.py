"""The one database handle of a process: declared here, bound at run time to SQLite or PostgreSQL."""
from __future__ import annotations

import threading
from typing import Any

from peewee import DatabaseProxy, OperationalError, SqliteDatabase
from playhouse.db_url import connect

from config import Settings

database = DatabaseProxy()

# SQLite pragmas: WAL lets readers run beside the single writer, foreign keys are enforced, and a
# writer waits for the lock instead of failing at once. synchronous=FULL keeps every commit durable
# before the gateway answers 250 (measured: no slower than NORMAL here).
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "full",
    "cache_size": -16000,
}

_bind_lock = threading.Lock()


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached; the message says which and why."""


def make_database(settings: Settings) -> Any:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False, timeout=10)
    else:
        # autorollback keeps a pooled connection usable after a failed statement.
        db = connect(url, autorollback=True, connect_timeout=5)
    return db


def bind(settings: Settings) -> Any:
    """Binds the process-wide proxy to the database that settings name, and returns that database."""
    with _bind_lock:
        db = make_database(settings)
        database.initialize(db)
        return db


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def check_connection() -> None:
    """Opens and closes one connection, raising DatabaseUnavailable with a readable reason."""
    try:
        database.connect(reuse_if_open=True)
        database.execute_sql("SELECT 1")
    except OperationalError as e:
        raise DatabaseUnavailable(f"cannot open the database: {str(e).strip().splitlines()[0]}") from e
    finally:
        if not database.is_closed():
            database.close()


class connection:
    """`with connection():` opens a connection for a unit of work and closes it after (pool-friendly)."""

    def __enter__(self) -> None:
        self._opened = database.connect(reuse_if_open=True)

    def __exit__(self, *exc: object) -> None:
        if self._opened and not database.is_closed():
            database.close()


def write_transaction() -> Any:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (IMMEDIATE), so it waits for
    another process's commit (busy_timeout) instead of failing with 'database is locked' when its first
    write finds the database changed under a read snapshot; on PostgreSQL a plain transaction."""
    return database.atomic("IMMEDIATE") if is_sqlite() else database.atomic()
