"""Live updates on the real server (uvicorn on loopback): streams are authorised like pages, carry what the
visibility rule lets their viewer see and nothing else, resume with Last-Event-ID, wake at once for posts
made in this process and for posts of other processes, close when access is revoked, and hold no thread:
caps per person and per process, a "reload" instead of a long replay, heartbeats nothing shifts, and
header/body timeouts for slow clients. Tests assert behaviour with generous deadlines, never speed."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peewee import fn
from sse_client import SseStream
from web_support import CLIENT_TEXT, INTERNAL_TEXT, World, sign_in

from storage.db import database
from storage.mail_log import ThreadEvent
from storage.posting import post_message

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 20  # seconds: generous for anything that should take well under one on an idle machine


def last_event_id() -> int:
    return ThreadEvent.select(fn.MAX(ThreadEvent.id)).scalar() or 0


def wait_for(condition: Any, timeout: float = DEADLINE, what: str = "the condition") -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def server_settings(settings: Any) -> Any:
    return settings.replace(web_port=0, live_stream_seconds=60, web_threads=16)


@pytest.fixture
def server(server_settings: Any, database: Any, world: World) -> Iterator[Any]:
    from web.server import WebServer

    web = WebServer(server_settings)
    web.start()
    yield web
    web.stop()


def cookie_for(app: Any, user: Any) -> str:
    client = sign_in(app.test_client(), user)
    return f"workrate_session={client.get_cookie('workrate_session').value}"


def open_stream(server: Any, user: Any, after: int | None = None, slug: str = "acme", **kwargs: Any) -> SseStream:
    path = f"/events/w/{slug}" + (f"?after={after}" if after is not None else "")
    cookie = cookie_for(server.app, user) if user is not None else ""
    return SseStream(server.port, path, cookie, **kwargs).open()


def connected(stream: SseStream) -> SseStream:
    stream.wait_connected(DEADLINE)
    return stream


def get(port: int, path: str, cookie: str = "", timeout: float = DEADLINE) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def raw_stream(port: int, cookie: str, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app.test\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
                 .encode())
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    buffer = b""
    while marker not in buffer:
        data = sock.recv(65536)
        assert data, f"connection closed before {marker!r}: {buffer[-500:]!r}"
        buffer += data
    return buffer


def the_only_stream(hub: Any) -> Any:
    """The hub's one open stream, once it is registered and its timers run."""
    def ready() -> bool:
        streams = [s for group in hub.groups.values() for s in group]
        return len(streams) == 1 and streams[0]._beat is not None
    wait_for(ready, what="the stream to register and start its heartbeat")
    return next(s for group in hub.groups.values() for s in group)


# ---------------------------------------------------------------------------------------------------
# What a stream carries


def test_team_stream_carries_new_messages_rendered(server: Any, world: World) -> None:
    # A team member's stream: each new message as a "message" event with the page's own HTML, the internal
    # note marked as such, ids increasing; the response is an unbuffered event stream with the app's headers.
    stream = connected(open_stream(server, world.team, last_event_id()))
    one = post_message(world.thread, world.team, "first **live**")
    two = post_message(world.thread, world.team, "second, internal", internal=True)
    stream.wait_for(lambda e: e.data.get("message_id") == two.id, DEADLINE)
    stream.close()
    events = [e for e in stream.seen if e.event == "message"]
    assert [e.data["message_id"] for e in events] == [one.id, two.id]
    assert f'id="m-{one.id}"' in events[0].data["html"] and "<strong>live</strong>" in events[0].data["html"]
    assert 'class="message internal' in events[1].data["html"]
    assert int(events[1].id or 0) > int(events[0].id or 0)
    assert stream.status == 200


def test_stream_response_headers(server: Any, world: World) -> None:
    sock = raw_stream(server.port, cookie_for(server.app, world.team), "/events/w/acme")
    head = read_until(sock, b": connected").decode().lower()
    sock.close()
    assert "text/event-stream" in head and "x-accel-buffering: no" in head and "no-cache" in head
    assert "x-frame-options: deny" in head and "retry: 1000" in head


def test_client_stream_never_carries_internal_notes(server: Any, world: World) -> None:
    # The client's stream gets the client-visible messages (the world's one, caught up from the start, and
    # a new one) and no trace of any internal note, old or new.
    stream = connected(open_stream(server, world.client, 0))
    internal = post_message(world.thread, world.team, "team only: " + INTERNAL_TEXT, internal=True)
    public = post_message(world.thread, world.team, "for the client")
    stream.wait_for(lambda e: e.data.get("message_id") == public.id, DEADLINE)
    stream.close()
    ids = [e.data.get("message_id") for e in stream.seen]
    assert world.public.id in ids and public.id in ids
    assert internal.id not in ids and world.internal.id not in ids
    text = repr([e.data for e in stream.seen])
    assert INTERNAL_TEXT not in text and "budget.txt" not in text and "internal" not in text


def test_an_internal_note_sends_a_client_nothing_and_leaves_its_heartbeat_alone(server: Any, world: World) -> None:
    # The client's thread is woken and read, but nothing reaches the client, and its heartbeat timer is
    # exactly where it was: a heartbeat's timing says nothing about internal notes.
    stream = connected(open_stream(server, world.client, last_event_id()))
    hub = server.hub
    live = the_only_stream(hub)
    beat = live._beat.when()
    reads = hub.reads
    post_message(world.thread, world.team, "note " + INTERNAL_TEXT, internal=True)
    wait_for(lambda: hub.reads > reads, what="the woken read")
    time.sleep(0.2)
    assert live._beat.when() == beat
    assert stream.seen == []
    public = post_message(world.thread, world.team, "then a public one")
    stream.wait_for(lambda e: e.data.get("message_id") == public.id, DEADLINE)
    assert [e.data["message_id"] for e in stream.seen] == [public.id]
    assert live._beat.when() == beat
    stream.close()


def test_heartbeats_come_on_a_fixed_cadence(server: Any, world: World, monkeypatch: Any) -> None:
    # Beats are scheduled at opened + k × HEARTBEAT_SECONDS, each from the stream's opening, not from
    # the previous write.
    from web.live import hub as hub_module

    monkeypatch.setattr(hub_module, "HEARTBEAT_SECONDS", 0.2)
    stream = connected(open_stream(server, world.team, last_event_id()))
    hub = server.hub
    live = the_only_stream(hub)
    wait_for(lambda: live._beats >= 4, what="four heartbeats")
    post_message(world.thread, world.team, "in between")
    wait_for(lambda: live._beats >= 6, what="six heartbeats")
    assert live._beat.when() == pytest.approx(live.opened + live._beats * 0.2)
    stream.close()


def test_last_event_id_resumes_after_the_last_event_seen(server: Any, world: World) -> None:
    # A reconnecting EventSource sends Last-Event-ID; it wins over ?after= and only newer events come.
    after = last_event_id()
    one = post_message(world.thread, world.team, "one")
    first = connected(open_stream(server, world.team, after))
    first.wait_for(lambda e: e.data.get("message_id") == one.id, DEADLINE)
    first.close()
    two = post_message(world.thread, world.team, "two")
    resumed = open_stream(server, world.team, after, last_event_id=first.seen[-1].id or "")
    resumed.wait_for(lambda e: e.data.get("message_id") == two.id, DEADLINE)
    resumed.close()
    assert [e.data["message_id"] for e in first.seen] == [one.id]
    assert [e.data["message_id"] for e in resumed.seen] == [two.id]


def test_a_resume_from_too_far_back_gets_one_reload_event(server_settings: Any, database: Any,
                                                          world: World) -> None:
    # More events to catch up on than live_resume_limit: one "reload" event and the stream ends, instead
    # of a replay. Internal notes the client cannot see do not count against the client.
    from web.server import WebServer

    after = last_event_id()
    for i in range(4):
        post_message(world.thread, world.team, f"note {i}", internal=True)
    web = WebServer(server_settings.replace(live_resume_limit=3))
    web.start()
    try:
        client = connected(open_stream(web, world.client, after))
        for i in range(4):
            post_message(world.thread, world.team, f"catch-up {i}")
        client.close()
        behind = open_stream(web, world.client, after)
        assert behind.ended.wait(DEADLINE)
        assert [e.event for e in behind.seen] == ["reload"]
        team = open_stream(web, world.team, after)  # 8 events for the team: reload too
        assert team.ended.wait(DEADLINE) and [e.event for e in team.seen] == ["reload"]
        near = connected(open_stream(web, world.client, last_event_id() - 2))
        near.close()
        assert all(e.event == "message" for e in near.seen)
    finally:
        web.stop()


def test_stream_ends_after_its_time(server_settings: Any, database: Any, world: World) -> None:
    from web.server import WebServer

    web = WebServer(server_settings.replace(live_stream_seconds=0.5))
    web.start()
    try:
        stream = connected(open_stream(web, world.team, last_event_id()))
        assert stream.ended.wait(DEADLINE)
        wait_for(lambda: web.hub.count == 0, what="the stream to leave the hub")
    finally:
        web.stop()


# ---------------------------------------------------------------------------------------------------
# Who may open a stream: exactly as pages


def test_streams_are_authorised_like_pages(server: Any, world: World) -> None:
    # Signed out: the sign-in redirect. Another client's workspace, or no Messages access: 404. Unknown: 404.
    status, headers, _ = get(server.port, "/events/w/acme")
    assert status == 302 and "/login" in headers["location"]
    assert get(server.port, "/events/w/globex", cookie_for(server.app, world.client))[0] == 404
    assert get(server.port, "/events/w/acme", cookie_for(server.app, world.no_access))[0] == 404
    assert get(server.port, "/events/w/nope", cookie_for(server.app, world.team))[0] == 404
    assert get(server.port, "/events/w/acme", "workrate_session=forged.value.here")[0] == 302
    assert server.hub.count == 0


def test_revoking_access_ends_the_persons_open_streams(server: Any, world: World) -> None:
    # Without any post: the revoke itself wakes the person's streams, which end with "closed"; a new one
    # gets 404. The team's stream on the same thread goes on.
    from storage.directory import set_access

    mine = [connected(open_stream(server, world.client, last_event_id())) for _ in range(2)]
    team = connected(open_stream(server, world.team, last_event_id()))
    set_access(world.client, world.acme, False)
    for stream in mine:
        assert stream.ended.wait(DEADLINE), "the revoked client's stream stayed open"
        assert [e.event for e in stream.seen] == ["closed"]
    assert not team.ended.is_set()
    assert get(server.port, "/events/w/acme", cookie_for(server.app, world.client))[0] in (302, 404)
    team.close()


# ---------------------------------------------------------------------------------------------------
# Wake-ups


def test_message_posted_in_another_thread_of_this_process_arrives(server: Any, world: World) -> None:
    stream = connected(open_stream(server, world.client, last_event_id()))
    done: dict[str, Any] = {}

    def post() -> None:
        with database.connection_context():
            done["message"] = post_message(world.thread, world.team, "arrives live")

    poster = threading.Thread(target=post)
    poster.start()
    poster.join()
    event = stream.wait_for(lambda e: e.event == "message", DEADLINE)
    stream.close()
    assert event.data["message_id"] == done["message"].id


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


def test_message_posted_by_another_process_arrives(server: Any, world: World, settings: Any) -> None:
    # The database is the bus: NOTIFY on PostgreSQL, the poller on SQLite.
    stream = connected(open_stream(server, world.team, last_event_id()))
    proc = subprocess.run([sys.executable, "-c", POSTER, str(settings.data_dir), settings.effective_database_url,
                           "from another process"], capture_output=True, cwd=ROOT, timeout=60, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    event = stream.wait_for(lambda e: e.event == "message", DEADLINE)
    stream.close()
    assert event.data["message_id"] == int(proc.stdout.strip())
    assert "from another process" in event.data["html"] and "via command line" in event.data["html"]


def test_team_streams_hear_of_other_threads_for_their_sidebar_and_client_streams_never(
        server: Any, world: World) -> None:
    # A post in Globex: the team's stream on Acme gets one contentless "sidebar" event (its page redraws
    # the sidebar); the Acme client's stream gets nothing at all, internal note or not.
    team = connected(open_stream(server, world.team, last_event_id()))
    client = connected(open_stream(server, world.client, last_event_id()))
    post_message(world.globex_thread, world.team, "over at Globex " + INTERNAL_TEXT, internal=True)
    event = team.wait_for(lambda e: e.event == "sidebar", DEADLINE)
    assert event.data == {} and event.id is None
    mine = post_message(world.thread, world.team, "at Acme, for the client too")
    client.wait_for(lambda e: e.data.get("message_id") == mine.id, DEADLINE)
    team.close()
    client.close()
    assert [e.event for e in client.seen] == ["message"]


def test_ending_a_persons_sessions_ends_their_streams(server: Any, world: World) -> None:
    # Signed out everywhere (here by a direct call, as the CLI and /account do): the person keeps their
    # access, but the streams opened with those sessions end; another person's stream goes on.
    from storage.sessions import end_sessions

    mine = [connected(open_stream(server, world.client, last_event_id())) for _ in range(2)]
    team = connected(open_stream(server, world.team, last_event_id()))
    end_sessions(world.client)
    for stream in mine:
        assert stream.ended.wait(DEADLINE), "a signed-out person's stream stayed open"
        assert [e.event for e in stream.seen] == ["closed"]
    assert not team.ended.is_set()
    team.close()


def test_the_poller_reads_the_event_log_only_after_another_connection_committed(
        server_settings: Any, database: Any, world: World) -> None:
    if _is_postgres():
        pytest.skip("SQLite's poll (PostgreSQL is woken by NOTIFY)")
    from web.server import WebServer

    web = WebServer(server_settings.replace(live_poll_seconds=0.01))
    web.start()
    try:
        poller = web.hub.poller
        wait_for(lambda: poller.polls > 3, what="a few polls")
        queries, polls = poller.queries, poller.polls
        wait_for(lambda: poller.polls > polls + 20, what="more polls")
        assert poller.queries == queries  # nothing committed: no query of the event log
        post_message(world.thread, world.team, "a commit on another connection")
        wait_for(lambda: poller.queries > queries, what="the poller to read the event log")
    finally:
        web.stop()


def test_signals_go_to_every_other_listening_socket_and_dead_ones_are_removed(database: Any) -> None:
    import socket as sockets

    from storage import changes

    if _is_postgres():
        pytest.skip("SQLite's wake-up sockets (PostgreSQL uses NOTIFY)")
    folder = changes.wake_folder()
    assert folder is not None
    folder.mkdir(mode=0o700, exist_ok=True)
    alive = sockets.socket(sockets.AF_UNIX, sockets.SOCK_DGRAM)
    alive.bind(changes.socket_address(folder / "1-alive.sock"))
    alive.settimeout(DEADLINE)
    dead = sockets.socket(sockets.AF_UNIX, sockets.SOCK_DGRAM)
    dead.bind(changes.socket_address(folder / "2-dead.sock"))
    dead.close()  # its file stays, as after a killed process
    mine = sockets.socket(sockets.AF_UNIX, sockets.SOCK_DGRAM)
    mine.bind(changes.socket_address(folder / "3-mine.sock"))
    changes.listening("3-mine.sock", True)
    try:
        many = {(changes.THREAD, i) for i in range(1000, 3000)}  # more than one datagram holds
        assert changes.broadcast(many | {(changes.ACCESS, 7)}) == 1
        heard: set[tuple[str, int]] = set()
        while len(heard) < len(many) + 1:
            heard.update(changes.parse_datagram(alive.recv(65536)))
        assert heard == many | {(changes.ACCESS, 7)}
        assert not (folder / "2-dead.sock").exists()
        mine.setblocking(False)
        with pytest.raises(BlockingIOError):
            mine.recv(65536)  # this process hears its own commits directly, not through its socket
        assert changes.parse_datagram(b"t1 x99 a2 t t99999999999999999999 \xff") == [("t", 1), ("a", 2)]
    finally:
        changes.listening("3-mine.sock", False)
        for s in (alive, mine):
            s.close()


@pytest.fixture
def quiet_server(server_settings: Any, database: Any, world: World) -> Iterator[Any]:
    """A server woken only by commits of this process (and NOTIFY), not by SQLite's poller."""
    from web.server import WebServer

    web = WebServer(server_settings.replace(live_poll_seconds=600))
    web.start()
    yield web
    web.stop()


def test_streams_of_one_viewer_share_one_read(quiet_server: Any, world: World) -> None:
    # Three streams of the client and two of the team member, woken by the same commit: two reads (one per
    # viewer); each stream still gets exactly what its viewer may see.
    server = quiet_server
    after = last_event_id()
    clients = [connected(open_stream(server, world.client, after)) for _ in range(3)]
    teams = [connected(open_stream(server, world.team, after)) for _ in range(2)]
    hub = server.hub
    wait_for(lambda: hub.count == 5, what="five streams")
    time.sleep(0.3)
    reads = hub.reads
    with database.atomic():  # one commit, one wake
        post_message(world.thread, world.team, "team only " + INTERNAL_TEXT, internal=True)
        last = post_message(world.thread, world.team, "for everyone LAST")
    from storage import changes

    changes.committed()
    for stream in clients + teams:
        stream.wait_for(lambda e: e.data.get("message_id") == last.id, DEADLINE)
        stream.close()
    assert hub.reads - reads == 2
    assert all(INTERNAL_TEXT not in repr(s.seen) for s in clients)
    assert all(INTERNAL_TEXT in repr(s.seen) for s in teams)


def test_late_commits_below_the_newest_id_are_delivered(server: Any, world: World) -> None:
    # PostgreSQL hands out ids before commit, so a row can become visible after a row with a higher id.
    # A stream that already sent the newer one still delivers the late one.
    extra = post_message(world.thread, world.team, "a second message for the late row")
    stream = connected(open_stream(server, world.team, last_event_id()))
    early, late = _reserve_event_ids(2)
    _commit_event(late, world.thread, world.public)
    _commit_event(early, world.thread, extra)
    stream.wait_for(lambda e: e.data.get("message_id") == world.public.id, DEADLINE)
    stream.wait_for(lambda e: e.data.get("message_id") == extra.id, DEADLINE)
    stream.close()


def _reserve_event_ids(count: int) -> list[int]:
    if _is_postgres():
        cursor = database.execute_sql("SELECT nextval(pg_get_serial_sequence('thread_event', 'id')) "
                                      "FROM generate_series(1, %s)", (count,))
        return [row[0] for row in cursor.fetchall()]
    newest = last_event_id()
    return list(range(newest + 1, newest + 1 + count))


def _commit_event(event_id: int, thread: Any, message: Any) -> None:
    """A ThreadEvent row with a given id committed now, with its signal, as a late transaction's commit."""
    from storage import changes

    with database.atomic():
        ThreadEvent.insert(id=event_id, thread=thread.id, message=message.id, kind="message").execute()
        changes.thread_changed(thread.id)
    changes.committed()


def _is_postgres() -> bool:
    return database.obj.__class__.__name__.startswith("Postgres")


def test_the_listener_reconnects_after_its_connection_is_killed(server: Any, world: World) -> None:
    # PostgreSQL drops the LISTEN connection (a restart, a failover): the listener connects again, and a
    # post made after that reaches the open stream.
    if not _is_postgres():
        pytest.skip("kills PostgreSQL backends")
    listener = server.hub.listener
    wait_for(lambda: listener.listening.is_set(), what="the listener")
    stream = connected(open_stream(server, world.team, last_event_id()))
    connections = listener.connections
    database.execute_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    wait_for(lambda: listener.connections > connections and listener.listening.is_set(), what="a new LISTEN")
    message = post_message(world.thread, world.team, "after the drop")
    # The stream either delivers it, or ended (its read lost its connection) and the reconnect resumes.
    try:
        stream.wait_for(lambda e: e.data.get("message_id") == message.id, DEADLINE)
    except AssertionError:
        assert stream.ended.is_set()
        resumed = open_stream(server, world.team, int(stream.seen[-1].id) if stream.seen else 0)
        resumed.wait_for(lambda e: e.data.get("message_id") == message.id, DEADLINE)
        resumed.close()
    stream.close()


# ---------------------------------------------------------------------------------------------------
# Caps


def test_a_persons_streams_beyond_the_cap_close_the_oldest(server_settings: Any, database: Any,
                                                             world: World) -> None:
    from web.server import WebServer

    web = WebServer(server_settings.replace(live_streams_per_person=3))
    web.start()
    try:
        streams = [connected(open_stream(web, world.team, last_event_id())) for _ in range(3)]
        client = connected(open_stream(web, world.client, last_event_id()))
        fourth = connected(open_stream(web, world.team, last_event_id()))
        assert streams[0].ended.wait(DEADLINE)
        assert [(e.event, e.data) for e in streams[0].seen] == [("closed", {"reason": "too many open pages"})]
        assert web.hub.count == 4
        message = post_message(world.thread, world.team, "still live")
        for stream in (*streams[1:], fourth, client):
            stream.wait_for(lambda e: e.data.get("message_id") == message.id, DEADLINE)
            stream.close()
    finally:
        web.stop()


def test_the_process_cap_answers_503_with_retry_after(server_settings: Any, database: Any, world: World) -> None:
    from web.server import WebServer

    web = WebServer(server_settings.replace(live_max_streams=2))
    web.start()
    try:
        one = connected(open_stream(web, world.team, last_event_id()))
        two = connected(open_stream(web, world.client, last_event_id()))
        status, headers, _ = get(web.port, "/events/w/acme", cookie_for(web.app, world.team))
        assert status == 503 and int(headers["retry-after"]) > 0
        assert get(web.port, "/login")[0] == 200  # pages are not capped
        one.close()
        wait_for(lambda: web.hub.count == 1, what="the closed stream to leave")
        three = connected(open_stream(web, world.team, last_event_id()))
        three.close()
        two.close()
    finally:
        web.stop()


# ---------------------------------------------------------------------------------------------------
# Slow clients and many streams hold no thread


def test_slow_headers_are_cut_off_and_slow_bodies_get_408(server_settings: Any, database: Any,
                                                           world: World) -> None:
    from web.server import WebServer

    web = WebServer(server_settings.replace(web_header_timeout=0.5, web_body_timeout=0.5))
    web.start()
    try:
        slow = socket.create_connection(("127.0.0.1", web.port), timeout=DEADLINE)
        slow.sendall(b"GET /login HTTP/1.1\r\nHost: app.test\r\n")  # and never the rest
        assert slow.recv(1024) == b""  # closed by the server
        slow.close()
        body = socket.create_connection(("127.0.0.1", web.port), timeout=DEADLINE)
        body.sendall(b"POST /login HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/x-www-form-urlencoded"
                     b"\r\nContent-Length: 100\r\n\r\nemail=")
        answer = read_until(body, b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 408")
        body.close()
        assert get(web.port, "/login")[0] == 200
    finally:
        web.stop()


@pytest.mark.slow
def test_pages_load_while_300_slow_clients_and_300_streams_of_one_person_are_connected(
        server_settings: Any, database: Any, world: World) -> None:
    # 300 connections trickling their headers, 300 trickling a POST body, and 300 open streams of one
    # person (cap raised for the test), on a server with 8 page threads: signed-out and signed-in pages
    # still load, and a post still reaches the streams.
    from web.server import WebServer

    web = WebServer(server_settings.replace(web_threads=8, live_streams_per_person=1000))
    web.start()
    socks: list[socket.socket] = []
    try:
        cookie = cookie_for(web.app, world.team)
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", web.port), timeout=DEADLINE)
            s.sendall(b"GET /login HTTP/1.1\r\nHost: app.test\r\n")
            socks.append(s)
            s = socket.create_connection(("127.0.0.1", web.port), timeout=DEADLINE)
            s.sendall(b"POST /login HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\nemail=")
            socks.append(s)
        streams = [raw_stream(web.port, cookie, f"/events/w/acme?after={last_event_id()}") for _ in range(300)]
        socks.extend(streams)
        for s in streams:
            read_until(s, b": connected")
        assert web.hub.count == 300
        for _ in range(5):
            assert get(web.port, "/login")[0] == 200
            status, _, body = get(web.port, "/w/acme", cookie)
            assert status == 200 and CLIENT_TEXT in body
        post_message(world.thread, world.team, "reaches all 300")
        for s in streams:
            read_until(s, b"reaches all 300")
    finally:
        for s in socks:
            s.close()
        web.stop()


def test_server_stops_promptly_with_open_streams(server_settings: Any, database: Any, world: World) -> None:
    from web.server import WebServer

    web = WebServer(server_settings.replace(live_stream_seconds=600))
    web.start()
    stream = connected(open_stream(web, world.team))
    start = time.monotonic()
    web.stop()
    assert time.monotonic() - start < DEADLINE
    assert stream.ended.wait(DEADLINE)


# ---------------------------------------------------------------------------------------------------
# Reader threads and the render cache


def test_reads_run_on_a_few_threads_and_errors_reach_the_asker(world: World) -> None:
    # However many reads are asked for at once, they run on at most `size` threads, which keep their
    # connections between reads and close them after `idle` seconds; a failed read raises for the one that
    # asked and the next read works on a fresh connection; after stop() reads refuse.
    from peewee import DatabaseError

    from storage.models import Message
    from web.live.reads import ReadPool, Stopped

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
    with pytest.raises(DatabaseError):
        pool.run(lambda: database.execute_sql("SELECT * FROM no_such_table"))
    time.sleep(0.3)
    assert pool.run(lambda: Message.select().count()) == 3
    pool.stop()
    with pytest.raises(Stopped):
        pool.run(read)


def test_rendering_is_shared_only_within_an_audience(server: Any, world: World, make: Any) -> None:
    # Two team members draw a message once between them (unless it is one's own: "mine" differs); a
    # client's stream draws its own rendering (no trimmed text) and never gets the internal note.
    after = last_event_id()
    public = post_message(world.thread, world.client, "from the client", trimmed_text="> quoted below")
    internal = post_message(world.thread, world.team, "note: " + INTERNAL_TEXT, internal=True)
    colleague = make.team(email="lee@agency.test", name="Lee Park")
    cache = server.hub.renders
    kim = open_stream(server, world.team, after)
    kim.wait_for(lambda e: e.data.get("message_id") == internal.id, DEADLINE)
    kim.close()
    assert cache.misses == 2
    lee = open_stream(server, colleague, after)
    lee.wait_for(lambda e: e.data.get("message_id") == internal.id, DEADLINE)
    lee.close()
    assert cache.misses == 3 and cache.hits >= 1
    assert kim.seen[0].data == lee.seen[0].data
    assert 'class="message internal mine' in kim.seen[1].data["html"]
    assert 'class="message internal from-team' in lee.seen[1].data["html"]
    client = open_stream(server, world.client, after)
    client.wait_for(lambda e: e.data.get("message_id") == public.id, DEADLINE)
    time.sleep(0.2)
    client.close()
    assert [e.data["message_id"] for e in client.seen] == [public.id]
    assert INTERNAL_TEXT not in repr(client.seen) and "trimmed" not in client.seen[0].data["html"]
    assert 'class="message mine' in client.seen[0].data["html"]
