"""Live updates: the SSE stream reads the ThreadEvent log through the visibility rule. A new message
reaches an open stream within 2 seconds whether it was posted in this process, in another thread or in
another process; a client's stream never carries an internal note; Last-Event-ID resumes; streams end
after live_stream_seconds and hold no database connection between reads; the real server (cheroot)
serves streams without slowing ordinary pages."""
from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from peewee import fn
from web_support import CLIENT_TEXT, INTERNAL_TEXT, World, sign_in

from storage.db import database
from storage.mail_log import ThreadEvent
from storage.posting import post_message

ROOT = Path(__file__).resolve().parent.parent


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The dispatched events of an SSE body: [{"id", "event", "data"}], comments and retry lines dropped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            events.append({"id": fields.get("id"), "event": fields.get("event", "message"),
                           "data": json.loads(fields["data"])})
    return events


def last_event_id() -> int:
    return ThreadEvent.select().order_by(ThreadEvent.id.desc()).first().id


def stream_body(app: Any, who: Any, url: str, seconds: float = 0.6, **kwargs: Any) -> str:
    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=seconds)
    response = sign_in(app.test_client(), who).get(url, **kwargs)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    return response.get_data(as_text=True)


def test_team_stream_carries_new_messages_rendered(app: Any, world: World) -> None:
    # Messages committed after the page's cursor come as "message" events with the page's own HTML.
    after = last_event_id()
    one = post_message(world.thread, world.team, "first **live**")
    two = post_message(world.thread, world.team, "second, internal", internal=True)
    events = parse_sse(stream_body(app, world.team, f"/events/w/acme?after={after}"))
    assert [e["data"]["message_id"] for e in events] == [one.id, two.id]
    assert all(e["event"] == "message" for e in events)
    assert f'id="m-{one.id}"' in events[0]["data"]["html"] and "<strong>live</strong>" in events[0]["data"]["html"]
    assert 'class="message internal' in events[1]["data"]["html"]
    assert int(events[1]["id"]) > int(events[0]["id"]) > after


def test_client_stream_never_carries_internal_notes(app: Any, world: World) -> None:
    # The same events, read by a client: only the client-visible message; no trace of the internal one.
    after = 0
    public = post_message(world.thread, world.team, "for the client")
    internal = post_message(world.thread, world.team, "team only: " + INTERNAL_TEXT, internal=True)
    body = stream_body(app, world.client, f"/events/w/acme?after={after}")
    ids = [e["data"]["message_id"] for e in parse_sse(body)]
    assert public.id in ids and world.public.id in ids
    assert internal.id not in ids and world.internal.id not in ids
    assert INTERNAL_TEXT not in body and "budget.txt" not in body and 'data-visibility="internal"' not in body


def test_last_event_id_resumes_after_the_last_event_seen(app: Any, world: World) -> None:
    # A reconnecting EventSource sends Last-Event-ID; it wins over ?after= and only newer events come.
    after = last_event_id()
    one = post_message(world.thread, world.team, "one")
    first = parse_sse(stream_body(app, world.team, f"/events/w/acme?after={after}"))
    two = post_message(world.thread, world.team, "two")
    resumed = parse_sse(stream_body(app, world.team, f"/events/w/acme?after={after}",
                                    headers={"Last-Event-ID": first[-1]["id"]}))
    assert [e["data"]["message_id"] for e in first] == [one.id]
    assert [e["data"]["message_id"] for e in resumed] == [two.id]


def test_stream_starts_with_retry_and_ends_after_its_time(app: Any, world: World) -> None:
    # The stream tells the browser to reconnect after 1 s and closes after live_stream_seconds.
    start = time.monotonic()
    body = stream_body(app, world.team, f"/events/w/acme?after={last_event_id()}", seconds=0.8)
    took = time.monotonic() - start
    assert body.startswith("retry: 1000\n") and parse_sse(body) == []
    assert 0.7 <= took < 3


def test_stream_is_not_buffered_by_proxies(app: Any, world: World) -> None:
    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=0)
    response = sign_in(app.test_client(), world.team).get("/events/w/acme")
    assert response.headers["X-Accel-Buffering"] == "no" and "no-cache" in response.headers["Cache-Control"]
    response.close()


def _post_later(world: World, delay: float, text: str, done: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        with database.connection_context():
            done["message"] = post_message(world.thread, world.team, text)
        done["committed_at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_message_posted_elsewhere_arrives_within_two_seconds_without_holding_a_connection(
        app: Any, world: World) -> None:
    # A stream open while another thread commits a message delivers it within 2 s; between reads the stream
    # holds no database connection.
    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=4)
    client = sign_in(app.test_client(), world.client)
    response = client.get(f"/events/w/acme?after={last_event_id()}")
    if not database.is_closed():
        database.close()
    done: dict[str, Any] = {}
    poster = _post_later(world, 0.5, "arrives live", done)
    arrived_at = None
    for chunk in response.response:
        assert database.is_closed(), "the stream holds a database connection between reads"
        events = parse_sse(chunk.decode())
        if events:
            arrived_at = time.monotonic()
            assert events[0]["data"]["message_id"] == done["message"].id
            break
    response.close()
    poster.join()
    assert arrived_at is not None and arrived_at - done["committed_at"] < 2.0


def test_revoked_access_closes_the_stream(app: Any, world: World) -> None:
    # When the client loses access, the stream sends "closed" and ends; the reconnect then gets 404.
    from storage.directory import set_access

    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=5)
    client = sign_in(app.test_client(), world.client)
    response = client.get(f"/events/w/acme?after={last_event_id()}")
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    set_access(world.client, world.acme, False)
    post_message(world.thread, world.team, "after revoke")
    rest = b"".join(chunks).decode()
    events = parse_sse(rest)
    assert [e["event"] for e in events] == ["closed"]
    assert client.get("/events/w/acme").status_code == 404


POSTER = """
import sys
from pathlib import Path
from config import Settings
from storage import db
from storage.directory import get_user, get_workspace, thread_of
from storage.posting import post_message

settings = Settings(data_dir=Path(sys.argv[1]), database_url=sys.argv[2], secret_key="x")
db.bind(settings)
with db.database.connection_context():
    m = post_message(thread_of(get_workspace("acme")), get_user("kim@agency.test"), sys.argv[3], source="cli")
    print(m.id)
"""


def test_message_posted_by_another_process_arrives(app: Any, world: World, settings: Any) -> None:
    # The database is the bus: a message committed by a separate process reaches the stream.
    app.extensions["workrate_settings"] = settings.replace(live_stream_seconds=6)
    client = sign_in(app.test_client(), world.team)
    response = client.get(f"/events/w/acme?after={last_event_id()}")
    proc = subprocess.Popen([sys.executable, "-c", POSTER, str(settings.data_dir), settings.effective_database_url,
                             "from another process"], stdout=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    got = None
    for chunk in response.response:
        events = parse_sse(chunk.decode())
        if events:
            got = events[0]["data"]
            break
    response.close()
    out, _ = proc.communicate(timeout=30)
    assert got is not None and got["message_id"] == int(out.strip())
    assert "from another process" in got["html"] and "via command line" in got["html"]


# ---------------------------------------------------------------------------------------------------
# The real server


@pytest.fixture
def server(settings: Any, database: Any, world: World) -> Any:
    from web.server import WebServer

    web = WebServer(settings.replace(live_stream_seconds=3, web_threads=32))
    web.start()
    yield web
    web.stop()


def session_cookie(app: Any, user: Any) -> str:
    client = sign_in(app.test_client(), user)
    return f"workrate_session={client.get_cookie('workrate_session').value}"


def open_stream(port: int, cookie: str, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app.test\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
                 .encode())
    return sock


def test_real_server_serves_pages_and_live_updates(server: Any, world: World) -> None:
    # cheroot on a real socket: a page with its headers, and a live update within 2 s of the commit.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/login")
    page = conn.getresponse()
    assert page.status == 200 and page.getheader("X-Frame-Options") == "DENY"
    page.read()
    cookie = session_cookie(server.app, world.client)
    sock = open_stream(server.port, cookie, f"/events/w/acme?after={last_event_id()}")
    head = read_until(sock, b"retry:")
    assert b"200 OK" in head and b"text/event-stream" in head
    done: dict[str, Any] = {}
    _post_later(world, 0.2, "over the wire", done).join()
    read_until(sock, b"over the wire")
    assert time.monotonic() - done["committed_at"] < 2.0
    sock.close()


def test_server_stops_promptly_with_open_streams(settings: Any, database: Any, world: World) -> None:
    # stop() ends open streams instead of waiting for them to time out.
    from web.server import WebServer

    web = WebServer(settings.replace(live_stream_seconds=60, web_threads=8))
    web.start()
    sock = open_stream(web.port, session_cookie(web.app, world.team), "/events/w/acme")
    read_until(sock, b"retry:")
    start = time.monotonic()
    web.stop()
    assert time.monotonic() - start < 4
    sock.close()


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    buffer = b""
    while marker not in buffer:
        data = sock.recv(65536)
        assert data, f"connection closed before {marker!r}"
        buffer += data
    return buffer


@pytest.mark.slow
def test_200_open_streams_do_not_slow_page_loads(settings: Any, database: Any, world: World) -> None:
    # With 200 live-update streams open, an ordinary page loads at most 2x slower than with none.
    from web.server import WebServer

    web = WebServer(settings.replace(live_stream_seconds=60, web_threads=256))
    web.start()
    cookie = session_cookie(web.app, world.team)

    def median_page_time() -> float:
        times = []
        for _ in range(15):
            conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
            start = time.perf_counter()
            conn.request("GET", "/w/acme", headers={"Cookie": cookie})
            response = conn.getresponse()
            assert response.status == 200 and CLIENT_TEXT in response.read().decode()
            times.append(time.perf_counter() - start)
            conn.close()
        return statistics.median(times)

    try:
        baseline = median_page_time()
        streams = [open_stream(web.port, cookie, f"/events/w/acme?after={last_event_id()}") for _ in range(200)]
        for sock in streams:
            read_until(sock, b"retry:")
        loaded = median_page_time()
        for sock in streams:
            sock.close()
    finally:
        web.stop()
    assert loaded <= max(2 * baseline, baseline + 0.02), (baseline, loaded)


# ---------------------------------------------------------------------------------------------------
# The watcher: which streams wake, and when


def _reserve_event_ids(count: int) -> list[int]:
    """Ids for ThreadEvent rows taken the way a writer takes them: on PostgreSQL from the sequence (as
    transactions that have not committed yet would hold them), on SQLite above the current newest row."""
    if _is_postgres():
        cursor = database.execute_sql("SELECT nextval(pg_get_serial_sequence('thread_event', 'id')) "
                                      "FROM generate_series(1, %s)", (count,))
        return [row[0] for row in cursor.fetchall()]
    newest = ThreadEvent.select(fn.MAX(ThreadEvent.id)).scalar() or 0
    return list(range(newest + 1, newest + 1 + count))


def _commit_event(event_id: int, thread: Any, message: Any) -> None:
    """A ThreadEvent row with a given id, committed now (what a late transaction's commit looks like)."""
    ThreadEvent.insert(id=event_id, thread=thread.id, message=message.id, kind="message").execute()


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.fixture
def watcher(world: World) -> Any:
    """A watcher polling every 50 ms with a 0.3 s settling window, started after the world's posts and
    past its first (look-everywhere) poll."""
    from web.events import EventWatcher

    w = EventWatcher(interval=0.05, settle=0.3)
    w.token(0)  # starts it
    _wait_for(lambda: w.polls >= 2)
    yield w
    w.stop()


def test_a_post_wakes_its_own_thread_once_and_no_other(watcher: Any, world: World) -> None:
    # A commit in Acme changes Acme's token once; Globex's streams sleep on. When the settling window then
    # moves past the post (the watcher's low mark passes it), nobody wakes again: the window moving is
    # not news (it used to wake every stream of the process on every poll for 10 s after each post).
    acme, globex = watcher.token(world.thread.id), watcher.token(world.globex_thread.id)
    message = post_message(world.thread, world.team, "wakes acme only")
    after = watcher.wait(world.thread.id, acme, timeout=2)
    assert after != acme
    assert watcher.token(world.globex_thread.id) == globex
    wakeups, polls = watcher.wakeups, watcher.polls
    event_id = ThreadEvent.get(ThreadEvent.message == message.id).id
    _wait_for(lambda: watcher._since is not None and watcher._since >= event_id)  # the window moved past it
    time.sleep(0.3)  # and more polls after that
    assert watcher.polls - polls >= 8
    assert watcher.token(world.thread.id) == after and watcher.token(world.globex_thread.id) == globex
    assert watcher.wakeups == wakeups


def test_late_commits_below_the_newest_id_still_wake_their_thread(watcher: Any, world: World) -> None:
    # PostgreSQL hands out ids before commit, so a row can become visible after a row with a higher id.
    # The watcher notices it, whether it is a thread's first news or lands below the thread's newest row.
    early, middle, late = _reserve_event_ids(3)
    acme = watcher.token(world.thread.id)
    _commit_event(late, world.thread, world.public)
    acme = watcher.wait(world.thread.id, acme, timeout=2)
    globex = watcher.token(world.globex_thread.id)
    _commit_event(early, world.globex_thread, world.globex_message)  # below the newest id of all
    assert watcher.wait(world.globex_thread.id, globex, timeout=2) != globex
    _commit_event(middle, world.thread, world.internal)  # below Acme's own newest row: its count changes
    assert watcher.wait(world.thread.id, acme, timeout=2) != acme


def test_stream_receives_a_late_commit_below_its_cursor(app: Any, world: World) -> None:
    # A stream that already sent a newer event still delivers a row committed late with a lower id.
    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=4)
    extra = post_message(world.thread, world.team, "a second message for the late row")
    after = last_event_id()
    early, late = _reserve_event_ids(2)
    response = sign_in(app.test_client(), world.team).get(f"/events/w/acme?after={after}")
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    seen: list[int] = []
    _commit_event(late, world.thread, world.public)
    _commit_event(early, world.thread, extra)
    for chunk in chunks:
        seen += [e["data"]["message_id"] for e in parse_sse(chunk.decode())]
        if len(seen) >= 2:
            break
    response.close()
    assert sorted(seen) == sorted([world.public.id, extra.id])


# ---------------------------------------------------------------------------------------------------
# Shared work: one read per viewer, one rendering per audience; the visibility rule per viewer


def test_rendering_is_shared_only_within_an_audience(app: Any, world: World, make: Any) -> None:
    # Two team members' streams draw a message once between them (unless it is one's own: "mine" differs);
    # a client's stream draws its own
    # (no delivery details, no trimmed text) and never gets the internal note that the team's stream
    # put in the cache first.
    from web.events import renders_of

    after = last_event_id()
    public = post_message(world.thread, world.client, "from the client", trimmed_text="> quoted below")
    internal = post_message(world.thread, world.team, "note: " + INTERNAL_TEXT, internal=True)
    colleague = make.team(email="lee@agency.test", name="Lee Park")
    cache = renders_of(app)
    kim = parse_sse(stream_body(app, world.team, f"/events/w/acme?after={after}"))
    assert cache.misses == 2  # drawn once each (re-reads of the settling window find them in the cache)
    lee = parse_sse(stream_body(app, colleague, f"/events/w/acme?after={after}"))
    # Lee reuses the client's message as Kim saw it; Kim's note is drawn again, as not Lee's own.
    assert cache.misses == 3 and cache.hits >= 1
    assert kim[0]["data"] == lee[0]["data"]
    assert 'class="message internal mine' in kim[1]["data"]["html"]
    assert 'class="message internal from-team' in lee[1]["data"]["html"]
    assert [e["data"]["message_id"] for e in kim] == [public.id, internal.id]
    assert "trimmed" in kim[0]["data"]["html"]
    body = stream_body(app, world.client, f"/events/w/acme?after={after}")
    client_events = parse_sse(body)
    assert cache.misses == 4  # the client's own drawing of the public message
    assert [e["data"]["message_id"] for e in client_events] == [public.id]
    assert INTERNAL_TEXT not in body and "trimmed" not in client_events[0]["data"]["html"]
    assert 'class="message mine' in client_events[0]["data"]["html"]  # the client wrote it
    assert 'class="message mine' not in kim[0]["data"]["html"]


def test_revoked_client_gets_nothing_from_a_warm_cache(app: Any, world: World) -> None:
    # The client's own stream drew a message; after access is revoked, the next post ends the stream with
    # "closed" and the cached drawing is not handed out again.
    from storage.directory import set_access

    after = last_event_id()
    post_message(world.thread, world.team, "seen while allowed")
    assert len(parse_sse(stream_body(app, world.client, f"/events/w/acme?after={after}"))) == 1
    set_access(world.client, world.acme, False)
    post_message(world.thread, world.team, "after the revoke")
    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=1)
    client = sign_in(app.test_client(), world.client)
    assert client.get(f"/events/w/acme?after={after}").status_code == 404


def test_streams_of_one_viewer_share_one_read(server: Any, world: World) -> None:
    # Three streams of the client and two of the team member, woken by the same posts: the database is read
    # once per viewer; each stream still gets exactly what its viewer may see.
    from web.events import shared_reads_of, watcher_of

    after = last_event_id()
    client_cookie, team_cookie = session_cookie(server.app, world.client), session_cookie(server.app, world.team)
    client_socks = [open_stream(server.port, client_cookie, f"/events/w/acme?after={after}") for _ in range(3)]
    team_socks = [open_stream(server.port, team_cookie, f"/events/w/acme?after={after}") for _ in range(2)]
    for sock in client_socks + team_socks:
        read_until(sock, b"retry:")
    watcher = watcher_of(server.app)
    _wait_for(lambda: watcher.polls >= 2)
    shared = shared_reads_of(server.app)
    time.sleep(0.3)
    led, followed = shared.led, shared.shared
    with database.atomic():  # one commit, one wake
        post_message(world.thread, world.team, "team only " + INTERNAL_TEXT, internal=True)
        post_message(world.thread, world.team, "for everyone LAST")
    client_bodies = [read_until(sock, b"for everyone LAST") for sock in client_socks]
    team_bodies = [read_until(sock, b"for everyone LAST") for sock in team_socks]
    for sock in client_socks + team_socks:
        sock.close()
    assert (shared.led - led, shared.shared - followed) == (2, 3)
    assert all(INTERNAL_TEXT not in body.decode() for body in client_bodies)
    assert all(INTERNAL_TEXT in body.decode() for body in team_bodies)


# ---------------------------------------------------------------------------------------------------
# Reader threads: a few connections, kept between reads


def test_reads_run_on_a_few_threads_and_errors_reach_the_stream(world: World) -> None:
    # However many streams read at once, the reads run on at most `size` threads, which keep their
    # connections between reads and close them after `idle` seconds; a failed read raises in the stream
    # that asked and the next read works on a fresh connection; after stop() reads refuse.
    from peewee import DatabaseError

    from storage.models import Message
    from web.events import ReadPool, Stopped

    pool = ReadPool(size=2, idle=0.2)
    results: list[tuple[int, int]] = []

    def read() -> tuple[int, int]:
        time.sleep(0.02)
        return threading.get_ident(), Message.select().count()

    askers = [threading.Thread(target=lambda: results.append(pool.run(read))) for _ in range(12)]
    for t in askers:
        t.start()
    for t in askers:
        t.join()
    assert len(results) == 12 and {count for _, count in results} == {3}
    assert len({ident for ident, _ in results}) <= 2
    if _is_postgres():  # the readers keep their connections between reads, and close them when idle
        assert 1 <= _postgres_backends() <= 2
        time.sleep(0.4)
        assert _postgres_backends() == 0
    with pytest.raises(DatabaseError):
        pool.run(lambda: database.execute_sql("SELECT * FROM no_such_table"))
    time.sleep(0.3)  # past the idle time: the threads closed their connections, and open new ones
    assert pool.run(lambda: Message.select().count()) == 3
    pool.stop()
    with pytest.raises(Stopped):
        pool.run(read)


def _is_postgres() -> bool:
    return database.obj.__class__.__name__.startswith("Postgres")


def _postgres_backends() -> int:
    return database.execute_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()[0]


def test_dropped_connections_end_the_stream_and_it_resumes(app: Any, world: World) -> None:
    # PostgreSQL drops the connections the watcher and the readers keep (a restart, a failover): the open
    # stream ends cleanly instead of hanging or erroring, and the browser's reconnect (Last-Event-ID)
    # gets the message posted meanwhile within 2 s.
    if not _is_postgres():
        pytest.skip("kills PostgreSQL backends")
    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=6)
    client = sign_in(app.test_client(), world.team)
    response = client.get(f"/events/w/acme?after={last_event_id()}")
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    first = post_message(world.thread, world.team, "before the drop")
    seen: list[dict[str, Any]] = []
    for chunk in chunks:
        seen += parse_sse(chunk.decode())
        if seen:
            break
    assert seen[0]["data"]["message_id"] == first.id
    assert _postgres_backends() >= 2  # the watcher's and a reader's connection, kept open
    database.execute_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    second = post_message(world.thread, world.team, "after the drop")
    committed = time.monotonic()
    for chunk in chunks:  # either the stream still delivers it, or it ends
        seen += parse_sse(chunk.decode())
        if seen[-1]["data"]["message_id"] == second.id:
            break
    response.close()
    if seen[-1]["data"]["message_id"] != second.id:
        resumed = client.get("/events/w/acme", headers={"Last-Event-ID": seen[-1]["id"]})
        for chunk in resumed.response:
            seen += parse_sse(chunk.decode())
            if seen[-1]["data"]["message_id"] == second.id:
                break
        resumed.close()
    assert seen[-1]["data"]["message_id"] == second.id and time.monotonic() - committed < 2.0
