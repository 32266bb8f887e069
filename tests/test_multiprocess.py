"""WorkRate as many processes against one fresh PostgreSQL database: two `workrate smtp`, two `workrate worker`
and two `workrate web`. Migrations apply once; replies (some sent to both gateways at once) are posted once
each; every notification reaches the relay once; live updates, attachments and sessions work across
processes; idle live-update streams hold no database connection. Marked slow and postgres; it creates its
own database on 127.0.0.1:5432 and skips, saying why, when no server answers there.
"""
from __future__ import annotations

import asyncio
import collections
import json
import re
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
import pytest
from outbound_relay import CapturingRelay, new_part
from procs import (
    Proc,
    base_environment,
    cli,
    free_port,
    fresh_postgres_database,
    postgres_unavailable_reason,
    query,
    start,
    stop_all,
    wait_until,
)
from sse_client import SseStream, request_json, sign_in_with_link

from gateway.errors import Duplicate
from storage.migrations import MIGRATIONS
from web.live.reads import READER_IDLE_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPLY_DOMAIN = "reply.multi.test"
WORKSPACES = 3
CLIENTS_PER_WORKSPACE = 3
REPLIES = 240
TO_BOTH_EVERY = 6  # every 6th reply goes to both gateways at once: 40 of them
SMTP_CONCURRENCY = 12
SEND_TIME_LIMIT = 75  # seconds for all replies, at most
DRAIN_TIME_LIMIT = 60  # seconds for the workers to send every notification
TEAM_POSTS = 60  # team posts through the JSON API of both web processes, while the replies come in
TEAM = ("kim@agency.test", "lee@agency.test")
MARKER_RE = re.compile(r"mp-\d+-[0-9a-f]{6}")
IDLE_STREAMS = 8  # one person's cap (live_streams_per_person)


@dataclass
class Cluster:
    url: str
    env: dict[str, str]
    relay: CapturingRelay
    gateways: list[Proc]
    workers: list[Proc]
    webs: list[Proc]
    tmp: Path
    slugs: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # team member → API token
    clients: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # slug → [(email, reply address)]

    @property
    def procs(self) -> list[Proc]:
        return [*self.gateways, *self.workers, *self.webs]

    def logs(self) -> str:
        return "\n".join(f"==== {p.name}\n{p.log()[-2500:]}" for p in self.procs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("multiprocess")
    with fresh_postgres_database("wr_multiprocess") as url, CapturingRelay() as relay:
        env = base_environment(
            WORKRATE_DATABASE_URL=url, WORKRATE_SECRET_KEY="multi-process-" + secrets.token_hex(16),
            WORKRATE_REPLY_DOMAIN=REPLY_DOMAIN, WORKRATE_RELAY_URL=relay.url, WORKRATE_NOTIFY_DELAY="0",
            WORKRATE_FILES_DIR=str(tmp / "shared-files"), WORKRATE_LOG_LEVEL="INFO",
            WORKRATE_DATA_DIR=str(tmp / "cli"),
            # a load test: each client replies far faster than a person
            WORKRATE_POSTS_PER_MINUTE="1000000", WORKRATE_LOOP_POSTS="1000000",
            WORKRATE_SENDER_CHECKS="off")  # no DNS from tests (the in-process gateways use a silent zone)
        web_ports = [free_port(), free_port()]
        env["WORKRATE_BASE_URL"] = f"http://127.0.0.1:{web_ports[0]}"
        logs = tmp / "logs"
        procs: list[Proc] = []
        try:
            # All six at once, on an empty database: their migrations race.
            for i in (1, 2):
                procs.append(start("smtp", env, logs, f"smtp{i}", port=free_port(),
                                   WORKRATE_DATA_DIR=str(tmp / f"smtp{i}")))
                procs.append(start("worker", env, logs, f"worker{i}", WORKRATE_DATA_DIR=str(tmp / f"worker{i}")))
                procs.append(start("web", env, logs, f"web{i}", port=web_ports[i - 1],
                                   WORKRATE_DATA_DIR=str(tmp / f"web{i}")))
            c = Cluster(url, env, relay, [p for p in procs if p.role == "smtp"],
                        [p for p in procs if p.role == "worker"], [p for p in procs if p.role == "web"], tmp)
            for p in procs:
                if p.role == "worker":
                    p.wait_log(r"outbox worker \S+ started", timeout=90)
                else:
                    p.wait_listening(timeout=90)
            _populate(c)
            yield c
        finally:
            stop_all(procs)


def _populate(c: Cluster) -> None:
    """Two team members and, per workspace, clients with Messages access and their reply addresses."""
    for n, email in enumerate(TEAM):
        cli(c.env, "user", "add", email, "--name", f"Team Member {n}", "--team")
        c.tokens[email] = cli(c.env, "user", "api-token", email).strip()
    for w in range(WORKSPACES):
        slug = cli(c.env, "workspace", "create", f"Client {w}", "--slug", f"client-{w}").strip().splitlines()[-1]
        c.slugs.append(slug)
        c.clients[slug] = []
        for k in range(CLIENTS_PER_WORKSPACE):
            email = f"contact{k}@client{w}.test"
            cli(c.env, "user", "add", email, "--name", f"Contact {w}.{k}", "--client", slug, "--messages-access")
            c.clients[slug].append((email, cli(c.env, "reply-address", slug, "--as", email).strip()))


def test_six_processes_start_together_and_migrate_once(cluster: Cluster) -> None:
    # Every process came up; schema_version holds each version once, and exactly one process applied it.
    assert all(p.alive() for p in cluster.procs), cluster.logs()
    rows = query(cluster.url, "SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in rows] == [v for v, _ in MIGRATIONS]
    applied = collections.Counter(m.group(1) for p in cluster.procs
                                  for m in re.finditer(r"applying schema migration (\d+)", p.log()))
    assert applied == collections.Counter({str(v): 1 for v, _ in MIGRATIONS}), cluster.logs()


@dataclass
class Reply:
    marker: str
    sender: str
    rcpt: str
    raw: bytes
    ports: list[int]
    codes: list[tuple[int, int]] = field(default_factory=list)  # (port, final SMTP code) per delivery


def _reply(i: int, run: str, sender: str, rcpt: str) -> tuple[str, bytes]:
    marker = f"mp-{i}-{run}"
    m = EmailMessage()
    m["From"] = f"Contact <{sender}>"
    m["To"] = rcpt
    m["Subject"] = "Re: [Client] New message"
    m["Date"] = formatdate(localtime=False)
    m["Message-ID"] = f"<{marker}.{secrets.token_hex(6)}@client.test>"
    m.set_content(f"Reply {marker}: the draft looks good, please go ahead.\n\n"
                  "On Tue, 4 Jun 2024, Team Member wrote:\n> Here is the draft.\n")
    return marker, m.as_bytes()


async def _deliver(port: int, reply: Reply, attempts: int = 5) -> int:
    """One delivery as an MTA makes it: retried on 4xx and on connection trouble; the final code."""
    code = 0
    for attempt in range(attempts):
        try:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60, start_tls=False) as smtp:
                await smtp.mail(reply.sender)
                await smtp.rcpt(reply.rcpt)
                code = (await smtp.data(reply.raw)).code
        except aiosmtplib.SMTPResponseException as e:
            code = e.code
        except (aiosmtplib.SMTPException, OSError):
            code = 421
        if code < 400 or code >= 500:
            return code
        await asyncio.sleep(0.2 * (attempt + 1))
    return code


async def _send_all(replies: list[Reply]) -> None:
    gate = asyncio.Semaphore(SMTP_CONCURRENCY)

    async def one(reply: Reply, port: int) -> None:
        async with gate:
            reply.codes.append((port, await _deliver(port, reply)))

    await asyncio.wait_for(asyncio.gather(*(one(r, p) for r in replies for p in r.ports)), SEND_TIME_LIMIT)


def _team_posts(cluster: Cluster, run: str) -> list[tuple[str, str, int]]:
    """TEAM_POSTS posts by the team, alternating web 1 and web 2; [(marker, slug, status)]."""
    done = []
    for i in range(TEAM_POSTS):
        slug, web, author = cluster.slugs[i % len(cluster.slugs)], cluster.webs[i % 2], TEAM[(i // 2) % len(TEAM)]
        marker = f"mp-{10_000 + i}-{run}"
        status, body = request_json(f"{web.url}/api/workspaces/{slug}/messages", "POST",
                                    {"text": f"Team post {marker}: the new draft is up."}, cluster.tokens[author])
        done.append((marker, slug, status))
    return done


def test_replies_over_two_gateways_are_posted_and_notified_exactly_once(cluster: Cluster) -> None:
    # REPLIES replies from clients of three workspaces, alternating between the gateways; every sixth goes
    # to both at the same moment; meanwhile the team posts through both web processes. Every reply answered
    # 250 is in its thread exactly once; every notification reaches the relay exactly once, and each reply
    # is in one email to each team member, each team post in one email to each client of its workspace.
    run = secrets.token_hex(3)
    ports = [g.port for g in cluster.gateways]
    replies: list[Reply] = []
    for i in range(REPLIES):
        slug = cluster.slugs[i % len(cluster.slugs)]
        sender, rcpt = cluster.clients[slug][(i // len(cluster.slugs)) % CLIENTS_PER_WORKSPACE]
        marker, raw = _reply(i, run, sender, rcpt)
        targets = ports if i % TO_BOTH_EVERY == 0 else [ports[i % 2]]
        replies.append(Reply(marker, sender, rcpt, raw, targets))
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        posting = pool.submit(_team_posts, cluster, run)
        asyncio.run(_send_all(replies))
        team_posts = posting.result(timeout=SEND_TIME_LIMIT)
    send_seconds = time.monotonic() - started

    refused = [(r.marker, r.codes) for r in replies if not any(code == 250 for _, code in r.codes)]
    assert not refused, (refused[:10], cluster.logs())
    both = [r for r in replies if len(r.ports) == 2]
    assert all(sorted(p for p, _ in r.codes) == sorted(ports) for r in both)
    assert all(code == 250 for r in both for _, code in r.codes), [r.codes for r in both]
    assert [status for _, _, status in team_posts] == [201] * TEAM_POSTS

    # Posted exactly once, read back through the CLI's JSON contract.
    posted: collections.Counter[str] = collections.Counter()
    for slug in cluster.slugs:
        for m in json.loads(cli(cluster.env, "thread", slug, "--json"))["messages"]:
            posted.update(MARKER_RE.findall(m["text"]))
    assert posted == collections.Counter([r.marker for r in replies] + [mk for mk, _, _ in team_posts])
    # One accepted row per reply; the second copy of each reply sent to both gateways was a duplicate.
    outcomes = dict(query(cluster.url, "SELECT CASE WHEN outcome = 'accepted' THEN outcome "
                                       "ELSE outcome || ':' || reason END, count(*) FROM inbound_email GROUP BY 1"))
    deferred = {k: outcomes.pop(k) for k in list(outcomes) if k.startswith("deferred:")}  # retried, as MTAs do
    assert outcomes == {"accepted": REPLIES, f"dropped:{Duplicate.reason}": len(both)}, outcomes
    assert all(p.alive() for p in cluster.procs), cluster.logs()

    # Every notification sent, each exactly once.
    clients = [email for slug in cluster.slugs for email, _ in cluster.clients[slug]]
    expected_rows = REPLIES * len(TEAM) + TEAM_POSTS * CLIENTS_PER_WORKSPACE
    wait_until(lambda: query(cluster.url, "SELECT count(*) FROM outbox_email WHERE kind = 'notification' "
                                          "AND status <> 'pending'")[0][0] >= expected_rows,
               DRAIN_TIME_LIMIT, "the workers to send every notification")
    statuses = dict(query(cluster.url, "SELECT status, count(*) FROM outbox_email GROUP BY status"))
    assert statuses == {"sent": expected_rows}, statuses
    sent_ids = {mid for (mid,) in query(cluster.url, "SELECT DISTINCT mail_message_id FROM outbox_email")}
    wait_until(lambda: len(cluster.relay.received) >= len(sent_ids), 10, "the relay to hold every email")
    received = cluster.relay.received
    by_message_id = collections.Counter(r.mail["Message-ID"] for r in received)
    assert [mid for mid, n in by_message_id.items() if n > 1] == []
    assert set(by_message_id) == sent_ids
    for member in TEAM:
        mentioned = collections.Counter(mk for r in cluster.relay.to(member)
                                        for mk in set(MARKER_RE.findall(new_part(r.text()))))
        assert mentioned == collections.Counter(r.marker for r in replies), member
    for slug in cluster.slugs:
        for client, _ in cluster.clients[slug]:
            mentioned = collections.Counter(mk for r in cluster.relay.to(client)
                                            for mk in set(MARKER_RE.findall(new_part(r.text()))))
            assert mentioned == collections.Counter(mk for mk, s, _ in team_posts if s == slug), client
    assert {rcpt for r in received for rcpt in r.rcpt_tos} == {*TEAM, *clients}
    sent_by = {w.name: len(re.findall(r"outbox email #\d+ .* sent: ", w.log())) for w in cluster.workers}
    assert sum(sent_by.values()) == len(received), sent_by
    print(f"\n{REPLIES} replies ({len(both)} to both gateways) and {TEAM_POSTS} team posts in {send_seconds:.1f} s; "
          f"{len(received)} notification emails, by worker: {sent_by}; deferred and retried: {deferred}")


def test_live_update_on_web1_sees_a_post_through_web2(cluster: Cluster) -> None:
    # Kim signs in on web process 1 with a one-time link and opens the live-update stream of a workspace;
    # Lee posts through web process 2's JSON API; the event arrives on web 1's stream.
    web1, web2 = cluster.webs
    slug = cli(cluster.env, "workspace", "create", "Live Room", "--slug", "live-room").strip().splitlines()[-1]
    cookie = sign_in_with_link(cli(cluster.env, "login-link", TEAM[0]).strip(), web1.url)
    token = cli(cluster.env, "user", "api-token", TEAM[1]).strip()
    stream = SseStream(web1.port, f"/events/w/{slug}", cookie).open()
    try:
        stream.wait_connected()
        text = f"Posted through web 2 {secrets.token_hex(4)}"
        status, body = request_json(f"{web2.url}/api/workspaces/{slug}/messages", "POST",
                                    {"text": text, "internal": False}, token)
        assert status == 201, body
        event = stream.wait_for(lambda e: e.data.get("message_id") == body["id"], timeout=15)
        assert event.event == "message"
        assert text in event.data["html"]
    finally:
        stream.close()


def _db_connections(url: str) -> int:
    return query(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid()")[0][0]


def _sample_connections(url: str, seconds: float = 2.0) -> list[int]:
    """Connections to the database, sampled every 50 ms for `seconds`."""
    end = time.monotonic() + seconds
    samples = []
    while time.monotonic() < end:
        samples.append(_db_connections(url))
        time.sleep(0.05)
    return samples


def test_idle_live_update_streams_hold_no_database_connection(cluster: Cluster) -> None:
    # With IDLE_STREAMS streams open and waiting on web process 1, the database sees as many connections
    # as with none: a stream takes a connection only for the moment it reads. (The fewest seen over two
    # seconds is compared, so a stream's brief read cannot make this flaky; streams that each held a
    # connection would add IDLE_STREAMS to every sample.)
    web1 = cluster.webs[0]
    slug = "live-room" if query(cluster.url, "SELECT 1 FROM workspace WHERE slug = 'live-room'") else \
        cli(cluster.env, "workspace", "create", "Live Room", "--slug", "live-room").strip().splitlines()[-1]
    cookie = sign_in_with_link(cli(cluster.env, "login-link", TEAM[0]).strip(), web1.url)
    before = _sample_connections(cluster.url)
    streams = [SseStream(web1.port, f"/events/w/{slug}", cookie).open() for _ in range(IDLE_STREAMS)]
    try:
        for s in streams:
            s.wait_connected()
        # Past the first read of each stream, and past the time the reader threads keep their connections
        # after reading (web/live/reads.py): what is left is the streams themselves.
        time.sleep(READER_IDLE_SECONDS + 1.5)
        during = _sample_connections(cluster.url)
        assert all(not s.ended.is_set() for s in streams)
    finally:
        for s in streams:
            s.close()
    print(f"\nconnections to the database: {min(before)}-{max(before)} with no stream, "
          f"{min(during)}-{max(during)} with {IDLE_STREAMS} idle streams")
    assert min(during) <= min(before) + 2, (before, during)


def test_attachment_through_gateway_2_downloads_from_web_2_with_a_session_from_web_1(cluster: Cluster) -> None:
    # The processes share only the database and the configured attachment folder: a reply with a file
    # received by gateway 2 is downloaded through web 2, with the session cookie web 1 issued.
    slug = cluster.slugs[0]
    sender, rcpt = cluster.clients[slug][0]
    payload = secrets.token_bytes(3000)
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, rcpt, "Re: files"
    m["Message-ID"] = f"<files.{secrets.token_hex(6)}@client.test>"
    m.set_content("Here is the file you asked for.")
    m.add_attachment(payload, maintype="application", subtype="octet-stream", filename="brief.bin")
    reply = Reply("files", sender, rcpt, m.as_bytes(), [cluster.gateways[1].port])
    assert asyncio.run(_deliver(cluster.gateways[1].port, reply)) == 250
    posted = json.loads(cli(cluster.env, "thread", slug, "--json"))["messages"][-1]
    assert [a["name"] for a in posted["attachments"]] == ["brief.bin"]
    path = urllib.parse.urlsplit(posted["attachments"][0]["url"]).path
    cookie = sign_in_with_link(cli(cluster.env, "login-link", TEAM[0]).strip(), cluster.webs[0].url)
    request = urllib.request.Request(cluster.webs[1].url + path, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        assert resp.read() == payload
