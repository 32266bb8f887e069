"""Live-update benchmark: many open streams on one web process, as figures and ratios of the same run.

usage: python bench/streams.py [--streams 10000] [--people 2000] [--workspaces 200] [--posts 40]
                               [--blocks 12] [--per-block 16] [--database-url URL] [--time-limit 900]

Generates workspaces, each with its clients (and a few team members who see every workspace) in a
temporary SQLite file (or the empty PostgreSQL database --database-url names), starts two `workrate web`
processes on that database (A, which gets the streams, and B, which gets none) on loopback ports, and
measures from one asyncio client:

  memory        A's resident memory growth per open, idle stream (STREAMS streams, each person opening
                STREAMS/PEOPLE of them, at most live_streams_per_person)
  delay         commit of a post → its event on every open stream of that workspace, with STREAMS open
                on A: posts through A's JSON API (the same process; timed from its answer), through B's
                JSON API (another web process) and by this process (storage.posting.post_message, as the
                CLI does; timed from its return). PostgreSQL: NOTIFY; SQLite: the wake-up socket
  page load     a thread page from A with STREAMS open streams vs the same page from B with none, taken
                in turns (A, B, B, A, …) in blocks: the median of the blocks' ratios and their spread.
                The same pairing before any stream is open is the control (A and B alike: about 1.0×).

Loopback only, bounded in count and time; raises this process's open-files limit to its hard limit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from harness import Bench, Client, paired_ratio, pct, say, session_cookies  # noqa: E402

from config import Settings  # noqa: E402

SLOW_POST_MS = 500


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


@dataclass
class Stream:
    """One open stream, read by the benchmark's event loop."""

    slug: str
    cookie: str
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    status: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)  # message id → perf_counter at arrival
    writer: asyncio.StreamWriter | None = None


async def run_stream(port: int, client: Stream) -> None:
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


def api_post(port: int, token: str, slug: str, text: str, answers: list[float]) -> tuple[int, float]:
    """Posts through a web process's JSON API; the commit happened before its answer, so the delay is
    counted from the answer (slightly less than from the commit)."""
    t0 = time.perf_counter()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/workspaces/{slug}/messages",
                                 data=json.dumps({"text": text}).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as response:
        message_id = int(json.loads(response.read())["id"])
    answered = time.perf_counter()
    answers.append((answered - t0) * 1000)
    return message_id, answered


async def measure_delays(clients: list[Stream], posts: int,
                         post: Callable[[str, str], tuple[int, float]]) -> list[float]:
    """Posts to random workspaces, one at a time; the delay of each post's event on every stream of its
    workspace, in ms, from the post's commit (post(slug, text) → (message id, perf_counter once committed))."""
    by_slug: dict[str, list[Stream]] = {}
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
        these = [(c.arrivals[message_id] - t0) * 1000 for c in waiting if message_id in c.arrivals]
        if these and max(these) > SLOW_POST_MS:  # the tail: one slow post, or many?
            say(f"  slow post {i} to {slug}: fastest stream {min(these):.0f} ms, slowest {max(these):.0f} ms "
                f"({len(these)} streams)")
        samples += these
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


async def bench(args: argparse.Namespace, b: Bench, a_proc: object, b_proc: object, world: World,
                deadline: float) -> dict[str, object]:
    from procs import Proc

    assert isinstance(a_proc, Proc) and isinstance(b_proc, Proc)
    cookies = session_cookies(b.secret, [(user_id, role) for user_id, role, _ in world.people])
    page = f"/w/{world.slugs[0]}"
    on_a, on_b = Client(a_proc.port, cookies[0]), Client(b_proc.port, cookies[0])
    loop = asyncio.get_running_loop()

    def pages() -> object:
        return paired_ratio(lambda: on_a.get(page), lambda: on_b.get(page), args.blocks, args.per_block)

    control = await loop.run_in_executor(None, pages)
    await asyncio.sleep(1)
    rss_before = rss_kb(a_proc.popen.pid)

    per_person = max(1, min(8, args.streams // len(world.people)))
    clients: list[Stream] = []
    for (_, _, slug), cookie in zip(world.people, cookies, strict=True):
        clients += [Stream(slug, cookie) for _ in range(per_person)]
    clients = clients[:args.streams]
    tasks = []
    t0 = time.perf_counter()
    gate = asyncio.Semaphore(200)

    async def open_one(c: Stream) -> None:
        async with gate:
            tasks.append(asyncio.ensure_future(run_stream(a_proc.port, c)))
            await asyncio.wait_for(c.connected.wait(), 120)

    await asyncio.gather(*(open_one(c) for c in clients))
    open_seconds = time.perf_counter() - t0
    ok = sum(1 for c in clients if c.status == 200 and not c.ended)
    say(f"  {ok:,} of {len(clients):,} streams open in {open_seconds:.1f} s "
        f"({len(world.people):,} people, {per_person} each, {len(world.slugs)} workspaces)")
    await asyncio.sleep(3)
    rss_after = rss_kb(a_proc.popen.pid)
    if time.monotonic() > deadline:
        raise SystemExit("over the time limit")

    loaded = await loop.run_in_executor(None, pages)
    answers: list[float] = []
    same = await measure_delays(clients, args.posts,
                                lambda slug, text: api_post(a_proc.port, world.api_token, slug, text, answers))
    other_web = await measure_delays(clients, args.posts,
                                     lambda slug, text: api_post(b_proc.port, world.api_token, slug, text, answers))
    other = await measure_delays(clients, args.posts, direct_post(b.settings, world.team_email))
    still_open = sum(1 for c in clients if not c.ended)
    for c in clients:
        if c.writer is not None:
            c.writer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"open": ok, "opened_in": open_seconds, "rss_before": rss_before, "rss_after": rss_after,
            "control": control, "loaded": loaded, "answers": answers, "same": same, "other_web": other_web,
            "other": other, "still_open": still_open, "per_person": per_person}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=10_000, help="open live-update streams")
    ap.add_argument("--people", type=int, default=2_000, help="people opening them (at most 8 streams each)")
    ap.add_argument("--workspaces", type=int, default=200, help="workspaces the people are spread over")
    ap.add_argument("--posts", type=int, default=40, help="posts timed per kind")
    ap.add_argument("--blocks", type=int, default=12, help="blocks of paired page loads per ratio")
    ap.add_argument("--per-block", type=int, default=16, help="page loads from each process per block")
    ap.add_argument("--database-url", default="", help="an empty postgresql://… database (default: SQLite)")
    ap.add_argument("--time-limit", type=float, default=900, help="give up after this many seconds")
    args = ap.parse_args()
    deadline = time.monotonic() + args.time_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.streams + 1000:
        raise SystemExit(f"the open-files limit ({hard}) is too low for {args.streams} streams")

    with Bench("wr-bench-streams-", args.database_url) as b:
        say(f"generating {args.people:,} people in {args.workspaces} workspaces ({b.db_name}) …")
        t0 = time.perf_counter()
        world = generate(b.settings, args.people, args.workspaces)
        say(f"  done in {time.perf_counter() - t0:.1f} s")
        web_settings = {"WORKRATE_LIVE_STREAM_SECONDS": str(max(600, args.time_limit)),
                        "WORKRATE_LIVE_MAX_STREAMS": str(args.streams + 100),
                        "WORKRATE_POSTS_PER_MINUTE": "100000000"}  # measures speed, not the rate limit
        a_proc = b.start_web(name="web-a", **web_settings)
        b_proc = b.start_web(name="web-b", **web_settings)
        from storage import db

        db.bind(b.settings)
        r = asyncio.run(bench(args, b, a_proc, b_proc, world, deadline))
        db_name = b.db_name

    n = int(r["open"])  # type: ignore[call-overload]
    per_stream_kb = (int(r["rss_after"]) - int(r["rss_before"])) / max(1, n)  # type: ignore[call-overload]
    answers = r["answers"]
    assert isinstance(answers, list)
    say("")
    say(f"streams: {db_name}, {os.cpu_count()} CPUs, `workrate web` (uvicorn) on loopback; A holds the streams, "
        f"B none")
    say(f"  open streams                          {n:,} (opened in {r['opened_in']:.1f} s; "
        f"{r['still_open']:,} still open at the end)")
    say(f"  memory per idle stream                {per_stream_kb:.1f} KB "
        f"(RSS {int(r['rss_before']) // 1024} MB → {int(r['rss_after']) // 1024} MB)")  # type: ignore[call-overload]
    for label, key in ((f"commit→event, post via A's API (same process), {n:,} open", "same"),
                       (f"commit→event, post via B's API (other web process), {n:,} open", "other_web"),
                       (f"commit→event, post by another process (CLI-like), {n:,} open", "other")):
        samples = r[key]
        assert isinstance(samples, list)
        if samples:
            say(f"  {label:66} p50 {statistics.median(samples):6.0f} ms  p99 {pct(samples, 99):6.0f} ms  "
                f"(n={len(samples)})")
    if answers:
        say(f"  (the API posts themselves answered in p50 {statistics.median(answers):.0f} ms, "
            f"p99 {pct(answers, 99):.0f} ms)")
    say(f"  page load A/B, no streams anywhere (control)  {r['control']}")
    say(f"  page load A/B, {n:,} streams open on A          {r['loaded']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
