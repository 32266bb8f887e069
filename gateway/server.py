"""The SMTP gateway: receives replies at reply+TOKEN@REPLY_DOMAIN and answers only after they are stored.

GatewayHandler is aiosmtpd's handler and stays thin: RCPT checks the address (gateway/inbound/
authenticate.py) and DATA hands the mail to gateway/inbound/pipeline.py. This module is the only place
that writes SMTP reply text; it takes it from the outcome objects of gateway/errors.py.

Where the work runs is chosen for this 2-core reality: handing work to a thread and back costs ~0.13 ms
of CPU (GIL hand-offs, context switches), more than a small mail's SQL. So on SQLite, RCPT is checked
on the event loop and a small, simple mail (light()) runs its steps there; other mails run their steps
in a worker thread. Every mail is then stored by the group commit (gateway/inbound/committer.py),
which writes files and commits in worker threads and answers each mail only after its commit. Nothing
holds the loop for long: long Markdown is rendered ahead in a thread, and big mails never parse on it.
`serve(processes=N)` runs N such processes on one port (SO_REUSEPORT), one per core being what uses a
machine.

GatewaySMTP adds what aiosmtpd leaves to the application: a connection limit (421 beyond it), long lines
up to MAX_LINE_LENGTH, PIPELINING in EHLO, no AUTH, our own wording for aiosmtpd's fixed refusals, a
leaner DATA reader (whole runs of lines at a time into one buffer, and it lets other connections run
while a large mail streams in), and cached address parsing.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from config import Settings
from gateway.errors import (
    DatabaseBusy,
    Deferred,
    InboundError,
    LineTooLong,
    Outcome,
    ProcessingTimeout,
    ShuttingDown,
    TooLarge,
    TooManyConnections,
    TooManyRecipients,
)
from gateway.inbound import pipeline
from gateway.inbound.authenticate import resolve_recipient
from gateway.inbound.committer import GroupCommitter
from gateway.inbound.mail import REPLY, InboundMail, Recipient
from gateway.inbound.refusal_tally import tally as refusal_tally
from gateway.inbound.store import _reset_connection, record_outcome

log = logging.getLogger(__name__)

IDENT = "WorkRate Messages ESMTP"
MAX_RECIPIENTS = 50  # per mail; a reply goes to one address, a reply-all to a few
RCPT_OK = "250 2.1.5 OK"
# Seconds past the processing limit that the handler still waits for a worker thread. The pipeline checks
# the limit itself before it commits, so a mail answered 451 after this is never posted afterwards.
GRACE_SECONDS = 5.0
# aiosmtpd's own refusal of MAIL FROM with SIZE= above the limit, reworded as a sentence.
_AIOSMTPD_SIZE_EXCEEDED = "552 Error: message size exceeds fixed maximum message size"
YIELD_EVERY = 256 * 1024  # bytes of DATA read before letting the event loop serve other connections
# Mails up to this size are processed on the event loop (SQLite): parsing, trimming and rendering them
# takes well under the 50 ms a handler may hold the loop; larger ones go to a worker thread.
LOOP_MAX_BYTES = 64 * 1024
# ... and that name few MIME boundaries: 1,200 nested multiparts in 64 KB took flanker and then the stdlib
# parser ~0.4 s to give up on, far past that budget. A real reply has two or three.
LOOP_MAX_BOUNDARIES = 16


def light(raw: bytes | bytearray) -> bool:
    """Whether a mail is quick enough to process on the event loop (see LOOP_MAX_BYTES)."""
    if len(raw) > LOOP_MAX_BYTES:
        return False
    return len(_BOUNDARY_PARAM.findall(raw)) <= LOOP_MAX_BOUNDARIES


_BOUNDARY_PARAM = re.compile(rb"boundary\s*=", re.IGNORECASE)


class Gate:
    """Connections and DATA transactions in progress, shared by the connections of one listener."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.connections: set[GatewaySMTP] = set()
        self.in_flight = 0
        self.receiving = 0  # DATA transactions answered 354 whose mail has not all arrived yet
        self.closing = False


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
        from storage.db import database

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
            try:
                if database.obj is not None and not database.is_closed():
                    database.close()
            except Exception:
                pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            end = time.monotonic() + (timeout if timeout is not None else 3600)
            for thread in threads:
                thread.join(max(0.0, end - time.monotonic()))


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with the gateway's limits and wording."""

    def __init__(self, handler: GatewayHandler, *, gate: Gate, line_length_limit: int, **kwargs: Any) -> None:
        # aiosmtpd sizes its stream reader from this attribute in __init__; RFC 5321's 1,000 octets is too
        # little for the one-line HTML that real mail carries.
        self.line_length_limit = line_length_limit
        self._gate = gate
        super().__init__(handler, **kwargs)

    async def _handle_client(self) -> None:
        gate = self._gate
        if gate.closing or len(gate.connections) >= gate.limit:
            outcome = ShuttingDown() if gate.closing else TooManyConnections()
            log.warning("refused a connection from %s: %s", self.session.peer if self.session else "?",
                        outcome.reason)
            try:
                await SMTP.push(self, outcome.smtp_reply)
            finally:
                if self.transport is not None:
                    self.transport.close()
            return
        gate.connections.add(self)
        try:
            await super()._handle_client()
        finally:
            gate.connections.discard(self)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the mail in large pieces into one buffer (one await per piece instead of
        one per line): RFC 5321 dot-unstuffing, the size and line limits (the rest of the mail is read and
        dropped, then refused), a pause between large pieces."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._gate.receiving += 1  # the group commit waits a moment for this mail (committer.py)
        try:
            content, refusal = await self._read_data()
        except asyncio.CancelledError:
            self._writer.close()
            raise
        finally:
            self._gate.receiving -= 1
        if refusal is not None:
            await self.event_handler.record_unread(self.session, self.envelope, refusal)
            self._set_post_data_state()
            await SMTP.push(self, refusal.smtp_reply)
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytearray, Outcome | None]:
        """The mail up to the line ".", dot-unstuffed, or the refusal it earned.

        Reads up to each ".\r\n" (whole runs of lines, since few lines end with a dot; at most the reader's
        limit at a time) and checks whether that dot starts a line. Lines never become objects: lengths
        are measured between the newlines bytes.find finds.
        """
        reader = self._reader
        limit = self.data_size_limit
        line_limit = self.line_length_limit
        content = bytearray()
        refusal: Outcome | None = None
        size = 0
        tail = b"\r\n"  # the last two bytes read: the DATA command's line end at first
        line_length = 0  # bytes of the line under way, up to the end of what was read
        while True:
            try:
                piece = await reader.readuntil(b".\r\n")
                dot = len(piece) - 3
                final = (piece[dot - 2:dot] if dot >= 2 else (tail + piece[:dot])[-2:]) == b"\r\n"
                if final:
                    piece = piece[:dot]  # the end of the mail: a line holding only "."
            except asyncio.LimitOverrunError as e:
                piece = await reader.readexactly(e.consumed)
                final = False
            size += len(piece)
            first = piece.find(b"\n")
            if first < 0:
                line_length += len(piece)
            else:
                if line_length + first > line_limit or _has_long_line(piece, first, line_limit):
                    refusal = refusal or LineTooLong()
                line_length = len(piece) - piece.rfind(b"\n") - 1
            if line_length > line_limit:
                refusal = refusal or LineTooLong()
            if refusal is None and limit and size > limit:
                refusal = TooLarge()
            if refusal is not None:
                content = bytearray()  # the rest is read and dropped
            else:
                # Dot-unstuffing (RFC 5321 4.5.2): a line's leading dot goes, also when the line starts
                # on the boundary between two pieces.
                body = piece.replace(b"\r\n.", b"\r\n") if b"\r\n." in piece else piece
                if tail == b"\r\n" and body[:1] == b".":
                    body = body[1:]
                elif tail[-1:] == b"\r" and body[:2] == b"\n.":
                    body = b"\n" + body[2:]
                content += body
            if final:
                return content, refusal
            tail = (tail + piece[-2:])[-2:]
            if len(piece) >= YIELD_EVERY:
                await asyncio.sleep(0)  # let other connections run while a large mail streams in

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing for MAIL FROM and RCPT TO, remembered per argument: the stdlib parser
        it uses (and the class aiosmtpd defines on every call) cost more than the rest of the command."""
        addr, rest, local_part = _parse_address(arg)
        if addr is not None and self.local_part_limit and local_part > self.local_part_limit:
            return None, None
        return addr, rest

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith(_AIOSMTPD_SIZE_EXCEEDED):
            status = TooLarge().smtp_reply  # MAIL FROM … SIZE= above the limit
        await super().push(status)


class GatewayHandler:
    """aiosmtpd handler: RCPT and DATA hooks that run the pipeline and store through the group commit."""

    def __init__(self, settings: Settings, workers: WorkerThreads, gate: Gate,
                 committer: GroupCommitter | None = None) -> None:
        self.settings = settings
        self.workers = workers
        self.gate = gate
        self.committer = committer  # group commit (gateway/inbound/committer.py)
        self._rcpt_on_loop = not settings.is_postgres

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.workers, fn, *args)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands in order anyway; say so. There is no AUTH: nobody logs in here.
        lines = [line for line in responses if not line.startswith("250-AUTH")]
        lines.insert(len(lines) - 1, "250-PIPELINING")
        return lines

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TooManyRecipients().smtp_reply
        try:
            if self.committer is not None and self._rcpt_on_loop:
                # SQLite: one indexed read, which never waits for writers (WAL); a hand-off to a worker thread
                # and back would cost several times its CPU. (A PostgreSQL server may be slow to answer.)
                recipient = self._resolve(address)
            else:
                limit = self.settings.smtp_processing_timeout
                recipient = await asyncio.wait_for(self._in_thread(self._resolve, address),
                                                   limit + grace_seconds(limit))
        except TimeoutError:
            log.warning("checking RCPT %r took too long; answered 451", address[:200])
            return ProcessingTimeout().smtp_reply
        except InboundError as e:
            log.info("refused RCPT %r from %s: %s", address[:200], _peer(session), e.reason)
            peer = getattr(session, "peer", None)
            refusal_tally.note(str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or ""), address,
                               e.reason, e.code, e.text)  # for the mail log, counted, written in batches
            return e.smtp_reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        recipients: list[Recipient] | None = getattr(envelope, "workrate_recipients", None)
        if recipients is None:
            recipients = []
            envelope.workrate_recipients = recipients  # type: ignore[attr-defined]
        recipients.append(recipient)
        return RCPT_OK

    def _resolve(self, address: str) -> Recipient:
        """In a worker thread: the recipient, or an InboundError to answer with (451 on database trouble)."""
        from peewee import DatabaseError, InterfaceError

        from storage.db import database

        try:
            database.connect(reuse_if_open=True)
            return resolve_recipient(address, self.settings)
        except InboundError:
            raise
        except (DatabaseError, InterfaceError) as e:
            log.warning("database error checking RCPT %r: %s", address[:200], e)
            _reset_connection()
            raise DatabaseBusy() from e
        except Exception as e:
            log.exception("unexpected error checking RCPT %r", address[:200])
            raise Deferred() from e

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        limit = self.settings.smtp_processing_timeout
        mail = InboundMail(
            raw=envelope.original_content or b"", settings=self.settings,
            mail_from=str(envelope.mail_from or ""), recipients=list(getattr(envelope, "workrate_recipients", [])),
            peer=_peer(session), deadline=time.monotonic() + limit)
        self.gate.in_flight += 1
        try:
            if self.committer is None:
                work: Any = self._in_thread(pipeline.run, mail)
            else:
                # Small mails run their steps on the event loop (a few hundred microseconds of CPU, less than
                # the hand-off to a thread); large ones, bounces (which write at once) and replies to the plain
                # reply@ address (which query the database) in a worker thread. Both are stored by the group
                # commit. Shielded: past the time limit the handler answers 451 but the mail's attempt goes
                # on and records its outcome, as a worker thread would.
                self.committer.expect(mail)
                small = light(mail.raw) and all(r.kind == REPLY for r in mail.recipients)
                work = asyncio.shield(pipeline.run_with_committer(mail, self.committer, self._in_thread, on_loop=small))
            outcome = await asyncio.wait_for(work, limit + grace_seconds(limit))
        except TimeoutError:
            log.warning("mail from %s to %s took longer than %ss; answered 451 (raw mail kept as %s)",
                        mail.mail_from or "<>", mail.rcpt_to, limit, mail.raw_key or "not yet stored")
            outcome = ProcessingTimeout()
        finally:
            self.gate.in_flight -= 1
            if self.committer is not None:
                self.committer.forget(mail)
        return outcome.smtp_reply

    async def record_unread(self, session: Session | None, envelope: Envelope | None, outcome: Outcome) -> None:
        """Records a DATA transaction refused while it was read (too large, line too long)."""
        mail = InboundMail(
            raw=b"", settings=self.settings, mail_from=str(getattr(envelope, "mail_from", "") or ""),
            recipients=list(getattr(envelope, "workrate_recipients", [])), peer=_peer(session))
        try:
            await self._in_thread(record_outcome, mail, outcome)
        except Exception:
            log.exception("could not record a refused mail")

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer "500 Error: (ExceptionType) text": permanent, and it shows internals.
        log.exception("SMTP session error: %s: %s", type(error).__name__, error)
        return Deferred().smtp_reply


@functools.lru_cache(maxsize=4096)
def _parse_address(arg: str) -> tuple[str | None, str | None, int]:
    """(address, rest of the argument, length of the local part) as aiosmtpd's SMTP._getaddr finds them."""
    if not arg:
        return "", "", 0
    try:
        if arg.lstrip().startswith("<"):
            address, rest = get_angle_addr(arg)
        else:
            address, rest = get_addr_spec(arg)
    except HeaderParseError:
        return None, None, 0
    addr = address.addr_spec
    return addr, rest, len(addr.rpartition("@")[0])


def _has_long_line(piece: bytes, first: int, line_limit: int) -> bool:
    """Whether a line that starts and ends inside piece (between its first and last newline) is longer than
    line_limit bytes; split only when the span could hold one."""
    last = piece.rfind(b"\n")
    if last - first - 1 <= line_limit:
        return False
    return max(map(len, piece[first + 1:last].split(b"\n"))) > line_limit


def _release_large_blocks_at_once() -> None:
    """glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which the
    buffers of a big mail come from the worker threads' heaps, which keep the memory once it is freed:
    each 25 MB mail could then add its own size to the process for good, depending on which thread
    took it. A fixed threshold keeps every block over 256 KB in its own mapping, returned when freed.
    (No effect, and no error, where the C library is not glibc.)"""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 256 * 1024)


def _close_connection() -> None:
    from storage.db import database

    try:
        if database.obj is not None and not database.is_closed():
            database.close()
    except Exception:
        pass


def grace_seconds(limit: float) -> float:
    return min(GRACE_SECONDS, max(1.0, limit))


def _peer(session: Session | None) -> str:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.smtp_tls_cert and settings.smtp_tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key)
    return context


def worker_count(settings: Settings) -> int:
    # SQLite takes one writer at a time and parsing holds the GIL: a few threads keep the loop free.
    # PostgreSQL round trips release the GIL, so more threads overlap them.
    return 8 if settings.is_postgres else 4


class Gateway:
    """One listening SMTP gateway on the running event loop: start(), then close()."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gate = Gate(settings.smtp_max_connections)
        self.workers = WorkerThreads(worker_count(settings))
        self.committer: GroupCommitter | None = None
        self.handler = GatewayHandler(settings, self.workers, self.gate)
        self.server: asyncio.base_events.Server | None = None
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self._tls = tls_context(settings)

    def _protocol(self) -> GatewaySMTP:
        s = self.settings
        return GatewaySMTP(
            self.handler, gate=self.gate, line_length_limit=s.max_line_length,
            data_size_limit=s.max_message_size, enable_SMTPUTF8=True, decode_data=False,
            hostname=s.reply_domain, ident=IDENT, tls_context=self._tls, timeout=s.smtp_timeout,
            loop=asyncio.get_running_loop())

    async def start(self) -> None:
        from storage import db

        if db.database.obj is None:
            db.bind(self.settings)
        _release_large_blocks_at_once()
        if self.settings.log_level != "DEBUG":
            # aiosmtpd logs every command line at INFO: costly per mail, and it would log addresses.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        from storage.files import FileStore

        gate = self.gate
        self.committer = GroupCommitter(FileStore(self.settings.effective_files_dir), self.handler._in_thread,
                                        on_loop=db.is_sqlite(), receiving=lambda: gate.receiving)
        self.committer.start()
        self.handler.committer = self.committer
        self.server = await loop.create_server(
            self._protocol, host=self.settings.smtp_host, port=self.settings.smtp_port, reuse_address=True,
            reuse_port=hasattr(socket, "SO_REUSEPORT"), backlog=max(100, self.settings.smtp_max_connections))
        sockname = self.server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        log.info("SMTP gateway listening on %s:%s for replies to *@%s", self.host, self.port,
                 self.settings.reply_domain)

    async def close(self) -> None:
        """Stops listening, lets mails being processed finish (bounded), then closes idle connections."""
        self.gate.closing = True
        if self.server is not None:
            self.server.close()
        limit = self.settings.smtp_processing_timeout
        end = time.monotonic() + limit + grace_seconds(limit)
        while self.gate.in_flight and time.monotonic() < end:
            await asyncio.sleep(0.05)
        for connection in list(self.gate.connections):
            transport = connection.transport
            if transport is not None and not transport.is_closing():
                try:
                    transport.write(ShuttingDown().smtp_reply.encode() + b"\r\n")
                finally:
                    transport.close()
        await asyncio.sleep(0)
        if self.committer is not None:
            await self.committer.close()
            _close_connection()  # the event loop's own (RCPT checks)
        await asyncio.get_running_loop().run_in_executor(None, lambda: self.workers.shutdown(timeout=5))
        log.info("SMTP gateway stopped")


async def serve(settings: Settings, stop: asyncio.Event, processes: int | None = None) -> None:
    """Serves SMTP on SMTP_HOST:SMTP_PORT until stop is set, then closes cleanly and returns.

    processes: how many gateway processes share the port (SO_REUSEPORT; the kernel spreads connections
    over them). Python runs one core's worth of a process's work, so one process per core is what uses a
    machine. None: settings.smtp_processes where that setting exists, else 1; 0: one per CPU. This process
    is the first; the others are started here and stopped (SIGTERM, they finish their mails) with it.
    """
    count = process_count(settings, processes)
    gateway = Gateway(settings)
    await gateway.start()
    others: list[Any] = []
    try:
        if count > 1:
            # The others listen on the port this one got (it may have been 0: any free port).
            shared = settings.replace(smtp_port=gateway.port)
            others = [await asyncio.to_thread(_start_process, shared) for _ in range(count - 1)]
            log.info("SMTP gateway: %d processes share %s:%s", count, gateway.host, gateway.port)
        await stop.wait()
    finally:
        for process in others:
            if process.is_alive():
                process.terminate()
        await gateway.close()
        for process in others:
            await asyncio.to_thread(process.join, settings.smtp_processing_timeout + GRACE_SECONDS + 5)
            if process.is_alive():
                process.kill()


def process_count(settings: Settings, processes: int | None = None) -> int:
    if processes is None:
        processes = int(getattr(settings, "smtp_processes", 1))
    if processes <= 0:
        processes = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, processes)


def _start_process(settings: Settings) -> Any:
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(
        target=_process_main, args=(settings,), name="workrate-smtp", daemon=True)
    process.start()
    return process


def _process_main(settings: Settings) -> None:
    """One more gateway process (spawned by serve): the same gateway, until SIGTERM or SIGINT."""
    import signal

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop, processes=1)

    asyncio.run(main())


class GatewayThread:
    """The gateway on its own event loop in a background thread (tests, tools), like aiosmtpd's Controller:
    start() returns once it listens (see .host and .port); stop() closes it as serve() does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def host(self) -> str:
        assert self.gateway is not None
        return self.gateway.host

    @property
    def port(self) -> int:
        assert self.gateway is not None
        return self.gateway.port

    def start(self) -> GatewayThread:
        self._thread = threading.Thread(target=self._run, name="smtp-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.gateway = Gateway(self.settings)
            try:
                await self.gateway.start()
            except BaseException as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.gateway.close()

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)


def make_controller(settings: Settings) -> GatewayThread:
    """A gateway for tests: `controller = make_controller(settings).start()` … `controller.stop()`."""
    return GatewayThread(settings)
