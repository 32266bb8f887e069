"""Gateway: one listening SMTP gateway on the running event loop, start() then close().

It binds the database, starts the group commit and the worker threads, listens (SO_REUSEPORT, so that
several gateway processes can share a port: serve.py) and, on close(), stops listening, lets the mails
under way finish (bounded by the processing limit) and says 421 to idle connections.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from config import Settings
from gateway.errors import ShuttingDown
from gateway.smtp.committer import GroupCommitter
from gateway.smtp.handler import GatewayHandler
from gateway.smtp.protocol import IDENT, GatewaySMTP
from gateway.smtp.threads import Gate, WorkerThreads, close_connection, grace_seconds, worker_count
from storage import db
from storage.files import FileStore

log = logging.getLogger(__name__)


class Gateway:
    """One listening SMTP gateway on the running event loop: start(), then close()."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gate = Gate(settings.smtp_max_connections, settings.smtp_connections_per_peer)
        self.workers = WorkerThreads(worker_count(settings))
        self.committer: GroupCommitter | None = None
        self.handler: GatewayHandler | None = None
        self.server: asyncio.base_events.Server | None = None
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self._tls = tls_context(settings)

    def _protocol(self) -> GatewaySMTP:
        s = self.settings
        assert self.handler is not None
        return GatewaySMTP(
            self.handler, gate=self.gate, line_length_limit=s.max_line_length,
            data_size_limit=s.max_message_size, enable_SMTPUTF8=True, decode_data=False,
            hostname=s.reply_domain, ident=IDENT, tls_context=self._tls, timeout=s.smtp_timeout,
            idle_seconds=s.smtp_idle_session_seconds, commands_per_mail=s.smtp_commands_per_mail,
            loop=asyncio.get_running_loop())

    async def start(self) -> None:
        if db.database.obj is None:
            db.bind(self.settings)
        _release_large_blocks_at_once()
        if self.settings.log_level != "DEBUG":
            # aiosmtpd logs every command line at INFO: costly per mail, and it would log addresses.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        gate, workers = self.gate, self.workers

        def in_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
            return loop.run_in_executor(workers, fn, *args)

        self.committer = GroupCommitter(FileStore(self.settings.effective_files_dir), in_thread,
                                        on_loop=db.is_sqlite(), receiving=lambda: gate.receiving)
        self.committer.start()
        self.handler = GatewayHandler(self.settings, self.workers, self.gate, self.committer)
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
            if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
                try:
                    transport.write(ShuttingDown().smtp_reply.encode() + b"\r\n")
                finally:
                    transport.close()
        await asyncio.sleep(0)
        if self.committer is not None:
            await self.committer.close()
            close_connection()  # the event loop's own (RCPT checks)
        await asyncio.get_running_loop().run_in_executor(None, lambda: self.workers.shutdown(timeout=5))
        log.info("SMTP gateway stopped")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.smtp_tls_cert and settings.smtp_tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key)
    return context


def _release_large_blocks_at_once() -> None:
    """glibc raises its mmap threshold each time a large block is freed, after which the buffers of a big
    mail come from the worker threads' heaps, which keep the memory once it is freed: each big mail could
    then add its own size to the process for good, depending on which thread took it. A fixed threshold
    keeps every large block in its own mapping, returned when freed. (No effect, and no error, where the C
    library is not glibc.)"""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 256 * 1024)
