"""Outgoing mail end to end: posting writes outbox rows, the worker claims, renders and hands them to a real
aiosmtpd relay on loopback. Who is told, batching, retries, permanent failures, skipped rows, several
workers, leases, the .eml fallback, DKIM, bounces, sign-in links, unsubscribe and delivery status."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import re
import ssl
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import make_msgid
from pathlib import Path

import dkim as dkimpy
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from gateway_support import smtp_send, start_gateway
from outbound_relay import CapturingRelay, Received, new_part, send_due
from procs import free_port

from config import Settings
from gateway.addresses import format_reply_address, parse_bounce_address
from gateway.outbound import transport
from gateway.outbound.login_links import queue_login_link
from gateway.outbound.unsubscribe import make_unsubscribe_token, read_unsubscribe_token
from gateway.outbound.worker import OutboxWorker
from storage import outbox
from storage.directory import set_access, set_following
from storage.mail_log import FAILED, PENDING, SENT, SKIPPED, OutboxEmail
from storage.models import Membership, Message, ReplyToken, User, utcnow
from storage.posting import post_message
from storage.tokens import hash_secret, reply_token_for, set_messages_access


def rows(**where: object) -> list[OutboxEmail]:
    query = OutboxEmail.select().order_by(OutboxEmail.id)
    for field, value in where.items():
        query = query.where(getattr(OutboxEmail, field) == value)
    return list(query)


def recipients(relay: CapturingRelay) -> list[str]:
    return sorted(addr for r in relay.received for addr in r.rcpt_tos)


# --- Who is told ---------------------------------------------------------------------------------------


def test_team_message_notifies_clients_with_access_only(settings: Settings, make, relay) -> None:
    # A client-visible team message emails every client with Messages access, never the author, never a
    # client without access, never another team member.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace("Acme Co")
    kim, lee = make.team("kim@agency.test"), make.team("lee@agency.test")
    make.client(ws, "bob@acme.test"), make.client(ws, "ann@acme.test")
    make.client(ws, "eve@acme.test", access=False)
    other = make.workspace("Other Co")
    make.client(other, "zed@other.test")
    post_message(make.thread(ws), kim, "Homepage revisions are **ready**.")
    assert send_due(settings) == 2
    assert recipients(relay) == ["ann@acme.test", "bob@acme.test"]
    assert all("Homepage revisions are ready." in r.text() for r in relay.received)
    assert lee.email not in recipients(relay)


def test_client_message_notifies_following_team_members(settings: Settings, make, relay) -> None:
    # A client's message emails the team members who follow the workspace (all by default), not one who
    # unfollowed, not the author, not the other clients.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    make.team("kim@agency.test"), make.team("lee@agency.test")
    away = make.team("away@agency.test")
    set_following(away, ws, False)
    bob = make.client(ws, "bob@acme.test")
    make.client(ws, "ann@acme.test")
    post_message(make.thread(ws), bob, "Please use the blue logo.", source="portal")
    send_due(settings)
    assert recipients(relay) == ["kim@agency.test", "lee@agency.test"]


def test_internal_message_notifies_following_team_only(settings: Settings, make, relay) -> None:
    # An internal note emails the following team members, marked internal, and never any client.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace("Acme Co")
    kim, lee = make.team("kim@agency.test"), make.team("lee@agency.test")
    unfollowing = make.team("away@agency.test")
    set_following(unfollowing, ws, False)
    make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), kim, "Budget is tight.", internal=True)
    send_due(settings)
    assert recipients(relay) == ["lee@agency.test"]
    mail = relay.received[0].mail
    assert mail["Subject"].startswith("[Internal] ")
    token_in_mail = re.search(r"reply\+([0-9a-f]+)@", mail["Reply-To"]).group(1)
    token = ReplyToken.get(ReplyToken.token_hash == hash_secret(token_in_mail))
    assert token.internal and token.user_id == lee.id


def test_muted_disabled_and_inactive_people_are_not_emailed(settings: Settings, make, relay) -> None:
    # A person who muted email, whose address was disabled after bounces, or who is deactivated gets nothing.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    kim = make.team("kim@agency.test")
    for email, field in (("muted@acme.test", "email_muted"), ("bounced@acme.test", "email_disabled"),
                         ("gone@acme.test", "active")):
        c = make.client(ws, email)
        setattr(c, field, field != "active")  # active=False, the others True
        c.save()
    make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), kim, "Hello")
    send_due(settings)
    assert recipients(relay) == ["bob@acme.test"]


# --- Batching and order ----------------------------------------------------------------------------------


def test_burst_within_notify_delay_is_one_email(settings: Settings, make, relay) -> None:
    # Five messages within NOTIFY_DELAY reach each person as one email holding all five, oldest first.
    settings = settings.replace(relay_url=relay.url, notify_delay=60)
    ws = make.workspace()
    kim = make.team()
    make.client(ws, "bob@acme.test")
    t0 = utcnow()
    for i in range(5):
        post_message(make.thread(ws), kim, f"Burst message {i}.", notify_delay=settings.notify_delay,
                     now=t0 + dt.timedelta(seconds=i * 5))
    assert send_due(settings, now=t0 + dt.timedelta(seconds=30)) == 0  # nothing due yet
    assert send_due(settings, now=t0 + dt.timedelta(seconds=61)) == 1
    assert len(relay.received) == 1
    text = relay.received[0].text()
    positions = [text.index(f"Burst message {i}.") for i in range(5)]
    assert positions == sorted(positions)
    assert {r.status for r in rows()} == {SENT}
    lead = rows()[0]
    assert [r.batch_id for r in rows()[1:]] == [lead.id] * 4
    assert lead.mail_message_id == relay.received[0].mail["Message-ID"]


def test_relay_down_then_up_delivers_every_email_once_in_order(settings: Settings, make) -> None:
    # While the relay is down nothing is lost: the worker keeps retrying with back-off, and once the relay
    # is up every message reaches each person exactly once, in the order the messages were posted.
    relay = CapturingRelay()  # not started yet: connections are refused
    settings = settings.replace(relay_url=relay.url)
    ws1, ws2 = make.workspace("One"), make.workspace("Two")
    kim = make.team("kim@agency.test")
    bob = make.client(ws1, "bob@one.test")
    ann = make.client(ws2, "ann@two.test")
    posted: list[tuple[str, int, str]] = []  # (recipient, thread, text)
    script = [(kim, ws1, bob), (bob, ws1, kim), (ann, ws2, kim), (kim, ws2, ann), (kim, ws1, bob), (bob, ws1, kim)]
    for n, (author, ws, told) in enumerate(script):
        text = f"Message number {n} here."
        post_message(make.thread(ws), author, text)
        posted.append((told.email, make.thread(ws).id, text))

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = OutboxWorker(settings, poll_interval=0.05, retry_first=0.2, retry_max=0.4)
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(1.5)  # several failed rounds
        assert not relay.received
        await asyncio.to_thread(relay.start)
        for _ in range(200):
            if await asyncio.to_thread(lambda: not rows(status=PENDING)):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
    assert {r.status for r in rows()} == {SENT}
    assert max(r.attempts for r in rows()) >= 2  # it did fail first
    ids = [r.mail["Message-ID"] for r in relay.received]
    assert len(ids) == len(set(ids))
    # Per person: the emails leave in the order of their oldest message, and each thread's messages
    # arrive once each, in order (a later message of a thread may join an older email still waiting).
    number = re.compile(r"Message number (\d+) here\.")
    for person in (bob, kim, ann):
        mails = [[int(n) for n in number.findall(new_part(r.text()))] for r in relay.to(person.email)]
        assert [m[0] for m in mails] == sorted(m[0] for m in mails), person.email
        for thread_id in {t for _, t, _ in posted}:
            expected = [int(number.search(x).group(1)) for to, t, x in posted if to == person.email and t == thread_id]
            got = [n for m in mails for n in m if posted[n][1] == thread_id]
            assert got == expected, (person.email, thread_id)


# --- Failures ------------------------------------------------------------------------------------------


def test_permanent_failure_is_recorded_and_not_retried(settings: Settings, make, relay) -> None:
    # A 5xx from the relay fails the email for good, with the relay's words kept and shown per message.
    settings = settings.replace(relay_url=relay.url)
    relay.keeper.refuse["bob@acme.test"] = "550 5.1.1 <bob@acme.test>: Recipient address rejected"
    ws = make.workspace()
    kim = make.team()
    make.client(ws, "bob@acme.test"), make.client(ws, "ann@acme.test")
    message = post_message(make.thread(ws), kim, "Hello")
    send_due(settings)
    bob_row = rows(to_address="bob@acme.test")[0]
    assert bob_row.status == FAILED and bob_row.attempts == 1
    assert "550 5.1.1" in bob_row.last_error and "Recipient address rejected" in bob_row.last_error
    send_due(settings, now=utcnow() + dt.timedelta(days=1))
    assert relay.keeper.rcpt_attempts.count("bob@acme.test") == 1  # never tried again
    status = outbox.delivery_status([message.id])[message.id]
    assert (status["sent"], status["failed"], status["pending"]) == (1, 1, 0)
    assert status["errors"] == [f"bob@acme.test: {bob_row.last_error}"]


def test_temporary_failure_backs_off_then_gives_up_after_two_days(settings: Settings, make, relay) -> None:
    # A 4xx is retried with a growing delay; after two days of failures the email is failed, not retried.
    settings = settings.replace(relay_url=relay.url)
    relay.keeper.refuse["bob@acme.test"] = "451 4.3.0 Mailbox temporarily unavailable"
    ws = make.workspace()
    make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), make.team(), "Hello")
    t0 = utcnow()
    delays = []
    now = t0
    for _ in range(3):
        send_due(settings, now=now)
        row = rows()[0]
        assert row.status == PENDING and "451 4.3.0" in row.last_error
        delays.append((row.next_attempt_at - now).total_seconds())
        now = row.next_attempt_at
    assert delays[0] == pytest.approx(outbox.RETRY_FIRST_DELAY, abs=1)
    assert delays[1] == pytest.approx(2 * delays[0], abs=1) and delays[2] == pytest.approx(4 * delays[0], abs=1)
    send_due(settings, now=t0 + outbox.GIVE_UP_AFTER + dt.timedelta(seconds=1))
    row = rows()[0]
    assert row.status == FAILED and "gave up after 2 days" in row.last_error and row.attempts == 4
    relay.keeper.refuse.clear()
    send_due(settings, now=t0 + outbox.GIVE_UP_AFTER + dt.timedelta(hours=1))
    assert not relay.received


def test_revoked_access_before_send_is_skipped(settings: Settings, make, relay) -> None:
    # Rendering asks the visibility rule again: a client whose access was revoked after the message was
    # posted but before the email left is not told about it; the row is marked skipped.
    settings = settings.replace(relay_url=relay.url, notify_delay=30)
    ws = make.workspace()
    bob, ann = make.client(ws, "bob@acme.test"), make.client(ws, "ann@acme.test")
    post_message(make.thread(ws), make.team(), "Secret plans", notify_delay=30)
    set_access(bob, ws, False)
    send_due(settings, now=utcnow() + dt.timedelta(seconds=31))
    assert recipients(relay) == ["ann@acme.test"]
    skipped = rows(recipient=bob.id)[0]
    assert skipped.status == SKIPPED and "can no longer see" in skipped.last_error
    assert ann


def test_muted_or_unsubscribed_after_posting_is_skipped(settings: Settings, make, relay) -> None:
    # Muting email, or one-click unsubscribing, after the message was posted still stops the queued email.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    bob, ann = make.client(ws, "bob@acme.test"), make.client(ws, "ann@acme.test")
    make.client(ws, "cy@acme.test")
    post_message(make.thread(ws), make.team(), "Hello")
    User.update(email_muted=True).where(User.id == bob.id).execute()
    assert outbox.apply_unsubscribe(ann.id, make.thread(ws).id)
    send_due(settings)
    assert recipients(relay) == ["cy@acme.test"]
    assert rows(recipient=bob.id)[0].last_error == "recipient muted email"
    assert rows(recipient=ann.id)[0].status == SKIPPED


# --- Several workers, leases ---------------------------------------------------------------------------


def test_two_workers_never_send_the_same_email_twice(settings: Settings, make, relay) -> None:
    # Two workers draining one database at the same time send every email exactly once.
    settings = settings.replace(relay_url=relay.url)
    relay.keeper.data_delay = 0.01
    kim = make.team("kim@agency.test")
    expected = 0
    for w in range(4):
        ws = make.workspace()
        for c in range(5):
            make.client(ws, f"c{c}@ws{w}.test")
        for i in range(3):
            post_message(make.thread(ws), kim, f"Workspace {w} message {i}")
            expected += 5
    async def both() -> None:
        workers = [OutboxWorker(settings, batch_size=3, worker_id=f"w{i}") for i in range(2)]
        try:
            while await asyncio.to_thread(lambda: bool(rows(status=PENDING))):
                await asyncio.gather(*(w.run_once() for w in workers))
        finally:
            for w in workers:
                w.close()

    asyncio.run(both())
    ids = [r.mail["Message-ID"] for r in relay.received]
    assert len(ids) == len(set(ids))
    seen = [(rcpt, t) for r in relay.received for rcpt in r.rcpt_tos
            for t in re.findall(r"Workspace \d message \d", r.text())]
    assert len(seen) == len(set(seen)) == expected
    assert {r.leased_by for r in rows()} == {None}


def test_dead_workers_rows_are_picked_up_after_the_lease(settings: Settings, make, relay) -> None:
    # Rows claimed by a worker that died are not touched by another while the lease holds, and are sent
    # by the other worker once it has expired.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), make.team(), "Hello")
    now = utcnow()
    claimed = outbox.claim_due(now, 10, "dead-worker", lease_seconds=60)
    assert len(claimed) == 1 and rows()[0].leased_by == "dead-worker"
    assert send_due(settings, now=now + dt.timedelta(seconds=30)) == 0
    assert send_due(settings, now=now + dt.timedelta(seconds=61)) == 1
    assert len(relay.received) == 1 and rows()[0].status == SENT


def test_claim_keeps_each_persons_emails_in_order(settings: Settings, make) -> None:
    # A due row waits while an older notification of the same person is backing off in another batch;
    # when the older one is due again, a newer message of its thread joins it and the rest follow in order.
    ws1, ws2 = make.workspace(), make.workspace()
    kim = make.team()
    bob = make.client(ws1, "bob@acme.test")
    Membership.create(user=bob, workspace=ws2, messages_access=True)
    first = post_message(make.thread(ws1), kim, "one")
    now = utcnow()
    [batch] = outbox.claim_due(now, 10, "w")
    outbox.mark_retry(batch, "451 later", now + dt.timedelta(minutes=5), now)
    post_message(make.thread(ws2), kim, "two")
    assert outbox.claim_due(now + dt.timedelta(seconds=1), 10, "w") == []  # waits for "one"
    post_message(make.thread(ws1), kim, "three")
    assert outbox.claim_due(now + dt.timedelta(seconds=2), 10, "w") == []  # "two" still waits, so "three" too
    later = outbox.claim_due(now + dt.timedelta(minutes=5, seconds=1), 10, "w")
    texts = [[OutboxEmail.get_by_id(i).message.text for i in b.row_ids] for b in later]
    assert texts == [["one", "three"], ["two"]]
    assert later[0].lead_id == OutboxEmail.get(OutboxEmail.message == first).id


# --- Without a relay, DKIM ------------------------------------------------------------------------------


def test_without_relay_emails_are_written_as_eml_files(settings: Settings, make, caplog) -> None:
    # With no relay configured each email lands as an .eml file in DATA_DIR/outbox-mail; the log says where.
    ws = make.workspace()
    make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), make.team(), "Written to disk.")
    with caplog.at_level(logging.INFO, logger="gateway.outbound.transport"):
        assert send_due(settings) == 1
    files = list((settings.data_dir / "outbox-mail").glob("*.eml"))
    assert len(files) == 1
    assert str(files[0]) in caplog.text
    mail = message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert mail["To"].addresses[0].addr_spec == "bob@acme.test"
    assert "Written to disk." in mail.get_body(("plain",)).get_content()
    assert rows()[0].status == SENT


def test_dkim_signature_verifies(settings: Settings, make, relay, tmp_path) -> None:
    # With a DKIM key configured, each email carries a signature that dkimpy verifies against the public key.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    settings = settings.replace(relay_url=relay.url, dkim_key_file=str(key_file), dkim_selector="wr2026")
    ws = make.workspace("Café Crème")
    make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), make.team(name="Zoë Ångström"), "Signed **message**.")
    send_due(settings)
    raw = relay.received[0].raw
    assert raw.startswith(b"DKIM-Signature:")
    assert b"d=reply.test" in raw.split(b"\r\n\r\n")[0] and b"s=wr2026" in raw.split(b"\r\n\r\n")[0]

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"wr2026._domainkey.reply.test." else None

    assert dkimpy.verify(raw, dnsfunc=dns)
    assert not dkimpy.verify(raw.replace(b"Signed message.", b"Signed massage."), dnsfunc=dns)


# --- Bounces, sign-in links, unsubscribe, status --------------------------------------------------------


def test_bounce_fails_the_email_and_three_hard_bounces_disable_the_address(settings: Settings, make, relay) -> None:
    # The envelope sender is a per-email bounce address; a report to it fails that email with the reason,
    # and after three consecutive hard bounces the address is no longer emailed.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    kim = make.team()
    bob = make.client(ws, "bob@acme.test")
    tokens = []
    for i in range(3):
        post_message(make.thread(ws), kim, f"Try {i}")
        send_due(settings)
        tokens.append(parse_bounce_address(relay.received[-1].mail_from, settings.reply_domain))
    assert len(set(tokens)) == 3 and all(tokens)
    assert not outbox.record_bounce("0" * 32, hard=True, reason="unknown")
    assert outbox.record_bounce(tokens[0], hard=True, reason="550 5.1.1 user unknown")
    assert outbox.record_bounce(tokens[0], hard=True, reason="550 5.1.1 user unknown")  # the same report again
    row = OutboxEmail.get(OutboxEmail.bounce_token == tokens[0])
    assert row.status == FAILED and "550 5.1.1 user unknown" in row.last_error
    assert User.get_by_id(bob.id).hard_bounces == 1 and not User.get_by_id(bob.id).email_disabled
    outbox.record_bounce(tokens[1], hard=False, reason="mailbox full")
    assert User.get_by_id(bob.id).hard_bounces == 1
    outbox.record_bounce(tokens[2], hard=True, reason="550 no such user")
    assert User.get_by_id(bob.id).hard_bounces == 2
    post_message(make.thread(ws), kim, "Try 3")
    send_due(settings)
    outbox.record_bounce(parse_bounce_address(relay.received[-1].mail_from), hard=True, reason="550 gone")
    assert User.get_by_id(bob.id).email_disabled
    post_message(make.thread(ws), kim, "Not emailed")
    count = len(relay.received)
    send_due(settings)
    assert len(relay.received) == count
    outbox.reenable_email(User.get_by_id(bob.id))
    post_message(make.thread(ws), kim, "Emailed again")
    send_due(settings)
    assert "Emailed again" in relay.received[-1].text()


def test_login_link_is_sent_and_its_secret_scrubbed(settings: Settings, make, relay) -> None:
    # A queued sign-in link goes out like any email, rendered from login_link.*, then its body is cleared.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace("Acme Co")
    bob = make.client(ws, "bob@acme.test", name="Bob Stone")
    url = "http://app.test/login/secret-abc123"
    row = queue_login_link(settings, bob, url, invitation=True, workspace_name="Acme Co")
    assert row.kind == "login_link" and row.status == PENDING
    send_due(settings)
    [got] = relay.received
    assert got.rcpt_tos == ["bob@acme.test"] and url in got.text() and url in got.html()
    assert got.mail["Subject"] == "You are invited to Acme Co on WorkRate"
    assert got.mail["Auto-Submitted"] == "auto-generated"
    row = OutboxEmail.get_by_id(row.id)
    assert row.status == SENT and url not in row.body_text and url not in row.body_html


def test_unsubscribe_token_round_trip_and_apply(settings: Settings, make) -> None:
    # The List-Unsubscribe token names (user, thread) and cannot be forged; applying it stops the emails:
    # a client's membership stops following, a team member gets a membership row that does not follow.
    ws = make.workspace()
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    thread = make.thread(ws)
    token = make_unsubscribe_token(settings, bob.id, thread.id)
    assert read_unsubscribe_token(settings, token) == (bob.id, thread.id)
    assert read_unsubscribe_token(settings.replace(secret_key="another-secret"), token) is None
    assert read_unsubscribe_token(settings, token[:-2] + "xx") is None
    assert read_unsubscribe_token(settings, "") is None
    assert outbox.apply_unsubscribe(bob.id, thread.id) and outbox.apply_unsubscribe(kim.id, thread.id)
    assert not Membership.get(user=bob, workspace=ws).following
    assert not Membership.get(user=kim, workspace=ws).following
    post_message(thread, kim, "to nobody")
    post_message(thread, bob, "to nobody either", source="portal")
    assert OutboxEmail.select().count() == 0
    assert not outbox.apply_unsubscribe(999999, thread.id)


def test_delivery_status_counts_per_message(settings: Settings, make, relay) -> None:
    # The team sees, per message, how many emails were sent, are pending, failed (with the relay's words).
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    kim = make.team()
    for e in ("a@acme.test", "b@acme.test", "c@acme.test"):
        make.client(ws, e)
    relay.keeper.refuse["c@acme.test"] = "554 5.7.1 Policy rejection"
    m1 = post_message(make.thread(ws), kim, "one")
    send_due(settings)
    m2 = post_message(make.thread(ws), kim, "two", notify_delay=600)
    status = outbox.delivery_status([m1.id, m2.id])
    assert status[m1.id] == {"sent": 2, "pending": 0, "failed": 1, "skipped": 0, "queued": 0, "held": [],
                             "errors": ["c@acme.test: 554 5.7.1 Policy rejection"]}
    assert status[m2.id]["pending"] == status[m2.id]["queued"] == 3 and status[m2.id]["sent"] == 0
    assert outbox.delivery_status([]) == {}


def test_run_stops_promptly_and_releases_unsent_rows(settings: Settings, make, relay) -> None:
    # After stop is set, run() finishes the email in flight and returns; what it had claimed but not sent
    # is released at once for another worker.
    settings = settings.replace(relay_url=relay.url)
    relay.keeper.data_delay = 0.3
    ws = make.workspace()
    for i in range(6):
        make.client(ws, f"c{i}@acme.test")
    post_message(make.thread(ws), make.team(), "Hello all")

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(OutboxWorker(settings).run(stop))
        while not relay.received:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(scenario())
    # Promptly: it did not go on through the other rows (each takes the relay 0.3 s) before returning.
    statuses = [r.status for r in rows()]
    assert statuses.count(SENT) == len(relay.received) < 6
    assert {r.leased_by for r in rows(status=PENDING)} == {None}


def test_reply_to_is_the_recipients_own_address(settings: Settings, make, relay) -> None:
    # Each recipient's Reply-To is their own token for this thread; a client's is never internal.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    bob, ann = make.client(ws, "bob@acme.test"), make.client(ws, "ann@acme.test")
    post_message(make.thread(ws), make.team(), "Hello")
    send_due(settings)
    for person in (bob, ann):
        [got] = relay.to(person.email)
        token = reply_token_for(person, make.thread(ws), secret_key=settings.secret_key)
        assert got.mail["Reply-To"] == format_reply_address(token.token, settings.reply_domain)
        assert ReplyToken.select().where(ReplyToken.user == person).count() == 1
        assert not token.internal


def test_set_messages_access_regrant_is_emailed_again(settings: Settings, make, relay) -> None:
    # A client whose access was revoked and granted again is emailed about new messages again.
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace()
    bob = make.client(ws, "bob@acme.test")
    set_messages_access(bob, ws.id, False)
    set_messages_access(bob, ws.id, True)
    post_message(make.thread(ws), make.team(), "Welcome back")
    send_due(settings)
    assert "Welcome back" in relay.to("bob@acme.test")[0].text()


# --- Transport: TLS, STARTTLS, login ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def server_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*map(str, tls_files))
    return ctx


def client_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


def simple_mail() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "notifications@reply.test", "bob@acme.test", "Hi"
    mail.set_content("Hello over the wire.")
    return mail


def send(settings: Settings, url: str, tls_files: tuple[Path, Path] | None = None) -> str:
    return asyncio.run(transport.send(simple_mail(), "bounce+" + "a" * 32 + "@reply.test", ["bob@acme.test"],
                                      settings.replace(relay_url=url),
                                      tls_context=client_context(tls_files) if tls_files else None))


def accept_kim(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"kim", b"s3cr:t")
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def test_implicit_tls_relay_with_login(settings: Settings, tls_files) -> None:
    # smtps:// speaks TLS from the first byte and logs in with the URL's user and (percent-encoded) password.
    # aiosmtpd does not notice implicit TLS when deciding to offer AUTH, hence auth_require_tls=False
    with CapturingRelay(ssl_context=server_context(tls_files), authenticator=accept_kim,
                        auth_require_tls=False) as relay:
        send(settings, f"smtps://kim:s3cr%3At@127.0.0.1:{relay.port}", tls_files)
        [got] = relay.received
        assert got.tls and got.auth_data.login == b"kim" and "Hello over the wire." in got.text()
        with pytest.raises(transport.TemporaryFailure, match="535"):  # a wrong password is our setup: retry
            send(settings, f"smtps://kim:wrong@127.0.0.1:{relay.port}", tls_files)


def test_starttls_used_when_offered_and_required_when_asked(settings: Settings, tls_files) -> None:
    # smtp:// upgrades with STARTTLS when the relay offers it; smtp+starttls:// refuses a relay without it
    # (a temporary failure: the email waits until the setup is fixed).
    with CapturingRelay(tls_context=server_context(tls_files)) as relay:
        send(settings, relay.url, tls_files)
        send(settings, f"smtp+starttls://127.0.0.1:{relay.port}", tls_files)
        assert [r.tls for r in relay.received] == [True, True]
    with CapturingRelay() as plain:
        send(settings, plain.url)
        assert [r.tls for r in plain.received] == [False]
        with pytest.raises(transport.TemporaryFailure):
            send(settings, f"smtp+starttls://127.0.0.1:{plain.port}")
        assert len(plain.received) == 1


def test_relay_answers_are_classified(settings: Settings, relay) -> None:
    # 5xx is permanent with the relay's words; 4xx and a refused connection are temporary.
    relay.keeper.refuse["bob@acme.test"] = "550 5.1.1 No such user here"
    with pytest.raises(transport.PermanentFailure) as permanent:
        send(settings, relay.url)
    assert permanent.value.code == 550 and permanent.value.text == "550 5.1.1 No such user here"
    relay.keeper.refuse["bob@acme.test"] = "452 4.2.2 Mailbox full"
    with pytest.raises(transport.TemporaryFailure) as temporary:
        send(settings, relay.url)
    assert temporary.value.code == 452
    with pytest.raises(transport.TemporaryFailure):
        send(settings, f"smtp://127.0.0.1:{free_port()}")


# --- The whole loop through the real gateway -------------------------------------------------------------


def reply_to(received: Received, sender: str, text: str) -> tuple[str, bytes]:
    """A reply as a mail client writes it: new text on top, the notification quoted below."""
    note = received.mail
    quoted = "\n".join("> " + line for line in received.text().splitlines())
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = sender, note["Reply-To"], "Re: " + note["Subject"]
    reply["Message-ID"] = make_msgid(domain="sender.test")
    reply["In-Reply-To"] = reply["References"] = note["Message-ID"]
    reply.set_content(f"{text}\n\nOn Mon, {note['From']} wrote:\n{quoted}\n")
    return note["Reply-To"], reply.as_bytes(policy=default_policy)


def test_round_trip_through_gateway_and_relay(settings: Settings, make, relay) -> None:
    # A team message is emailed to the client; the client's reply to it (quote and all) is posted and emailed
    # to the team; the team's emailed answer reaches the client. Our own notification looping back, and a
    # bounce report to the envelope sender, are recorded and never posted.
    settings = settings.replace(relay_url=relay.url)
    gateway = start_gateway(settings)
    try:
        ws = make.workspace("Acme Co")
        kim = make.team("kim@agency.test", name="Kim Lee")
        bob = make.client(ws, "bob@acme.test", name="Bob Stone")
        thread = make.thread(ws)
        post_message(thread, kim, "Homepage revisions are **ready** for review.")
        send_due(settings)
        [to_bob] = relay.to(bob.email)

        address, raw = reply_to(to_bob, "Bob Stone <bob@acme.test>", "Looks great, approved!")
        assert smtp_send(gateway, bob.email, address, raw) == 250
        posted = Message.select().where(Message.author == bob.id).get()
        assert posted.text == "Looks great, approved!" and not posted.is_internal
        send_due(settings)
        [to_kim] = relay.to(kim.email)
        assert "Looks great, approved!" in to_kim.text() and to_kim.mail["Reply-To"] != to_bob.mail["Reply-To"]

        address, raw = reply_to(to_kim, "Kim Lee <kim@agency.test>", "Great, I'll ship it on Friday.")
        assert smtp_send(gateway, kim.email, address, raw) == 250
        send_due(settings)
        latest = relay.to(bob.email)[-1]
        assert "ship it on Friday" in latest.text()
        assert latest.mail["In-Reply-To"] == to_bob.mail["Message-ID"]

        count = Message.select().count()
        assert smtp_send(gateway, bob.email, to_bob.mail["Reply-To"], to_bob.raw) == 250  # our own mail, looped
        raw_bounce = (f"From: MAILER-DAEMON@acme.test\r\nTo: {to_bob.mail_from}\r\n"
                      "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
                      'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b1"'
                      "\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
                      "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.test\r\n\r\n"
                      "Final-Recipient: rfc822; bob@acme.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                      "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--b1--\r\n").encode()
        assert smtp_send(gateway, "", to_bob.mail_from, raw_bounce) == 250
        assert Message.select().count() == count
        bounced = OutboxEmail.get(OutboxEmail.bounce_token == parse_bounce_address(to_bob.mail_from))
        assert bounced.status == FAILED and "5.1.1" in bounced.last_error
        assert User.get_by_id(bob.id).hard_bounces == 1
    finally:
        gateway.stop()


def test_a_long_backlog_is_split_into_emails_in_order(settings: Settings, make, relay) -> None:
    # More pending messages than fit one email go out as several emails, oldest first, each message once.
    settings = settings.replace(relay_url=relay.url, notify_delay=60)
    ws = make.workspace()
    kim = make.team()
    make.client(ws, "bob@acme.test")
    t0 = utcnow()
    total = outbox.MAX_MESSAGES_PER_EMAIL + 5
    for i in range(total):
        post_message(make.thread(ws), kim, f"Backlog item {i}.", notify_delay=60, now=t0)
    send_due(settings, now=t0 + dt.timedelta(seconds=61))
    numbers = [[int(n) for n in re.findall(r"Backlog item (\d+)\.", new_part(r.text()))] for r in relay.received]
    assert [len(n) for n in numbers] == [outbox.MAX_MESSAGES_PER_EMAIL, 5]
    assert [n for batch in numbers for n in batch] == list(range(total))
