"""The outgoing-mail worker as a real process: killed with SIGKILL mid-run and restarted, it loses no
notification, and sends one twice only inside the documented window (the email in flight between the
relay's 250 and our commit, resent with the same Message-ID). `workrate worker` sends and stops cleanly
on SIGTERM. Marked slow: they start processes and wait for leases to expire."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from outbound_relay import CapturingRelay, new_part

from config import Settings
from storage.mail_log import PENDING, SENT, OutboxEmail
from storage.posting import post_message

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 1.5

# A worker process as `workrate worker` runs it, with a short lease so the test need not wait minutes.
RUNNER = """
import asyncio, logging, sys
from config import load_settings
from storage import db
from gateway.outbound.worker import OutboxWorker
settings = load_settings()
logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
db.bind(settings)
worker = OutboxWorker(settings, lease_seconds=float(sys.argv[1]), batch_size=int(sys.argv[2]), poll_interval=0.05)
asyncio.run(worker.run(asyncio.Event()))
"""


def environment(settings: Settings, relay: CapturingRelay) -> dict[str, str]:
    env = dict(os.environ)
    env.update(WORKRATE_DATA_DIR=str(settings.data_dir), WORKRATE_DATABASE_URL=settings.effective_database_url,
               WORKRATE_SECRET_KEY=settings.secret_key, WORKRATE_REPLY_DOMAIN=settings.reply_domain,
               WORKRATE_BASE_URL=settings.effective_base_url, WORKRATE_RELAY_URL=relay.url,
               WORKRATE_NOTIFY_DELAY="0",  # at once, for everyone: these tests count emails, not timing
               WORKRATE_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    return env


def start_runner(env: dict[str, str], log: Path, batch_size: int = 20) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(LEASE_SECONDS), str(batch_size)], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_until(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def statuses() -> dict[int, str]:
    return {r.id: r.status for r in OutboxEmail.select(OutboxEmail.id, OutboxEmail.status)}


def test_worker_killed_mid_run_and_restarted_loses_nothing(settings: Settings, make, tmp_path: Path) -> None:
    # SIGKILL twice while it sends to a slow relay, then let a fresh worker finish: every client gets every
    # message; an email arrives twice only if it was in flight at a kill, and then with the same Message-ID.
    ws = make.workspace("Acme Co")
    kim = make.team()
    clients = [make.client(ws, f"client{i}@acme.test") for i in range(24)]
    log = tmp_path / "worker.log"
    texts = ["First message.", "Second message.", "Third message."]
    with CapturingRelay() as relay:
        relay.keeper.data_delay = 0.08
        env = environment(settings, relay)
        post_message(make.thread(ws), kim, texts[0])
        kills = 0
        not_sent_at_kill: set[int] = set()
        for text in texts[1:]:
            proc = start_runner(env, log)
            try:
                before = len(relay.received)
                wait_until(lambda b=before: len(relay.received) >= b + 5, 30, "five more emails")
                post_message(make.thread(ws), kim, text)  # lands while the worker is busy
                wait_until(lambda b=before: len(relay.received) >= b + 8, 30, "eight more emails")
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            kills += 1
            state = statuses()
            assert PENDING in state.values(), "the kill came too late to test anything"
            not_sent_at_kill |= {i for i, s in state.items() if s != SENT}
        proc = start_runner(env, log)
        try:
            wait_until(lambda: PENDING not in statuses().values(), 60, "every row to be sent")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    assert set(statuses().values()) == {SENT}, log.read_text()[-3000:]
    for client in clients:
        got = collections.Counter(t for r in relay.to(client.email) for t in texts if t in new_part(r.text()))
        assert set(got) == set(texts), (client.email, got)
    by_id = collections.Counter(r.mail["Message-ID"] for r in relay.received)
    twice = [mid for mid, n in by_id.items() if n > 1]
    assert len(twice) <= kills  # one email in flight per kill, at most
    assert all(n == 2 for n in by_id.values() if n > 1)
    for mid in twice:  # a duplicate is a resend of rows that were not yet marked sent when the worker died
        rows = OutboxEmail.select().where(OutboxEmail.mail_message_id == mid)
        assert {r.id for r in rows} <= not_sent_at_kill
    # a message reaches each client at most twice, and only through such a resend
    for client in clients:
        got = collections.Counter(t for r in relay.to(client.email) for t in texts if t in new_part(r.text()))
        assert max(got.values()) <= 2


def test_workrate_worker_sends_and_stops_on_sigterm(settings: Settings, make, tmp_path: Path) -> None:
    # `workrate worker` drains the outbox to the relay, and on SIGTERM finishes and exits at once with 0.
    ws = make.workspace("Acme Co")
    make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), make.team(), "Hello from the CLI worker.")
    with CapturingRelay() as relay:
        log = tmp_path / "cli-worker.log"
        proc = subprocess.Popen([str(Path(sys.executable).with_name("workrate")), "worker"], cwd=tmp_path,
                                env=environment(settings, relay), stdout=log.open("ab"), stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: len(relay.received) == 1, 30, "the notification")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert "Hello from the CLI worker." in relay.received[0].text()
    assert statuses() and set(statuses().values()) == {SENT}


def test_two_worker_processes_send_every_email_exactly_once(settings: Settings, make, tmp_path: Path) -> None:
    # Two worker processes draining one database at once (SQLite or PostgreSQL) never send an email twice,
    # and between them send every one.
    ws = make.workspace("Acme Co")
    kim = make.team()
    clients = [make.client(ws, f"client{i}@acme.test") for i in range(20)]
    texts = ["First message.", "Second message.", "Third message."]
    with CapturingRelay() as relay:
        relay.keeper.data_delay = 0.02
        env = environment(settings, relay)
        procs = [start_runner(env, tmp_path / f"worker{i}.log", batch_size=3) for i in range(2)]
        try:
            for text in texts:
                post_message(make.thread(ws), kim, text)
                time.sleep(0.3)
            wait_until(lambda: PENDING not in statuses().values(), 60, "every row to be sent")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
    by_id = collections.Counter(r.mail["Message-ID"] for r in relay.received)
    assert set(by_id.values()) == {1}
    for client in clients:
        got = collections.Counter(t for r in relay.to(client.email) for t in texts if t in new_part(r.text()))
        assert got == dict.fromkeys(texts, 1), client.email
    assert {r.leased_by for r in OutboxEmail.select()} == {None}  # mark_sent clears the lease
    for i in range(2):  # both took part
        assert " sent: " in (tmp_path / f"worker{i}.log").read_text(), f"worker {i} sent nothing"
