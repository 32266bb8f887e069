"""Web benchmark: page loads, search and live updates at scale, as ratios against baselines of the same run.

usage: python bench/web.py [--big 10000] [--search 100000] [--requests 30] [--streams 200] [--posts 30]
                           [--database-url URL] [--time-limit 600]

Generates data in a temporary SQLite file (or in the PostgreSQL database --database-url names; give an
empty one): a 10-message thread through storage.posting.post_message and, bulk-inserted in transactions
(html rendered, full-text index filled by the same triggers/index as normal posts), a 10,000-message
thread, a 1,000-message and a 100,000-message thread for search. Then starts `workrate web` (the real
server, uvicorn, its own process) on a loopback port and measures, signed in as a team member:

  thread page   first page of the 10,000-message thread vs the 10-message thread, for the team and in the
                client portal (a client with access to both)
  search        a rare and a common word over 100,000 messages vs over 1,000
  live update   commit of a post → its event received on an open stream (median, p99), with 1 and with
                STREAMS streams open
  page load     the 10-message thread page with STREAMS open, idle live-update streams vs with none, and
                with them during the seconds after a burst of posts

Prints absolute milliseconds (median, p90) and the ratios. Loopback only; bounded in time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from harness import Bench, Client, Timing, measure, measure_interleaved, say  # noqa: E402
from sse_client import SseStream, sign_in_with_link  # noqa: E402

from config import Settings  # noqa: E402

WORDS = ("homepage draft logo colour palette invoice budget meeting launch banner copy review feedback "
         "deadline friday monday mockup layout font header footer menu mobile tablet desktop photo gallery "
         "price quote contract revision approve change update deliver schedule campaign newsletter social "
         "post video script caption landing signup form button checkout cart shipping order customer "
         "support survey report analytics traffic conversion keyword search ranking domain hosting server "
         "email template brand guide style icon illustration animation motion print flyer poster sticker "
         "please thanks great looks good ship tomorrow next week asap question answer").split()
RARE = "zephyrine"  # in one message of every 1,000
COMMON = "kumquat"  # in one message of every 10
INTERNAL_EVERY = 10
CHUNK = 1000
QUIET_SECONDS = 12  # longer than web/live/wakeups.py's SETTLE_SECONDS


def text_for(rng: random.Random, i: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 40))
    if i % 1000 == 500:
        words.insert(rng.randrange(len(words)), RARE)
    if i % 10 == 5:
        words.insert(rng.randrange(len(words)), COMMON)
    words[0] = words[0].capitalize()
    return f"{' '.join(words)}. Item **{i}** of the list."


def bulk_messages(thread_id: int, authors: list[tuple[int, str]], count: int, seed: int) -> float:
    """Inserts `count` messages into a thread in transactions of CHUNK rows; returns seconds taken.

    Rows carry rendered html like post_message's. The full-text index is filled by the database itself
    (FTS5 triggers on SQLite, the stored search_tsv column and its GIN index on PostgreSQL), as for every other insert.
    """
    from storage.db import database
    from storage.models import VISIBILITY_CLIENT, VISIBILITY_INTERNAL, Message, utcnow
    from storage.rendering import render_markdown

    rng = random.Random(seed)
    t0 = time.perf_counter()
    start = utcnow()
    for base in range(0, count, CHUNK):
        rows = []
        for i in range(base, min(count, base + CHUNK)):
            author_id, role = authors[i % len(authors)]
            internal = role == "team" and i % INTERNAL_EVERY == 0
            text = text_for(rng, i)
            rows.append({"thread": thread_id, "author": author_id,
                         "visibility": VISIBILITY_INTERNAL if internal else VISIBILITY_CLIENT,
                         "text": text, "html": render_markdown(text), "source": "web",
                         "created_at": start + dt.timedelta(milliseconds=i)})
        with database.atomic():
            Message.insert_many(rows).execute()
    return time.perf_counter() - t0


@dataclass
class World:
    slugs: dict[str, str]  # role of the thread → slug
    team_email: str
    reader_email: str  # a client with access to the small, page and big threads
    generate_seconds: float


def generate(settings: Settings, big: int, search_big: int, search_small: int) -> World:
    from storage import db, migrations
    from storage.directory import add_client, add_user, create_workspace, get_workspace, thread_of
    from storage.models import TEAM, Membership, Message
    from storage.posting import post_message
    from storage.search import search_messages
    from storage.visibility import Viewer

    db.bind(settings)
    migrations.migrate()
    db.database.connect(reuse_if_open=True)
    run = secrets.token_hex(3)
    t0 = time.perf_counter()
    team = add_user(f"kim.{run}@agency.bench", "Kim Lee", TEAM)
    reader = None
    slugs: dict[str, str] = {}
    sizes = {"small": 10, "page": 50, "big": big, "search-small": search_small, "search-big": search_big}
    for n, (role, size) in enumerate(sizes.items()):
        ws = create_workspace(f"Bench {role} {run}", f"bench-{role}-{run}")
        slugs[role] = ws.slug
        client = add_client(f"client.{role}.{run}@client.bench", "Bob Stone", ws, True)
        if role in ("small", "page", "big"):
            if reader is None:
                reader = add_client(f"pat.{run}@client.bench", "Pat Reader", ws, True)
            else:
                Membership.create(user=reader, workspace=ws, messages_access=True)
        thread = thread_of(ws)
        if role in ("small", "page"):  # the ordinary write path, with notifications and events
            rng = random.Random(n)
            for i in range(size):
                post_message(thread, team if i % 2 else client, text_for(rng, i))
        else:
            seconds = bulk_messages(thread.id, [(team.id, "team"), (client.id, "client")], size, seed=n)
            say(f"  inserted {size:,} messages into {ws.slug} in {seconds:.1f} s")
    # The index saw the bulk rows: the rare word is in one message of every 1,000.
    viewer = Viewer.of(team)
    for role in ("search-small", "search-big"):
        thread = thread_of(get_workspace(slugs[role]))
        found = search_messages(viewer, thread, RARE).count()
        expected = sum(1 for i in range(sizes[role]) if i % 1000 == 500)
        if found != expected:
            raise SystemExit(f"full-text index incomplete in {role}: {found} matches for {RARE!r}, "
                             f"expected {expected}")
    total = Message.select().count()
    say(f"  {total:,} messages in the database")
    db.database.close()
    assert reader is not None
    return World(slugs, team.email, reader.email, time.perf_counter() - t0)


def live_latency(settings: Settings, port: int, cookie: str, slug: str, author_email: str, posts: int,
                 streams: list[SseStream]) -> Timing:
    """Commit of a post (post_message returned) → its event on the first stream, in ms."""
    from storage import db
    from storage.directory import get_user, get_workspace, thread_of
    from storage.posting import post_message

    db.bind(settings)
    probe = streams[0]
    samples = []
    rng = random.Random(7)
    with db.database.connection_context():
        author = get_user(author_email)
        thread = thread_of(get_workspace(slug))
        for i in range(posts):
            time.sleep(rng.uniform(0.05, 0.4))  # arrivals at random moments against the 0.5 s poll
            message = post_message(thread, author, f"Live update {i} {secrets.token_hex(4)}")
            committed = time.perf_counter()
            event = probe.wait_for(lambda e, mid=message.id: e.data.get("message_id") == mid, timeout=30)
            samples.append((event.received_at - committed) * 1000)
    return Timing(samples)


def open_streams(port: int, cookie: str, slug: str, count: int, after: int) -> Iterator[SseStream]:
    for _ in range(count):
        s = SseStream(port, f"/events/w/{slug}?after={after}", cookie).open()
        yield s


def latest_event(settings: Settings) -> int:
    from peewee import fn

    from storage import db
    from storage.mail_log import ThreadEvent

    db.bind(settings)
    with db.database.connection_context():
        return ThreadEvent.select(fn.MAX(ThreadEvent.id)).scalar() or 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", type=int, default=10_000, help="messages in the big thread")
    ap.add_argument("--search", type=int, default=100_000, help="messages in the big search thread")
    ap.add_argument("--search-small", type=int, default=1_000, help="messages in the small search thread")
    ap.add_argument("--requests", type=int, default=30, help="timed requests per measurement")
    ap.add_argument("--streams", type=int, default=200, help="open live-update streams for the load test")
    ap.add_argument("--posts", type=int, default=30, help="posts timed for live-update latency")
    ap.add_argument("--database-url", default="", help="an empty postgresql://… database (default: SQLite)")
    ap.add_argument("--time-limit", type=float, default=600, help="give up after this many seconds")
    args = ap.parse_args()
    deadline = time.monotonic() + args.time_limit

    def check_time() -> None:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/web.py: over the time limit of {args.time_limit:.0f} s")

    streams: list[SseStream] = []
    with Bench("wr-bench-web-", args.database_url) as b:
        settings, db_name = b.settings, b.db_name
        say(f"generating data ({db_name}) …")
        world = generate(settings, args.big, args.search, args.search_small)
        say(f"  done in {world.generate_seconds:.1f} s")
        check_time()
        proc = b.start_web(WORKRATE_LIVE_STREAM_SECONDS=str(max(120, args.time_limit)),
                           # measures speed, not the rate limit or the loop breaker
                           WORKRATE_POSTS_PER_MINUTE="100000000", WORKRATE_LOOP_POSTS="100000000",
                           # one person opens all the streams here (bench/streams.py spreads them)
                           WORKRATE_LIVE_STREAMS_PER_PERSON=str(args.streams + 1))
        port = proc.port
        try:

            from storage import db
            from storage.directory import get_user
            from storage.tokens import create_login_token

            db.bind(settings)
            with db.database.connection_context():
                link = f"{settings.effective_base_url}/login/{create_login_token(get_user(world.team_email), 15)}"
                reader_link = (f"{settings.effective_base_url}/login/"
                               f"{create_login_token(get_user(world.reader_email), 15)}")
            cookie = sign_in_with_link(link)
            client = Client(port, cookie)
            reader = Client(port, sign_in_with_link(reader_link))
            s = world.slugs
            n = args.requests

            results: dict[str, Timing] = {}
            results.update(measure_interleaved({
                "thread 10": lambda: client.get(f"/w/{s['small']}"),
                "thread 50": lambda: client.get(f"/w/{s['page']}"),
                f"thread {args.big:,}": lambda: client.get(f"/w/{s['big']}")}, n))
            check_time()
            results.update(measure_interleaved({
                "portal 10": lambda: reader.get(f"/portal/w/{s['small']}"),
                "portal 50": lambda: reader.get(f"/portal/w/{s['page']}"),
                f"portal {args.big:,}": lambda: reader.get(f"/portal/w/{s['big']}")}, n))
            check_time()
            for word, label in ((RARE, "rare"), (COMMON, "common")):
                results.update(measure_interleaved({
                    f"search {label} {args.search_small:,}":
                        lambda w=word: client.get(f"/search?w={s['search-small']}&q={w}"),
                    f"search {label} {args.search:,}":
                        lambda w=word: client.get(f"/search?w={s['search-big']}&q={w}")}, n))
                check_time()

            after = latest_event(settings)
            probe = SseStream(port, f"/events/w/{s['small']}?after={after}", cookie).open()
            streams.append(probe)
            probe.wait_connected()
            results["live 1 stream"] = live_latency(settings, port, cookie, s["small"], world.team_email, args.posts,
                                                    [probe])
            check_time()
            # web/live/ re-reads events for SETTLE_SECONDS after they pass; wait that out, so the
            # baselines are measured on a quiet system.
            time.sleep(QUIET_SECONDS)
            results["page, 0 streams"] = measure(lambda: client.get(f"/w/{s['small']}"), n)
            after = latest_event(settings)
            for stream in open_streams(port, cookie, s["small"], args.streams - 1, after):
                streams.append(stream)
            for stream in streams:
                stream.wait_connected(60)
            time.sleep(2.0)
            results[f"page, {args.streams} idle streams"] = measure(lambda: client.get(f"/w/{s['small']}"), n)
            results[f"live {args.streams} streams"] = live_latency(settings, port, cookie, s["small"], world.team_email,
                                                                   max(10, args.posts // 3), streams)
            results[f"page, {args.streams} streams, <10 s after posts"] = measure(
                lambda: client.get(f"/w/{s['small']}"), n)
            delivered = sum(1 for st in streams if len(st.seen) >= 1)
            still_open = sum(1 for st in streams if not st.ended.is_set())
            check_time()
        finally:
            for stream in streams:
                stream.close()

    say("")
    say(f"web: {db_name}, {os.cpu_count()} CPUs, `workrate web` (uvicorn) on loopback, signed in as a team member")
    for name, t in results.items():
        say(f"  {name:42} {t}")

    def ratio(a: str, b: str) -> str:
        return f"{results[a].median / results[b].median:6.2f}×"

    rows = [(f"thread page, {args.big:,} vs 10 messages", ratio(f"thread {args.big:,}", "thread 10")),
            (f"thread page, {args.big:,} vs 50 messages (full pages)", ratio(f"thread {args.big:,}", "thread 50")),
            (f"client portal page, {args.big:,} vs 10 messages", ratio(f"portal {args.big:,}", "portal 10")),
            (f"client portal page, {args.big:,} vs 50 messages", ratio(f"portal {args.big:,}", "portal 50"))]
    for label in ("rare", "common"):
        rows.append((f"search {label} word, {args.search:,} vs {args.search_small:,} messages",
                     ratio(f"search {label} {args.search:,}", f"search {label} {args.search_small:,}")))
    rows.append((f"page load, {args.streams} open idle streams vs none",
                 ratio(f"page, {args.streams} idle streams", "page, 0 streams")))
    rows.append((f"page load, {args.streams} streams, just after posts, vs none",
                 ratio(f"page, {args.streams} streams, <10 s after posts", "page, 0 streams")))
    say("ratios (medians):")
    for label, value in rows:
        say(f"  {label:58} {value}")
    live1, liven = results["live 1 stream"], results[f"live {args.streams} streams"]
    say(f"  live update commit→event: median {live1.median:.0f} ms, p99 {live1.pct(99):.0f} ms with 1 stream; "
        f"median {liven.median:.0f} ms, p99 {liven.pct(99):.0f} ms with {args.streams}")
    say(f"  streams that received events: {delivered}/{len(streams)}; still open at the end: {still_open}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
