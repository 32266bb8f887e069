"""Change signals for live updates: "thread T has new events", "user U's access changed".

On PostgreSQL a signal is a NOTIFY on channel `workrate_live`, sent inside the writing transaction: the
database delivers it at COMMIT (never for a rolled-back transaction) to every process that LISTENs,
the writer's own included. On SQLite there is no such thing, so a signal is kept until the writing
transaction has committed (committed() is called after it), then handed to this process's listeners
and sent as one datagram to every other process listening on the same database file: each web process
binds a Unix datagram socket in the folder `<database file>-live/` (web/live/wakeups.py). Sending never
waits: a socket whose process is gone is removed, a full one is skipped (that process's poll of the
event log is the backstop).

The payload is "t<thread id>" or "a<user id>": ids only, never content, so a signal says nothing that
the visibility rule has not yet decided on.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from peewee import SqliteDatabase

from storage.db import database, is_sqlite

log = logging.getLogger(__name__)

CHANNEL = "workrate_live"
THREAD = "t"
ACCESS = "a"

WAKE_FOLDER_SUFFIX = "-live"  # <database file>-live/: one socket per listening web process
SOCKET_SUFFIX = ".sock"
DATAGRAM_BYTES = 4096  # payload per datagram; a commit that signalled more is sent in several
_SHORT_PATH = 100  # AF_UNIX paths are limited to 108 bytes; longer ones go through a folder descriptor
_FOLDER_FDS_KEPT = 4

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
    """After a writing transaction: hands the signals it made to this process's listeners and sends them
    to the other processes on the same database (SQLite). Inside a still-open outer transaction it waits
    for a later call (other processes' polls see the commit in any case)."""
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
    try:
        broadcast(pending)
    except Exception:  # other processes' polls find the change; the post has committed either way
        log.warning("live updates: could not signal other processes", exc_info=True)


def forget() -> None:
    """After a rolled-back transaction: drops the signals it made (SQLite)."""
    _pending.signals = set()


def payload(signals: Iterable[tuple[str, int]]) -> list[bytes]:
    """Datagrams carrying the signals as "t12 t13 a5", each at most DATAGRAM_BYTES long."""
    out: list[bytes] = []
    words: list[str] = []
    size = 0
    for kind, ident in sorted(signals):
        word = f"{kind}{int(ident)}"
        if words and size + len(word) + 1 > DATAGRAM_BYTES:
            out.append(" ".join(words).encode())
            words, size = [], 0
        words.append(word)
        size += len(word) + 1
    if words:
        out.append(" ".join(words).encode())
    return out


def parse_datagram(data: bytes) -> list[tuple[str, int]]:
    """The signals of a datagram; what is not one of ours is ignored."""
    found = []
    for word in data.decode("ascii", "replace").split():
        parsed = parse(word)
        if parsed is not None:
            found.append(parsed)
    return found


def wake_folder() -> Path | None:
    """SQLite: the folder of the listening processes' sockets, beside the database file (so every process
    using that file finds it, whatever its data folder); None on PostgreSQL or an in-memory database."""
    db = database.obj
    if not isinstance(db, SqliteDatabase):
        return None
    name = str(db.database or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name).resolve()
    return path.with_name(path.name + WAKE_FOLDER_SUFFIX)


_own_sockets: set[str] = set()  # names of this process's listening sockets: it hears itself directly
_folder_fds: dict[Path, int] = {}
_sender: socket.socket | None = None
_sender_lock = threading.Lock()


def socket_address(path: Path) -> str:
    """An address for bind/sendto: the path itself, or, when it is too long for AF_UNIX, the same file
    reached through an open descriptor of its folder (/proc/self/fd/N/name)."""
    if len(os.fsencode(str(path))) < _SHORT_PATH:
        return str(path)
    with _sender_lock:
        fd = _folder_fds.get(path.parent)
        if fd is None:
            if len(_folder_fds) >= _FOLDER_FDS_KEPT:  # a process normally uses one database; tests use many
                os.close(_folder_fds.pop(next(iter(_folder_fds))))
            fd = _folder_fds[path.parent] = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{path.name}"


def listening(name: str, on: bool) -> None:
    """Marks one of this process's sockets (by file name), which broadcast() then leaves out."""
    with _sender_lock:
        if on:
            _own_sockets.add(name)
        else:
            _own_sockets.discard(name)


def broadcast(signals: Iterable[tuple[str, int]]) -> int:
    """Sends the signals to every other process listening on this SQLite database; how many got them."""
    global _sender
    folder = wake_folder()
    if folder is None:
        return 0
    try:
        names = [n for n in os.listdir(folder) if n.endswith(SOCKET_SUFFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    with _sender_lock:
        names = [n for n in names if n not in _own_sockets]
        if not names:
            return 0
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        sender = _sender
    datagrams = payload(signals)
    reached = 0
    for name in names:
        path = folder / name
        try:
            address = socket_address(path)
            for datagram in datagrams:
                sender.sendto(datagram, address)
            reached += 1
        except ConnectionRefusedError:
            # Its process is gone without removing it (killed): nobody will read it again.
            try:
                path.unlink()
            except OSError:
                pass
        except FileNotFoundError:
            pass  # removed meanwhile (its process stopped)
        except BlockingIOError:
            pass  # that process is behind on reading: its poll of the event log finds the change
        except OSError:
            log.debug("live updates: cannot signal %s", path, exc_info=True)
    return reached


def parse(payload: str) -> tuple[str, int] | None:
    """(kind, id) of a NOTIFY payload, None when it is not one of ours."""
    kind, digits = payload[:1], payload[1:]
    if kind in (THREAD, ACCESS) and digits.isdigit() and len(digits) < 19:
        return kind, int(digits)
    return None
