"""Held replies, loose ends of issue 16: the confirmation email's .eml file (no relay) goes like a sign-in
link's; admins post loop-held replies and discard held ones from the mail log (audited there); held files
count against the storage quotas; a reply@ reply held for confirmation shows in its workspace's mail log."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from gateway_support import People, eml, inbound_rows, outcome_line, posts, reply_line, send, start_gateway
from web_support import csrf_token, sign_in

from gateway.errors import Accepted, HeldAsLoop, HeldForConfirmation
from gateway.inbound.strangers import STRANGER_RAW_MAX
from gateway.outbound.worker import OutboxWorker
from storage.directory import create_workspace, thread_of
from storage.files import FileStore
from storage.held import CONFIRM, LOOP, HeldPost, files_of, pending_for
from storage.link_mail import EML_FOLDER, purge_spent_link_mail
from storage.mail_log import CONFIRM_POST, OutboxEmail, read_raw_mail
from storage.models import Attachment, User, utcnow
from storage.posting import post_message
from storage.quotas import MB, bytes_of_person, bytes_of_workspace

_LINK = re.compile(r"/confirm/([A-Za-z0-9_-]{40,})")
_NONCE = re.compile(r'name="form_nonce" value="([^"]+)"')


def _reply_at(people: People, text: str = "Is the draft ready?", attachment: bytes | None = None) -> bytes:
    """A reply to reply@ naming the notification Kim got of Bob's message, From Kim: whoever saw its headers
    can write it. With `attachment`, it carries that file."""
    message = post_message(people.thread, people.bob, text)
    mid = f"<wr.{message.id}.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=mid).where(OutboxEmail.message == message.id).execute()
    raw = eml("plain_reply.eml" if attachment is None else "with_attachment.eml", to="reply@reply.test",
              sender="kim@agency.test")
    if attachment is not None:
        encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
        start = raw.index(b"base64\r\n\r\n") + len(b"base64\r\n\r\n")
        raw = raw[:start] + encoded + raw[raw.index(b"\r\n--mixed-1", start):]
    return raw.replace(b"Subject:", f"In-Reply-To: {mid}\r\nSubject:".encode(), 1)


def _confirm_files(settings: Any) -> list[Path]:
    return sorted((Path(settings.data_dir) / EML_FOLDER).glob("confirm-*.eml"))


def _run_worker(settings: Any, now: dt.datetime | None = None) -> None:
    worker = OutboxWorker(settings)
    try:
        asyncio.run(worker.run_once(now))
    finally:
        worker.close()


def _action(client: Any, page_url: str, held_id: int, action: str, **extra: str) -> Any:
    """Presses the held reply's button on the page, as a browser would: the form's nonce, CSRF token and back."""
    page = client.get(page_url).get_data(as_text=True)
    form = page[page.index(f'action="/mail/held/{held_id}/{action}"'):]
    encoded = extra.pop("encoded", "")
    data = {"csrf_token": csrf_token(client), "form_nonce": _NONCE.search(form).group(1),
            "back": re.search(r'name="back" value="([^"]*)"', form).group(1).replace("&amp;", "&"), **extra}
    if encoded:  # as an urlencoded body, which keeps a bare line break as it is
        return client.post(f"/mail/held/{held_id}/{action}", data=urllib.parse.urlencode(data),
                           content_type="application/x-www-form-urlencoded")
    return client.post(f"/mail/held/{held_id}/{action}", data=data)


def test_the_confirmation_emails_file_goes_once_confirmed_or_expired(
        gateway: Any, people: People, app: Any, settings: Any) -> None:
    # Before: without a relay, the "confirm it was you" email (its link posts as Kim) stayed in outbox-mail
    # for ever, and its outbox row kept the link after sending.
    assert send(gateway.port, _reply_at(people), "reply@reply.test", sender="mallory@evil.test")[0] == 250
    _run_worker(settings)
    [path] = _confirm_files(settings)
    assert os.stat(path).st_mode & 0o777 == 0o600
    secret = _LINK.search(path.read_text()).group(1)
    row = OutboxEmail.get(OutboxEmail.kind == CONFIRM_POST)
    assert row.status == "sent" and secret not in row.body_text + row.body_html  # the row lost its link
    assert purge_spent_link_mail(settings.data_dir) == 0  # still live: kept
    client = app.test_client()
    done = client.post(f"/confirm/{secret}", data={"csrf_token": csrf_token(client)})
    assert done.status_code == 200 and _confirm_files(settings) == []  # used: gone at once

    assert send(gateway.port, _reply_at(people, "Second"), "reply@reply.test", sender="mallory@evil.test")[0] == 250
    _run_worker(settings)
    assert len(_confirm_files(settings)) == 1
    later = utcnow() + dt.timedelta(hours=settings.held_post_hours, minutes=1)
    _run_worker(settings, later)  # the worker's housekeeping, once the link has expired
    assert _confirm_files(settings) == []
    # The same cleanup removes a file whose link never existed, and keeps other emails' files.
    folder = Path(settings.data_dir) / EML_FOLDER
    (folder / f"confirm-{'0' * 64}.eml").write_text("x")
    (folder / "20260101T000000Z-note.eml").write_text("x")
    assert purge_spent_link_mail(settings.data_dir) == 1 and (folder / "20260101T000000Z-note.eml").exists()


def test_an_admin_posts_a_loop_held_reply_as_its_sender_with_its_files_and_audience(
        settings: Any, people: People, app: Any) -> None:
    # Before: a reply held by the loop breaker could only expire, whatever the team saw in it.
    controller = start_gateway(settings.replace(loop_posts=1, loop_minutes=10))
    try:
        address = people.bob_address
        for n in range(2):
            raw = eml("with_attachment.eml", to=address).replace(b"Logo attached", f"Logo {n}".encode())
            code, text = send(controller.port, raw, address)
            assert reply_line(code, text) == outcome_line(HeldAsLoop() if n else Accepted())
        internal = people.address(people.kim, internal=True)
        for n in range(2):
            raw = eml("plain_reply.eml", to=internal, sender="kim@agency.test").replace(
                b"Looks great, approved!", f"Note {n}".encode())
            assert send(controller.port, raw, internal, sender="kim@agency.test")[0] == 250
    finally:
        controller.stop()
    [bobs, kims] = HeldPost.select().order_by(HeldPost.id)
    assert (bobs.kind, kims.kind) == (LOOP, LOOP) and len(posts(people.thread)) == 2

    admin = sign_in(app.test_client(), people.kim)
    # The team is told beside the composer (a member too, who is pointed to an admin); the client never is.
    slug = people.workspace.slug
    thread_page = admin.get(f"/w/{slug}").get_data(as_text=True)
    assert 'id="loop-note"' in thread_page and "1 reply by email from bob@acme.test was held" in thread_page
    assert "1 reply by email from kim@agency.test was held" in thread_page
    assert f'href="/w/{slug}/mail"' in thread_page
    assert 'id="loop-note"' not in sign_in(app.test_client(), people.bob).get(f"/portal/w/{slug}").get_data(
        as_text=True)
    page = admin.get("/mail").get_data(as_text=True)
    assert f'id="held-{bobs.id}"' in page and "Post it" in page and "Discard" in page
    detail = admin.get(f"/mail/in/{bobs.inbound_email_id}").get_data(as_text=True)
    files = detail[detail.index('class="held-files"'):]
    assert "<li>logo.png</li><li>brief.pdf</li>" in files  # what "Post it" would post
    assert admin.post(f"/mail/held/{bobs.id}/post").status_code == 400  # no CSRF token: refused
    assert len(posts(people.thread)) == 2
    staff = sign_in(app.test_client(), User.create(email="sam@agency.test", name="Sam", role="team",
                                                   team_role="member"))
    assert "An admin can post or discard them" in staff.get(f"/w/{slug}").get_data(as_text=True)
    assert staff.post(f"/mail/held/{bobs.id}/post", data={"csrf_token": csrf_token(staff)}).status_code == 403

    done = _action(admin, "/mail", bobs.id, "post")
    assert done.status_code == 302 and done.headers["Location"].endswith("/mail")
    message = posts(people.thread)[-1]
    assert (message.author_id, message.source, message.is_internal, message.text) == (
        people.bob.id, "email", False, "Logo 1, and the brief.")
    assert [a.name for a in Attachment.select().where(Attachment.message == message.id)] == ["logo.png", "brief.pdf"]
    row = inbound_rows()[1]
    assert (row.outcome, row.reason, row.message_id, row.decided_by_id) == ("accepted", "released", message.id,
                                                                           people.kim.id)
    page = admin.get("/mail").get_data(as_text=True)
    assert "The held reply is posted in Acme Co, as Bob Stone wrote it." in page
    assert "Posted by Kim Lee" in page
    assert _action(admin, f"/mail/in/{kims.inbound_email_id}", kims.id, "post").status_code == 302
    assert posts(people.thread)[-1].is_internal  # it came through Kim's internal-note address
    again = admin.post(f"/mail/held/{bobs.id}/post", data={"csrf_token": csrf_token(admin)},
                       follow_redirects=True)
    assert "posted or discarded already" in again.get_data(as_text=True) and len(posts(people.thread)) == 4
    assert 'id="loop-note"' not in admin.get(f"/w/{slug}").get_data(as_text=True)  # nothing waits now


def test_an_admin_discards_a_held_reply_its_files_and_link_go(
        gateway: Any, people: People, app: Any, settings: Any) -> None:
    raw = _reply_at(people, attachment=b"parked bytes " * 100)
    assert send(gateway.port, raw, "reply@reply.test", sender="mallory@evil.test")[0] == 250
    _run_worker(settings)
    [held] = HeldPost.select()
    key = files_of(held)[0].storage_key
    store = FileStore(settings.effective_files_dir)
    secret = _LINK.search(_confirm_files(settings)[0].read_text()).group(1)
    assert held.kind == CONFIRM and store.exists(key) and pending_for(people.kim.id) == 1

    admin = sign_in(app.test_client(), people.kim)
    assert 'class="button secondary held-post"' not in admin.get("/mail").get_data(as_text=True)
    refused = admin.post(f"/mail/held/{held.id}/post", data={"csrf_token": csrf_token(admin)},
                         follow_redirects=True)  # only its sender can confirm it
    assert "Only its sender can post" in refused.get_data(as_text=True) and len(posts(people.thread)) == 1
    assert _action(admin, "/mail?tab=received", held.id, "discard").status_code == 302
    assert not store.exists(key) and _confirm_files(settings) == []
    assert app.test_client().get(f"/confirm/{secret}").status_code == 410
    assert pending_for(people.kim.id) == 0 and len(posts(people.thread)) == 1
    row = inbound_rows()[-1]
    assert (row.outcome, row.reason, row.decided_by_id) == ("dropped", "discarded", people.kim.id)
    assert "Discarded by Kim Lee" in admin.get("/mail").get_data(as_text=True)
    assert "confirm it was you" in admin.get("/mail?tab=sent").get_data(as_text=True)  # the email, by its kind


def test_held_files_count_against_the_quota_so_a_stranger_cannot_park_more(
        settings: Any, people: People) -> None:
    # Before: held replies' files counted against nothing, so replies never confirmed could keep files
    # beyond the quota (5 at a time per person, again every HELD_POST_HOURS).
    controller = start_gateway(settings.replace(person_quota_mb=1))
    big = os.urandom(400 * 1024)
    answers = []
    try:
        for n in range(3):
            raw = _reply_at(people, f"Part {n}", attachment=big + bytes([n]))
            answers.append(reply_line(*send(controller.port, raw, "reply@reply.test", sender="mallory@evil.test")))
    finally:
        controller.stop()
    assert answers[:2] == [outcome_line(HeldForConfirmation())] * 2
    assert answers[2].startswith("552 5.2.2")  # a third would take Kim over 1 MB
    held_bytes = sum(h.size for h in HeldPost.select())
    assert held_bytes == sum(f.size for h in HeldPost.select() for f in files_of(h)) and 2 * len(big) < held_bytes <= MB
    assert bytes_of_person(people.kim.id) == held_bytes == bytes_of_workspace(people.workspace.id)


def test_a_reply_at_reply_held_for_confirmation_shows_in_its_workspaces_mail_log(
        gateway: Any, people: People, app: Any) -> None:
    # Before: only the agency-wide /mail showed it (reply@ carries no reply token naming the workspace).
    other = create_workspace("Globex", "globex")
    thread_of(other)
    assert send(gateway.port, _reply_at(people), "reply@reply.test", sender="mallory@evil.test")[0] == 250
    [held] = HeldPost.select()
    admin = sign_in(app.test_client(), people.kim)
    mine = admin.get(f"/w/{people.workspace.slug}/mail").get_data(as_text=True)
    assert f'id="held-{held.id}"' in mine and "Waiting for kim@agency.test to confirm" in mine
    assert f'data-id="{held.inbound_email_id}"' not in admin.get("/w/globex/mail").get_data(as_text=True)
    # Its actions come back to the workspace's log.
    done = _action(admin, f"/w/{people.workspace.slug}/mail", held.id, "discard")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/w/{people.workspace.slug}/mail")
    assert "Discarded by Kim Lee" in admin.get(f"/w/{people.workspace.slug}/mail").get_data(as_text=True)


def test_the_back_address_of_an_action_stays_on_the_mail_log(gateway: Any, people: People, app: Any) -> None:
    assert send(gateway.port, _reply_at(people), "reply@reply.test", sender="mallory@evil.test")[0] == 250
    [held] = HeldPost.select()
    admin = sign_in(app.test_client(), people.kim)
    done = _action(admin, "/mail", held.id, "discard", back="/mail\n", encoded="1")  # a line break: not taken
    assert done.status_code == 302 and done.headers["Location"] in ("/mail", "http://localhost/mail")
    done = admin.post(f"/mail/held/{held.id}/discard",  # discarded already, and a back to elsewhere
                      data={"csrf_token": csrf_token(admin), "back": "https://evil.test/mail"})
    assert done.status_code == 302 and done.headers["Location"] in ("/mail", "http://localhost/mail")
    assert admin.post("/mail/held/99999999999999999999/discard",
                      data={"csrf_token": csrf_token(admin)}).status_code == 404


def test_a_strangers_held_and_slowed_mails_keep_only_the_head_of_their_raw_mail_and_no_stray_file(
        gateway: Any, people: People, app: Any, settings: Any) -> None:
    # Before: a reply@ mail held for confirmation, and one answered 451 beyond the 5 waiting, kept the whole
    # raw mail (up to MAX_MESSAGE_SIZE) for REFUSED_MAIL_DAYS: per network, 10 an hour, whatever the quotas;
    # and the 451 one left its attachments in the file store, named by nothing.
    file = os.urandom(300 * 1024)
    answers = []
    for n in range(6):
        raw = _reply_at(people, f"Part {n}", attachment=file + bytes([n]))
        assert len(raw) > 300 * 1024
        answers.append(reply_line(*send(gateway.port, raw, "reply@reply.test", sender=f"m{n}@evil.test")))
    assert answers[:5] == [outcome_line(HeldForConfirmation())] * 5 and answers[5].startswith("451 4.7.1")
    store = FileStore(settings.effective_files_dir)
    rows = inbound_rows()
    assert len(rows) == 6 and all(len(read_raw_mail(r.raw_key, store) or b"") <= STRANGER_RAW_MAX for r in rows)
    stored = {p.name for p in Path(settings.effective_files_dir).rglob("*") if p.is_file()}
    held_keys = {f.storage_key for h in HeldPost.select() for f in files_of(h)}
    assert {k for k in stored if len(k) == 64} == held_keys  # the slowed mail's files were not kept
    first = HeldPost.select().order_by(HeldPost.id).first()
    assert [f.size for f in files_of(first)][0] == len(file) + 1  # the held reply's own files are whole
    secret = _LINK.search(OutboxEmail.select().where(OutboxEmail.kind == CONFIRM_POST).order_by(OutboxEmail.id)
                          .first().body_text).group(1)
    client = app.test_client()
    assert client.post(f"/confirm/{secret}", data={"csrf_token": csrf_token(client)}).status_code == 200
    message = posts(people.thread)[-1]
    logo = Attachment.get((Attachment.message == message.id) & (Attachment.name == "logo.png"))
    assert logo.size == len(file) + 1 and store.exists(logo.storage_key)


def test_migration_17_counts_the_files_of_replies_held_before_it(gateway: Any, people: People) -> None:
    from storage.migrations import _v17_held_sizes_and_decisions

    assert send(gateway.port, _reply_at(people, attachment=b"x" * 5000), "reply@reply.test",
                sender="mallory@evil.test")[0] == 250
    [held] = HeldPost.select()
    size = held.size
    assert size >= 5000
    HeldPost.update(size=0).execute()  # as a held reply stored before version 17 has it
    _v17_held_sizes_and_decisions()
    assert HeldPost.get_by_id(held.id).size == size == bytes_of_person(people.kim.id)

