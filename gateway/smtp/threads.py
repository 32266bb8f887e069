"""Where the gateway's work runs: the event loop or a small pool of worker threads.

Handing work to a thread and back costs more CPU than a small mail's SQL, so a small, simple mail
(steps_on_loop) runs its steps on the event loop and everything else in a worker thread (WorkerThreads);
nothing holds the loop for long. Gate counts what one listener has under way, for the connection limit
and for a clean shutdown.
"""
from __future__ import annotations

import collections
import concurrent.futures
import ipaddress
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP

from config import Settings
from gateway.inbound.mail import REPLY, InboundMail
from storage.db import database

# Seconds past the processing limit that the handler still waits for a worker thread. The pipeline checks
# the limit itself before it commits, so a mail answered 451 after this is never posted afterwards.
GRACE_SECONDS = 5.0
# Mails up to this size are processed on the event loop: parsing, trimming and rendering them is brief
# enough not to hold other connections up; larger ones go to a worker thread.
LOOP_MAX_BYTES = 64 * 1024
# ... and that name few MIME boundaries: deeply nested multiparts take the parsers long to give up on,
# even in a small mail. A real reply has two or three.
LOOP_MAX_BOUNDARIES = 16
_BOUNDARY_PARAM = re.compile(rb"boundary\s*=", re.IGNORECASE)


def light(raw: bytes | bytearray) -> bool:
    """Whether a mail is quick enough to process on the event loop (see LOOP_MAX_BYTES)."""
    if len(raw) > LOOP_MAX_BYTES:
        return False
    return len(_BOUNDARY_PARAM.findall(raw)) <= LOOP_MAX_BOUNDARIES


def steps_on_loop(mail: InboundMail) -> bool:
    """Whether mail's steps run on the event loop: a light mail to reply addresses only. Bounces (which
    write at once) and mails to the plain reply@ address (which query the database) go to a thread."""
    return light(mail.raw) and all(r.kind == REPLY for r in mail.recipients)


def grace_seconds(limit: float) -> float:
    return min(GRACE_SECONDS, max(1.0, limit))


def worker_count(settings: Settings) -> int:
    # SQLite takes one writer at a time and parsing holds the GIL: a few threads keep the loop free.
    # PostgreSQL round trips release the GIL, so more threads overlap them.
    return 8 if settings.is_postgres else 4


class Gate:
    """Connections and DATA transactions in progress, shared by the connections of one listener."""

    def __init__(self, limit: int, per_peer: int | None = None) -> None:
        self.limit = limit
        self.per_peer = per_peer or limit
        self.connections: set[SMTP] = set()
        self.by_peer: collections.Counter[str] = collections.Counter()  # open connections per peer_key
        self.in_flight = 0
        self.receiving = 0  # DATA transactions answered 354 whose mail has not all arrived yet
        self.closing = False


def peer_key(peer: object) -> str:
    """Whom a connection counts against for SMTP_CONNECTIONS_PER_PEER: its IPv4 address, or its IPv6 /64
    (one host is given a whole /64, so its addresses count together)."""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return host[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class WorkerThreads(concurrent.futures.Executor):
    """A small pool of daemon threads for the pipeline. Each keeps its own database connection open
    between mails (and closes it on shutdown); being daemons, a thread stuck on a hostile mail cannot
    keep the process from exiting."""

    def __init__(self, count: int, name: str = "smtp-worker") -> None:
        self._count = count
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn, args, kwargs))
        with self._lock:
            if len(self._threads) < self._count:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                future, fn, args, kwargs = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:
                    future.set_exception(e)
        finally:
            close_connection()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            end = time.monotonic() + (timeout if timeout is not None else 3600)
            for thread in threads:
                thread.join(max(0.0, end - time.monotonic()))


def close_connection() -> None:
    """Closes this thread's database connection, if it has one open."""
    try:
        if database.obj is not None and not database.is_closed():
            database.close()
    except Exception:
        pass
