"""A small client for a running `workrate web` over a real socket: sign in with a one-time link (keeping
the session cookie) and read a live-update stream (Server-Sent Events) in a background thread.

The stream is requested as HTTP/1.0, so the server sends it unchunked and closes at its end; close()
shuts the socket down from our side. Not a test module; used by tests/test_multiprocess.py and bench/web.py.
"""
from __future__ import annotations

import http.cookiejar
import json
import queue
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIE = "workrate_session"


def sign_in_with_link(link: str, base_url: str | None = None) -> str:
    """Follows a `workrate login-link` URL (GET shows a button, POST signs in) and returns the Cookie header.

    base_url, when given, replaces the link's scheme and host (to sign in on a chosen web process).
    """
    parts = urllib.parse.urlsplit(link)
    if base_url:
        link = base_url.rstrip("/") + parts.path
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(link, timeout=30).read().decode()
    match = CSRF_RE.search(page)
    if match is None:
        raise AssertionError(f"no CSRF token on the sign-in link page:\n{page[:2000]}")
    body = urllib.parse.urlencode({"csrf_token": match.group(1)}).encode()
    opener.open(urllib.request.Request(link, data=body, method="POST"), timeout=30).read()
    cookies = {c.name: c.value for c in jar}
    if SESSION_COOKIE not in cookies:
        raise AssertionError(f"signing in set no {SESSION_COOKIE} cookie (got {sorted(cookies)})")
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def request_json(url: str, method: str = "GET", payload: Any = None, token: str = "",
                 timeout: float = 30) -> tuple[int, Any]:
    """One JSON request (Bearer token when given); returns (status, decoded body)."""
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@dataclass
class SseEvent:
    event: str
    data: dict[str, Any]
    id: str | None
    received_at: float  # time.perf_counter() when its blank line arrived


@dataclass
class SseStream:
    """`SseStream(port, path, cookie).open()`: reads events into .events (a queue) until closed."""

    port: int
    path: str
    cookie: str = ""
    host: str = "127.0.0.1"
    last_event_id: str = ""
    status: int = 0
    connected: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue[SseEvent] = field(default_factory=queue.Queue)
    seen: list[SseEvent] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None

    def open(self, timeout: float = 30) -> SseStream:
        self._sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._sock.settimeout(None)
        head = [f"GET {self.path} HTTP/1.0", f"Host: {self.host}:{self.port}", "Accept: text/event-stream"]
        if self.cookie:
            head.append(f"Cookie: {self.cookie}")
        if self.last_event_id:
            head.append(f"Last-Event-ID: {self.last_event_id}")
        self._sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self._thread = threading.Thread(target=self._read, name="sse-client", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 30) -> None:
        if not self.connected.wait(timeout):
            raise AssertionError(f"live-update stream {self.path} did not connect (status {self.status})")

    def wait_for(self, predicate: Callable[[SseEvent], bool], timeout: float) -> SseEvent:
        """The first event (already seen or to come) for which predicate is true; AssertionError on timeout."""
        for ev in list(self.seen):
            if predicate(ev):
                return ev
        end = time.monotonic() + timeout
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching live-update event within {timeout} s; saw {self.seen!r}")
            try:
                ev = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if predicate(ev):
                return ev

    def close(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._thread is not None:
            self._thread.join(5)

    def _read(self) -> None:
        assert self._sock is not None
        buf = b""
        header_done = False
        fields: dict[str, str] = {}
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                if not header_done:
                    if b"\r\n\r\n" not in buf:
                        continue
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.status = int(head.split(b" ", 2)[1])
                    header_done = True
                    if self.status != 200:
                        return
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    if line.startswith(":"):
                        if line.startswith(": connected"):
                            self.connected.set()
                    elif line:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        fields[name] = fields[name] + "\n" + value if name == "data" and name in fields else value
                    elif "data" in fields:
                        ev = SseEvent(fields.get("event", "message"), json.loads(fields["data"]), fields.get("id"),
                                      time.perf_counter())
                        self.seen.append(ev)
                        self.events.put(ev)
                        fields = {}
                    else:
                        fields = {}
        except OSError:
            return
        finally:
            self.ended.set()
