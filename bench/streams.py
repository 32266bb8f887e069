"""Live-update benchmark: many open streams on one web process, as figures and ratios of the same run.

usage: python bench/streams.py [--streams 10000] [--people 2000] [--workspaces 200] [--posts 40]
                               [--requests 30] [--database-url URL] [--time-limit 900]

Generates workspaces, each with its clients (and a few team members who see every workspace) in a
temporary SQLite file (or the empty PostgreSQL database --database-url names), starts `workrate web` (its
own process, uvicorn) on a loopback port, and measures from one asyncio client:

  memory        the web process's resident memory growth per open, idle stream (STREAMS streams, each
                person opening STREAMS/PEOPLE of them, at most live_streams_per_person)
  delay         commit of a post → its event on every open stream of that workspace, with STREAMS
                open: posts through the web process's JSON API (timed from its answer) and posts by
                another process (timed from post_message's return) (storage.posting.post_message here;
                PostgreSQL: NOTIFY; SQLite: the web process's poll)
  page load     a thread page with STREAMS open streams vs with none (medians; ratio)

Loopback only, bounded in count and time; raises this process's open-files limit to its hard limit.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from procs import Proc, base_environment, free_port, start  # noqa: E402

from config import Settings  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class World:
    people: list[tuple[int, str, str]]  # (user id, role, workspace slug the person's streams follow)
    slugs: list[str]
    team_email: str
    api_token: str


def generate(settings: Settings, people: int, workspaces: int) -> World:
    from storage import db, migrations
    from storage.directory import add_client, add_user, create_workspace, thread_of
    from storage.models import TEAM
    from storage.posting import post_message
    from storage.tokens import create_api_token

    db.bind(settings)
    migrations.migrate()
    db.database.connect(reuse_if_open=True)
    run = secrets.token_hex(3)
    team = [add_user(f"team{i}.{run}@agency.bench", f"Team {i}", TEAM) for i in range(max(1, people // 100))]
    slugs = []
    for w in range(workspaces):
        ws = create_workspace(f"Bench {w} {run}", f"bench-{w}-{run}")
        slugs.append(ws.slug)
        post_message(thread_of(ws), team[0], f"Welcome to workspace {w}.")
    found: list[tuple[int, str, str]] = [(u.id, TEAM, slugs[i % workspaces]) for i, u in enumerate(team)]
    with db.database.atomic():
        for i in range(people - len(team)):
            slug = slugs[i % workspaces]
            from storage.directory import get_workspace

            user = add_client(f"client{i}.{run}@client.bench", f"Client {i}", get_workspace(slug), True)
            found.append((user.id, user.role, slug))
    token = create_api_token(team[0], "bench")
    db.database.close()
    return World(found, slugs, team[0].email, token)


def session_cookie(secret: str, user_id: int, role: str) -> str:
    """The session cookie the sign-in form would set, made with Flask's own session interface."""
    from flask import Flask

    app = Flask("bench")
    app.secret_key = secret
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return "workrate_session=" + serializer.dumps({"user_id": user_id, "role": role})


@dataclass
class Client:
    """One open stream, read by the benchmark's event loop."""

    slug: str
    cookie: str
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    status: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)  # message id → perf_counter at arrival
    writer: asyncio.StreamWriter | None = None


async def run_stream(port: int, client: Client) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client.writer = writer
        writer.write((f"GET /events/w/{client.slug}?after=0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Cookie: {client.cookie}\r\nAccept: text/event-stream\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        client.status = int(head.split(b" ", 2)[1])
        if client.status != 200:
            return
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b": connected"):
                client.connected.set()
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
                if "message_id" in data:
                    client.arrivals[data["message_id"]] = time.perf_counter()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        client.ended = True
        client.connected.set()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def page_ms(port: int, cookie: str, path: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    body = response.read()
    ms = (time.perf_counter() - t0) * 1000
    conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return ms


def pct(samples: list[float], p: float) -> float:
    data = sorted(samples)
    return data[min(len(data) - 1, int(p / 100 * len(data)))]


POST_MS: list[float] = []  # how long each post through the JSON API took to answer


def api_post(port: int, token: str, slug: str, text: str) -> tuple[int, float]:
    """Posts through the web process's JSON API; the commit happened before its answer, so the delay is
    counted from the answer (slightly less than from the commit)."""
    t0 = time.perf_counter()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/workspaces/{slug}/messages",
                                 data=json.dumps({"text": text}).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as response:
        message_id = int(json.loads(response.read())["id"])
    answered = time.perf_counter()
    POST_MS.append((answered - t0) * 1000)
    return message_id, answered


async def measure_delays(clients: list[Client], posts: int,
                         post: Callable[[str, str], tuple[int, float]]) -> list[float]:
    """Posts to random workspaces, one at a time; the delay of each post's event on every stream of its
    workspace, in ms, from the post's commit (post(slug, text) → (message id, perf_counter once committed))."""
    by_slug: dict[str, list[Client]] = {}
    for c in clients:
        if not c.ended:
            by_slug.setdefault(c.slug, []).append(c)
    rng = random.Random(5)
    samples: list[float] = []
    loop = asyncio.get_running_loop()
    for i in range(posts):
        slug = rng.choice(sorted(by_slug))
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        message_id, t0 = await loop.run_in_executor(None, post, slug, f"Bench post {i} {secrets.token_hex(4)}")
        end = time.monotonic() + 30
        waiting = by_slug[slug]
        while any(message_id not in c.arrivals and not c.ended for c in waiting) and time.monotonic() < end:
            await asyncio.sleep(0.005)
        samples += [(c.arrivals[message_id] - t0) * 1000 for c in waiting if message_id in c.arrivals]
        missing = sum(1 for c in waiting if message_id not in c.arrivals)
        if missing:
            say(f"  post {i}: {missing} of {len(waiting)} streams did not get it within 30 s")
    return samples


def direct_post(settings: Settings, team_email: str) -> Callable[[str, str], tuple[int, float]]:
    from storage import db
    from storage.directory import get_user, get_workspace, thread_of
    from storage.posting import post_message

    db.bind(settings)

    def post(slug: str, text: str) -> tuple[int, float]:
        with db.database.connection_context():
            message = post_message(thread_of(get_workspace(slug)), get_user(team_email), text)
            return int(message.id), time.perf_counter()  # post_message returns once committed

    return post


async def bench(args: argparse.Namespace, settings: Settings, proc: Proc, world: World, secret: str,
                deadline: float) -> dict[str, object]:
    port = settings.web_port
    team_id, team_role, _ = world.people[0]
    team_cookie = session_cookie(secret, team_id, team_role)
    page = f"/w/{world.slugs[0]}"
    loop = asyncio.get_running_loop()
    for _ in range(5):
        await loop.run_in_executor(None, page_ms, port, team_cookie, page)
    base_pages = [await loop.run_in_executor(None, page_ms, port, team_cookie, page) for _ in range(args.requests)]
    await asyncio.sleep(1)
    rss_before = rss_kb(proc.popen.pid)

    per_person = max(1, min(8, args.streams // len(world.people)))
    clients: list[Client] = []
    for user_id, role, slug in world.people:
        cookie = session_cookie(secret, user_id, role)
        clients += [Client(slug, cookie) for _ in range(per_person)]
    clients = clients[:args.streams]
    tasks = []
    t0 = time.perf_counter()
    gate = asyncio.Semaphore(200)

    async def open_one(c: Client) -> None:
        async with gate:
            tasks.append(asyncio.ensure_future(run_stream(port, c)))
            await asyncio.wait_for(c.connected.wait(), 120)

    await asyncio.gather(*(open_one(c) for c in clients))
    open_seconds = time.perf_counter() - t0
    ok = sum(1 for c in clients if c.status == 200 and not c.ended)
    say(f"  {ok:,} of {len(clients):,} streams open in {open_seconds:.1f} s "
        f"({len(world.people):,} people, {per_person} each, {len(world.slugs)} workspaces)")
    await asyncio.sleep(3)
    rss_after = rss_kb(proc.popen.pid)
    if time.monotonic() > deadline:
        raise SystemExit("over the time limit")

    loaded_pages = []
    for _ in range(args.requests):
        loaded_pages.append(await loop.run_in_executor(None, page_ms, port, team_cookie, page))
    api = await measure_delays(clients, args.posts, lambda slug, text: api_post(port, world.api_token, slug, text))
    other = await measure_delays(clients, args.posts, direct_post(settings, world.team_email))
    still_open = sum(1 for c in clients if not c.ended)
    for c in clients:
        if c.writer is not None:
            c.writer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(3)
    # A second baseline after the streams closed: the machine's load drifts, so both are reported.
    after_pages = [await loop.run_in_executor(None, page_ms, port, team_cookie, page) for _ in range(args.requests)]
    return {"open": ok, "opened_in": open_seconds, "rss_before": rss_before, "rss_after": rss_after,
            "base_pages": base_pages, "loaded_pages": loaded_pages, "after_pages": after_pages,
            "post_ms": POST_MS, "api": api, "other": other,
            "still_open": still_open, "per_person": per_person}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=10_000, help="open live-update streams")
    ap.add_argument("--people", type=int, default=2_000, help="people opening them (at most 8 streams each)")
    ap.add_argument("--workspaces", type=int, default=200, help="workspaces the people are spread over")
    ap.add_argument("--posts", type=int, default=40, help="posts timed per kind")
    ap.add_argument("--requests", type=int, default=30, help="timed page loads per measurement")
    ap.add_argument("--database-url", default="", help="an empty postgresql://… database (default: SQLite)")
    ap.add_argument("--time-limit", type=float, default=900, help="give up after this many seconds")
    args = ap.parse_args()
    deadline = time.monotonic() + args.time_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.streams + 1000:
        raise SystemExit(f"the open-files limit ({hard}) is too low for {args.streams} streams")

    data = Path(tempfile.mkdtemp(prefix="wr-bench-streams-"))
    port = free_port()
    secret = "bench-streams-" + secrets.token_hex(16)
    settings = Settings(data_dir=data, database_url=args.database_url, secret_key=secret,
                        reply_domain="reply.bench.test", web_port=port, base_url=f"http://127.0.0.1:{port}")
    db_name = "PostgreSQL" if settings.is_postgres else "SQLite"
    proc = None
    try:
        say(f"generating {args.people:,} people in {args.workspaces} workspaces ({db_name}) …")
        t0 = time.perf_counter()
        world = generate(settings, args.people, args.workspaces)
        say(f"  done in {time.perf_counter() - t0:.1f} s")
        env = base_environment(WORKRATE_DATABASE_URL=settings.effective_database_url, WORKRATE_DATA_DIR=str(data),
                               WORKRATE_SECRET_KEY=secret, WORKRATE_REPLY_DOMAIN=settings.reply_domain,
                               WORKRATE_BASE_URL=settings.effective_base_url, WORKRATE_LOG_LEVEL="WARNING",
                               WORKRATE_LIVE_STREAM_SECONDS=str(max(600, args.time_limit)),
                               WORKRATE_LIVE_MAX_STREAMS=str(args.streams + 100))
        proc = start("web", env, data / "logs", "web", port=port)
        proc.wait_listening(60)
        r = asyncio.run(bench(args, settings, proc, world, secret, deadline))
    finally:
        if proc is not None:
            proc.stop()
        shutil.rmtree(data, ignore_errors=True)

    n = int(r["open"])  # type: ignore[call-overload]
    per_stream_kb = (int(r["rss_after"]) - int(r["rss_before"])) / max(1, n)  # type: ignore[call-overload]
    base, loaded, after, posts = r["base_pages"], r["loaded_pages"], r["after_pages"], r["post_ms"]
    api, other = r["api"], r["other"]
    assert isinstance(base, list) and isinstance(loaded, list) and isinstance(after, list)
    assert isinstance(api, list) and isinstance(other, list) and isinstance(posts, list)
    say("")
    say(f"streams: {db_name}, {os.cpu_count()} CPUs, `workrate web` (uvicorn) on loopback, one web process")
    say(f"  open streams                          {n:,} (opened in {r['opened_in']:.1f} s; "
        f"{r['still_open']:,} still open at the end)")
    say(f"  memory per idle stream                {per_stream_kb:.1f} KB "
        f"(RSS {int(r['rss_before']) // 1024} MB → {int(r['rss_after']) // 1024} MB)")  # type: ignore[call-overload]
    for label, samples in ((f"commit→event, post via the web process's API, {n:,} open", api),
                           (f"commit→event, post by another process, {n:,} open", other)):
        if samples:
            say(f"  {label:52} p50 {statistics.median(samples):6.0f} ms  p99 {pct(samples, 99):6.0f} ms  "
                f"(n={len(samples)})")
    if posts:
        say(f"  (the API post itself answered in p50 {statistics.median(posts):.0f} ms, p99 {pct(posts, 99):.0f} ms)")
    baseline = statistics.median(base + after)
    say(f"  page load, no streams (before; after)  median {statistics.median(base):6.1f} ms; "
        f"{statistics.median(after):6.1f} ms")
    say(f"  page load, {n:,} open streams          median {statistics.median(loaded):6.1f} ms")
    say(f"  ratio (medians, vs both baselines)    {statistics.median(loaded) / baseline:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
