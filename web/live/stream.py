"""The live-update stream endpoint of the ASGI app (web/server.py routes /events/ here).

1. At the process's cap: 503 with Retry-After, before any other work.
2. On a reader thread: the Flask view (web/live/views.py) authorises the request exactly as a page is
   authorised, and the stream's first read catches up from Last-Event-ID (or ?after=). A catch-up of
   more than live_resume_limit events is not replayed: the stream sends one "reload" event instead.
3. On the event loop: the stream registers with the hub and writes what the hub queues for it (events,
   heartbeats) until it ends (live_stream_seconds, lost access, the person's cap, shutdown, or the
   client going away). Waiting costs no thread.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from a2wsgi.wsgi import build_environ

from web.context import LIVE_READ
from web.live.hub import Hub, Stream
from web.live.reads import ReadResult, Stopped, read_events
from web.live.views import TICKET

log = logging.getLogger(__name__)

RETRY_MS = 1000  # what the browser waits before reconnecting
RETRY_AFTER_SECONDS = 10  # told to clients when the process is at its cap
MAX_CURSOR_DIGITS = 18
# What a stream keeps of its request for rendering (url_for, script root) on the reader threads.
RENDER_ENVIRON_KEYS = ("SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT", "HTTP_HOST", "wsgi.url_scheme",
                       "SERVER_PROTOCOL", "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR",
                       "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO")

Send = Any
Receive = Any


class _NoBody:
    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, limit: int = -1) -> bytes:
        return b""


def start_cursor(environ: dict[str, Any]) -> int:
    raw = environ.get("HTTP_LAST_EVENT_ID", "")
    if not raw:
        from urllib.parse import parse_qs

        raw = (parse_qs(environ.get("QUERY_STRING", "")).get("after") or [""])[0]
    raw = raw.strip()
    return int(raw) if raw.isdigit() and len(raw) <= MAX_CURSOR_DIGITS else 0


def _authorise(hub: Hub, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes, dict[str, Any],
                                                           ReadResult | None]:
    """Runs the Flask view, then (when it authorised the stream) the catch-up read. On a reader thread."""
    ticket: dict[str, Any] = {}
    environ[TICKET] = ticket
    environ[LIVE_READ] = True  # the reader thread keeps its connection (web/__init__.py's teardown)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"], answer["headers"] = status, headers
        return lambda chunk: None

    body = hub.app(environ, start_response)
    try:
        content = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    result = None
    if ticket:
        render_environ = {k: environ[k] for k in RENDER_ENVIRON_KEYS if k in environ}
        ticket["environ"] = render_environ
        ticket["start"] = start = start_cursor(environ)
        result = read_events(hub.app, hub.renders, render_environ, ticket["viewer"], ticket["thread_id"], start,
                             ticket["mode"], limit=hub.settings.live_resume_limit)
    return answer["status"], answer["headers"], content, ticket, result


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_stream(hub: Hub, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if hub.full() or hub.stopped:
        await _respond(send, 503, [(b"content-type", b"text/plain; charset=utf-8"),
                                   (b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
                       b"Too many live-update streams are open; try again in a few seconds.\n")
        return
    environ = build_environ(scope, _NoBody())  # type: ignore[arg-type]
    before = hub.seq
    try:
        status, headers, content, ticket, result = await asyncio.wrap_future(hub.pool.submit(_authorise, hub,
                                                                                             environ))
    except Stopped:
        await _respond(send, 503, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())], b"")
        return
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
                   if k.lower() != "content-length"]
    if not ticket or result is None:
        await _respond(send, int(status.split(" ", 1)[0]), raw_headers, content)
        return
    stream = Stream(hub, ticket["viewer"], ticket["thread_id"], ticket["mode"], ticket["environ"], ticket["start"],
                    ticket.get("session_id"))
    if not hub.add(stream):
        await _respond(send, 503, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())], b"")
        return
    loop = asyncio.get_running_loop()
    watcher = None
    try:
        stream.take(result)
        if not stream.ended and hub.woken_since(stream.thread_id, before):
            hub.refresh(stream.key)  # a commit may have come between the catch-up read and now
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        first = f"retry: {RETRY_MS}\n: connected\n\n" + "".join(stream.out)
        stream.out.clear()
        await send({"type": "http.response.body", "body": first.encode(), "more_body": True})
        stream.start_timers(loop, hub.settings.live_stream_seconds)
        watcher = asyncio.ensure_future(_watch_disconnect(receive, stream))
        while not stream.ended or stream.out:
            if not stream.out:
                await stream.wake.wait()
            stream.wake.clear()
            if stream.out:
                chunk = "".join(stream.out)
                stream.out.clear()
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        stream.stop_timers()
        hub.remove(stream)
        if watcher is not None:
            watcher.cancel()


async def _watch_disconnect(receive: Receive, stream: Stream) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.end()
            return
