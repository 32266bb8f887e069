"""Issue 16, held replies: mail that cannot be shown to come from its sender is held (stored, answered 250,
not posted) until the person it would be posted as confirms by the link we email them; and the loop breaker
holds a sender's replies that come too fast into one thread."""
from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

from gateway_support import People, eml, inbound_rows, outcome_line, posts, reply_line, send, start_gateway
from outbound_relay import CapturingRelay
from web_support import csrf_token, sign_in

from gateway.errors import Accepted, HeldAsLoop, HeldForConfirmation
from gateway.outbound.confirm_mail import CONFIRM_POST
from gateway.outbound.worker import OutboxWorker
from storage.files import FileStore
from storage.held import CONFIRM, HeldPost, files_of, purge_expired_held
from storage.mail_log import NOTIFICATION, OutboxEmail
from storage.models import Attachment, utcnow
from storage.posting import post_message
from storage.retention import remove_if_unreferenced

_LINK = re.compile(r"http://app\.test/confirm/([A-Za-z0-9_-]{40,})")


def _forged_reply_at(people: People, sender: str = "kim@agency.test", name: str = "plain_reply.eml") -> bytes:
    """A reply to reply@ naming the notification Kim got of Bob's message: anyone who saw a reply's headers
    can write it."""
    message = post_message(people.thread, people.bob, "Is the draft ready?")
    mid = f"<wr.{message.id}.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=mid).where(OutboxEmail.message == message.id).execute()
    return eml(name, to="reply@reply.test", sender=sender).replace(
        b"Subject:", f"In-Reply-To: {mid}\r\nSubject:".encode(), 1)


def _confirm_secret(to: str) -> str:
    row = OutboxEmail.select().where((OutboxEmail.kind == CONFIRM_POST) & (OutboxEmail.to_address == to)).get()
    match = _LINK.search(row.body_text)
    assert match and match.group(0) in row.body_html
    return match.group(1)


def test_reply_at_is_held_until_the_named_person_confirms_then_posted_once_with_its_files(
        gateway: Any, people: People, app: Any, settings: Any) -> None:
    # Before: refused (or, with SENDER_CHECKS off, posted on the Message-ID alone). Now held, and the one
    # who would be named as author decides.
    raw = _forged_reply_at(people, name="with_attachment.eml")
    code, text = send(gateway.port, raw, "reply@reply.test", sender="mallory@evil.test")
    assert reply_line(code, text) == outcome_line(HeldForConfirmation())
    [held] = HeldPost.select()  # stored before the 250
    assert (held.kind, held.author_id, held.posted_at) == (CONFIRM, people.kim.id, None)
    assert [m.text for m in posts(people.thread)] == ["Is the draft ready?"]
    assert inbound_rows()[-1].reason == "held_confirm"
    admin = sign_in(app.test_client(), people.kim)  # the team sees it in the mail log
    assert HeldForConfirmation.text in admin.get("/mail").get_data(as_text=True).replace("&#39;", "'")
    files = files_of(held)
    assert files and FileStore(settings.effective_files_dir).exists(files[0].storage_key)
    secret = _confirm_secret("kim@agency.test")
    assert secret not in held.token_hash and len(held.token_hash) == 64  # only the hash is kept

    client = app.test_client()  # not signed in: the link itself proves control of Kim's mailbox
    page = client.get(f"/confirm/{secret}")
    assert page.status_code == 200 and "Post your reply?" in page.get_data(as_text=True)
    assert len(posts(people.thread)) == 1  # a mail scanner opening the link posts nothing
    assert client.post(f"/confirm/{secret}").status_code == 400  # no CSRF token: refused
    token = csrf_token(client)
    done = client.post(f"/confirm/{secret}", data={"csrf_token": token})
    assert done.status_code == 200 and "Your reply is posted" in done.get_data(as_text=True)
    message = posts(people.thread)[-1]
    assert (message.author_id, message.source, message.is_internal) == (people.kim.id, "email", False)
    assert [a.name for a in Attachment.select().where(Attachment.message == message.id)] == [f.name for f in files]
    assert OutboxEmail.select().where((OutboxEmail.message == message.id) & (OutboxEmail.kind == NOTIFICATION)
                                      ).exists()  # Bob is told, as for any post
    row = inbound_rows()[-1]
    assert (row.outcome, row.reason, row.message_id) == ("accepted", "confirmed", message.id)  # keeps its raw mail
    again = client.post(f"/confirm/{secret}", data={"csrf_token": token})
    assert again.status_code == 410 and len(posts(people.thread)) == 2
    assert client.get(f"/confirm/{secret}").status_code == 410
    assert client.get("/confirm/" + "x" * 43).status_code == 410  # a guessed secret


def test_a_team_members_address_from_another_envelope_is_held_and_the_retry_sends_no_second_email(
        gateway: Any, people: People) -> None:
    address = people.address(people.kim, internal=True)
    raw = eml("plain_reply.eml", to=address, sender="kim@agency.test")
    for _ in range(2):  # the sender's MTA retrying after a lost 250
        code, text = send(gateway.port, raw, address, sender="mallory@evil.test")
        assert reply_line(code, text) == outcome_line(HeldForConfirmation())
    assert posts(people.thread) == []
    assert HeldPost.select().count() == 1
    assert OutboxEmail.select().where(OutboxEmail.kind == CONFIRM_POST).count() == 1
    # Kim's own envelope: posted at once, as before.
    code, text = send(gateway.port, raw.replace(b"@client.test>", b"@client.test9>"), address,
                      sender="kim@agency.test")
    assert reply_line(code, text) == outcome_line(Accepted()) and posts(people.thread)[-1].is_internal


def test_held_replies_expire_with_their_files(gateway: Any, people: People, app: Any, settings: Any) -> None:
    code, _ = send(gateway.port, _forged_reply_at(people, name="with_attachment.eml"), "reply@reply.test",
                   sender="kim@agency.test")
    assert code == 250
    secret = _confirm_secret("kim@agency.test")
    [held] = HeldPost.select()
    key = files_of(held)[0].storage_key
    store = FileStore(settings.effective_files_dir)
    # A refused upload of the same bytes deletes its files "unless something else uses them": the held one does.
    assert not remove_if_unreferenced(store, key) and store.exists(key)
    later = utcnow() + dt.timedelta(hours=settings.held_post_hours, minutes=1)
    assert purge_expired_held(settings.effective_files_dir, utcnow()) == 0
    assert purge_expired_held(settings.effective_files_dir, later) == 1
    assert HeldPost.select().count() == 0 and not store.exists(key)
    assert app.test_client().get(f"/confirm/{secret}").status_code == 410
    assert len(posts(people.thread)) == 1


def test_the_loop_breaker_holds_a_sender_posting_into_one_thread_again_and_again(
        settings: Any, people: People) -> None:
    # Before: an auto-responder answering every notification posted for ever, each post notifying again.
    controller = start_gateway(settings.replace(loop_posts=3, loop_minutes=10))
    try:
        address = people.bob_address
        answers = []
        for n in range(6):
            raw = eml("plain_reply.eml", to=address).replace(b"Looks great, approved!", f"Loop {n}".encode())
            code, text = send(controller.port, raw, address)
            answers.append(reply_line(code, text))
        assert answers[:3] == [outcome_line(Accepted())] * 3
        assert answers[3:] == [outcome_line(HeldAsLoop())] * 3
        assert [m.text for m in posts(people.thread)] == ["Loop 0", "Loop 1", "Loop 2"]
        notified = OutboxEmail.select().where(OutboxEmail.kind == NOTIFICATION).count()
        assert notified == 3 * OutboxEmail.select(OutboxEmail.message).where(
            OutboxEmail.message == posts(people.thread)[0].id).count()  # none for the held ones
        assert [r.reason for r in inbound_rows()][3:] == ["held_loop"] * 3  # the mark the team sees
        assert not OutboxEmail.select().where(OutboxEmail.kind == CONFIRM_POST).exists()  # nothing to feed a loop
    finally:
        controller.stop()


def test_the_confirmation_email_is_sent_by_the_worker_and_carries_no_reply_address(
        gateway: Any, people: People, settings: Any) -> None:
    code, _ = send(gateway.port, _forged_reply_at(people), "reply@reply.test", sender="kim@agency.test")
    assert code == 250
    secret = _confirm_secret("kim@agency.test")
    with CapturingRelay() as relay:
        worker = OutboxWorker(settings.replace(relay_url=relay.url))
        try:
            asyncio.run(worker.run_once())
        finally:
            worker.close()
        got = [r for r in relay.received if "kim@agency.test" in r.rcpt_tos
               and "Did you write this reply" in str(r.mail["Subject"])]
    [mail] = got
    assert secret in mail.text() and secret in mail.html() and "Looks great, approved!" in mail.text()
    assert "reply+" not in str(mail.mail.get("Reply-To", "")) and "reply+" not in str(mail.mail["From"])
