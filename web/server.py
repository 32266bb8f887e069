"""The production web server: cheroot (CherryPy's WSGI server) with a pool of settings.web_threads threads.

Why cheroot: it is a pure-Python, long-maintained HTTP/1.1 server with a fixed thread pool, and it parks
idle keep-alive connections in a selector instead of a thread. A live-update stream holds one thread
while it is open (waiting on a condition variable, not the database) and ends after
settings.live_stream_seconds; the browser's EventSource then reconnects with Last-Event-ID. Size the
pool (WORKRATE_WEB_THREADS) for the open streams plus the page loads.
"""
from __future__ import annotations

import logging
import threading

from cheroot import wsgi

from config import Settings

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 256
SOCKET_TIMEOUT = 30  # seconds a client may take to send its request
SHUTDOWN_SECONDS = 5  # how long stop() lets in-flight requests finish


class WebServer:
    """`WebServer(settings).start()` serves the app in background threads; `.stop()` shuts it down."""

    def __init__(self, settings: Settings) -> None:
        from web.app import create_app

        self.settings = settings
        self.app = create_app(settings)
        self._server = wsgi.Server(
            (settings.web_host, settings.web_port), self.app,
            numthreads=settings.web_threads, max=settings.web_threads,
            request_queue_size=LISTEN_BACKLOG, timeout=SOCKET_TIMEOUT, shutdown_timeout=SHUTDOWN_SECONDS,
            server_name="workrate",
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (useful with web_port=0)."""
        return int(self._server.bind_addr[1])

    def start(self) -> None:
        """Binds settings.web_host:web_port and serves in background threads; returns once listening."""
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="workrate-web", daemon=True)
        self._thread.start()
        log.info("web server listening on %s:%s with %d threads", self.settings.web_host, self.port,
                 self.settings.web_threads)

    def stop(self) -> None:
        """Ends live-update streams, lets in-flight requests finish (up to SHUTDOWN_SECONDS) and closes the
        socket."""
        from web.events import stop_watcher

        stop_watcher(self.app)
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=SHUTDOWN_SECONDS + 5)
            self._thread = None
