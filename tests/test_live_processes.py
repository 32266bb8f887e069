"""Live updates across real processes, on SQLite and on PostgreSQL: two `workrate web` processes on one
database; a post made through one (or by the CLI, or by email through `workrate smtp`'s group commit)
arrives on streams of both, and a person cut off by the CLI (a third process: access revoked, deactivated,
signed out everywhere) has their open streams on both ended. On SQLite the poll of the event log is set to
ten minutes, so only the wake-up signal between processes can deliver within the test's deadlines; on
PostgreSQL it is NOTIFY."""
from __future__ import annotations

import contextlib
import secrets
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from procs import (
    Proc,
    base_environment,
    cli,
    free_port,
    fresh_postgres_database,
    postgres_unavailable_reason,
    start,
    stop_all,
)
from sse_client import SseStream, request_json, sign_in_with_link

pytestmark = pytest.mark.slow

DEADLINE = 60  # seconds; with the poll at ten minutes, only a wake-up signal gets there in time
TEAM = ("kim@agency.test", "lee@agency.test", "sam@agency.test")


@dataclass
class Pair:
    kind: str
    env: dict[str, str]
    webs: list[Proc]
    gateway: Proc
    slug: str
    token: str  # Kim's API token

    def stream(self, web: Proc, email: str) -> SseStream:
        cookie = sign_in_with_link(cli(self.env, "login-link", email).strip(), web.url)
        stream = SseStream(web.port, f"/events/w/{self.slug}", cookie).open()
        stream.wait_connected(DEADLINE)
        return stream


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    kind = request.param
    if kind == "postgresql":
        reason = postgres_unavailable_reason()
        if reason:
            pytest.skip(reason)
    with fresh_postgres_database("wr_live_pair") if kind == "postgresql" else contextlib.nullcontext("") as pg_url:
        # SQLite: one database file for all; each process has a data folder of its own, so the wake-up
        # sockets are found through the database file, not a shared data folder.
        url = pg_url or f"sqlite:///{tmp_path / 'shared' / 'workrate.db'}"
        (tmp_path / "shared").mkdir(mode=0o700)
        env = base_environment(WORKRATE_DATABASE_URL=url, WORKRATE_DATA_DIR=str(tmp_path / "cli"),
                               WORKRATE_SECRET_KEY="live-pair-" + secrets.token_hex(16),
                               WORKRATE_REPLY_DOMAIN="reply.live.test", WORKRATE_LOG_LEVEL="INFO",
                               WORKRATE_LIVE_POLL_SECONDS="600")
        ports = [free_port(), free_port()]
        env["WORKRATE_BASE_URL"] = f"http://127.0.0.1:{ports[0]}"
        webs = [start("web", env, tmp_path / "logs", f"web{i + 1}", port=port,
                      WORKRATE_DATA_DIR=str(tmp_path / f"web{i + 1}")) for i, port in enumerate(ports)]
        gateway = start("smtp", env, tmp_path / "logs", "smtp", port=free_port(),
                        WORKRATE_DATA_DIR=str(tmp_path / "smtp"))
        try:
            for proc in (*webs, gateway):
                proc.wait_listening(90)
            for email in TEAM:
                cli(env, "user", "add", email, "--name", email.split("@")[0].title(), "--team")
            slug = cli(env, "workspace", "create", "Live Room", "--slug", "live-room").strip().splitlines()[-1]
            yield Pair(kind, env, webs, gateway, slug, cli(env, "user", "api-token", TEAM[0]).strip())
        finally:
            stop_all([*webs, gateway])


def test_a_post_through_one_web_process_arrives_on_the_others_streams(pair: Pair) -> None:
    web1, web2 = pair.webs
    on1 = pair.stream(web1, TEAM[1])
    on2 = pair.stream(web2, TEAM[2])
    try:
        for web, others in ((web2, [on1, on2]), (web1, [on1, on2])):
            text = f"Posted through {web.name} {secrets.token_hex(4)}"
            status, body = request_json(f"{web.url}/api/workspaces/{pair.slug}/messages", "POST",
                                        {"text": text}, pair.token)
            assert status == 201, body
            for stream in others:
                event = stream.wait_for(lambda e, mid=body["id"]: e.data.get("message_id") == mid, DEADLINE)
                assert text in event.data["html"]
        cli(pair.env, "post", pair.slug, "--as", TEAM[0], "From the command line")
        for stream in (on1, on2):
            event = stream.wait_for(lambda e: "From the command line" in e.data.get("html", ""), DEADLINE)
            assert event.event == "message"
    finally:
        on1.close()
        on2.close()


def test_cutting_a_person_off_from_the_cli_ends_their_streams_in_every_web_process(pair: Pair) -> None:
    web1, web2 = pair.webs
    lee = [pair.stream(web1, TEAM[1]), pair.stream(web2, TEAM[1])]
    sam = [pair.stream(web1, TEAM[2]), pair.stream(web2, TEAM[2])]
    kim = pair.stream(web1, TEAM[0])
    cli(pair.env, "user", "add", "ann@client.test", "--name", "Ann Client", "--client", pair.slug,
        "--messages-access")
    ann = [pair.stream(web1, "ann@client.test"), pair.stream(web2, "ann@client.test")]
    try:
        cli(pair.env, "user", "revoke", "ann@client.test", pair.slug)  # the client's Messages access
        for stream in ann:
            assert stream.ended.wait(DEADLINE), "a revoked client's stream stayed open"
            assert stream.seen[-1].event == "closed"

        cli(pair.env, "user", "deactivate", TEAM[1])
        for stream in lee:
            assert stream.ended.wait(DEADLINE), "a deactivated person's stream stayed open"
            assert [e.event for e in stream.seen][-1] == "closed"
        assert not any(s.ended.is_set() for s in sam) and not kim.ended.is_set()

        cli(pair.env, "user", "sign-out", TEAM[2])  # still active, still a team member: signed out everywhere
        for stream in sam:
            assert stream.ended.wait(DEADLINE), "a signed-out person's stream stayed open"
            assert stream.seen[-1].event == "closed"
        assert not kim.ended.is_set()
    finally:
        for stream in (*ann, *lee, *sam, kim):
            stream.close()


def test_a_reply_by_email_through_the_gateway_arrives_on_the_web_processes_streams(pair: Pair) -> None:
    client = "bob@client.test"
    cli(pair.env, "user", "add", client, "--name", "Bob Stone", "--client", pair.slug, "--messages-access")
    address = cli(pair.env, "reply-address", pair.slug, "--as", client).strip()
    streams = [pair.stream(web, TEAM[1]) for web in pair.webs]
    try:
        mail = EmailMessage()
        mail["From"] = f"Bob Stone <{client}>"
        mail["To"] = address
        mail["Subject"] = "Re: Live Room"
        mail["Message-ID"] = f"<live-{secrets.token_hex(6)}@client.test>"
        mail.set_content("The new logo works for us.\n")
        with smtplib.SMTP("127.0.0.1", pair.gateway.port, timeout=DEADLINE) as smtp:
            smtp.send_message(mail)
        for stream in streams:
            event = stream.wait_for(lambda e: "The new logo works for us." in e.data.get("html", ""), DEADLINE)
            assert event.event == "message"
    finally:
        for stream in streams:
            stream.close()
