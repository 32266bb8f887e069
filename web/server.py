"""The web server of `workrate web` and `workrate run`: uvicorn (an asyncio HTTP/1.1 server) serving one
ASGI app on one address.

- /events/… : live-update streams (web/live/stream.py), served on the event loop; an open stream holds
  no thread, only a socket and a few small objects.
- everything else: the Flask app (pages, forms, attachments, JSON API) through a2wsgi's WSGI adapter,
  on a pool of settings.web_threads threads.

Slow clients hold no thread either: a request's headers must arrive within web_header_timeout (the
connection is closed otherwise), and its body is read on the event loop, each piece within
web_body_timeout (408 otherwise), before the request is handed to a Flask thread; bodies larger than
1 MiB wait in a temporary file.
"""
from __future__ import annotations

import asyncio
import logging
import resource
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from a2wsgi import WSGIMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from config import Settings
from web.live.hub import Hub
from web.live.stream import serve_stream

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048
KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection is closed after this long
SHUTDOWN_SECONDS = 5  # how long stop() lets in-flight requests finish
SPOOL_BYTES = 1024 * 1024  # request bodies above this wait in a temporary file
CHUNK = 64 * 1024
START_SECONDS = 30

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def protocol_with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request headers take longer than `seconds`
    (from the connection or from the end of the previous response on a keep-alive connection)."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


class WebApp:
    """The ASGI app: /events/ to the live-update hub, everything else to Flask (see the module doc)."""

    def __init__(self, flask_app: Any, settings: Settings, hub: Hub) -> None:
        self.flask_app = flask_app
        self.settings = settings
        self.hub = hub
        self.wsgi = WSGIMiddleware(flask_app, workers=settings.web_threads)
        self.max_body = int(flask_app.config.get("MAX_CONTENT_LENGTH") or settings.max_message_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/events/"):
            await serve_stream(self.hub, scope, receive, send)
            return
        body = await self._read_body(scope, receive)
        if body is None:
            await send({"type": "http.response.start", "status": 408,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": b"The request took too long to arrive.\n"})
            return
        try:
            await self.wsgi(scope, _replay(body), send)  # type: ignore[arg-type]
        finally:
            body.close()

    async def _read_body(self, scope: Scope, receive: Receive) -> Any:
        """The request body in a spooled file (None when a piece of it took longer than web_body_timeout).
        A body declared larger than the app accepts is not read: Flask answers 413 from its length."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), b"")
        if scope.get("method") in ("GET", "HEAD") and not length:
            return spool
        if length.isdigit() and int(length) > self.max_body:
            return spool
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.settings.web_body_timeout)
            except TimeoutError:
                spool.close()
                return None
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_body + 1:
                spool.write(chunk)
            if not message.get("more_body", False):
                break
        spool.seek(0)
        return spool


def _replay(spool: Any) -> Receive:
    async def receive() -> dict[str, Any]:
        chunk = spool.read(CHUNK)
        return {"type": "http.request", "body": chunk, "more_body": len(chunk) == CHUNK}

    return receive


def raise_open_files_limit() -> int:
    """Raises this process's limit of open files to its hard limit (each open stream is a socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            log.debug("could not raise the open-files limit", exc_info=True)
    return soft


class WebServer:
    """`WebServer(settings).start()` serves pages and live updates on settings.web_host:web_port from a
    background thread running its own event loop; `.stop()` shuts it down."""

    def __init__(self, settings: Settings) -> None:
        from web.app import create_app

        self.settings = settings
        self.app = create_app(settings)
        self.hub = Hub(self.app, settings)
        self.asgi = WebApp(self.app, settings, self.hub)
        self._sock = socket.socket(socket.AF_INET6 if ":" in settings.web_host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((settings.web_host, settings.web_port))
        self._sock.listen(LISTEN_BACKLOG)
        self._sock.setblocking(False)
        config = uvicorn.Config(
            self.asgi, http=protocol_with_header_timeout(settings.web_header_timeout), ws="none",
            lifespan="off", access_log=False, log_config=None, server_header=False,
            proxy_headers=False,  # the Flask app trusts X-Forwarded-* itself, as far as proxy_hops says
            timeout_keep_alive=KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=SHUTDOWN_SECONDS,
            backlog=LISTEN_BACKLOG)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: BaseException | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (useful with web_port=0)."""
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Serves in a background thread; returns once listening."""
        raise_open_files_limit()
        self._thread = threading.Thread(target=self._run, name="workrate-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self._server.started:
            if self._failed is not None or not self._thread.is_alive():
                raise RuntimeError(f"the web server did not start: {self._failed}")
            if time.monotonic() > deadline:
                raise RuntimeError("the web server did not start in time")
            time.sleep(0.01)
        log.info("web server listening on %s:%s (pages on %d threads, live updates on the event loop)",
                 self.settings.web_host, self.port, self.settings.web_threads)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported by start() or logged
            self._failed = e
            log.exception("the web server stopped")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.hub.start(self._loop)
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self.hub.stop()
            self.asgi.wsgi.executor.shutdown(wait=False)

    def stop(self) -> None:
        """Ends live-update streams, lets in-flight requests finish (up to 5 s) and closes the socket."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.hub.stop)
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=SHUTDOWN_SECONDS + 5)
            self._thread = None
        self._sock.close()
