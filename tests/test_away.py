"""Client is away: a client contact's out-of-office reply, received over SMTP through their own reply address,
is not posted but notes them as away (with the return date its text gives), for the team only. It ends with
their next message or on the return date; a stranger's or a teammate's auto-reply notes nothing; nothing of
it reaches a client (portal pages, their workspace list, live-update events, emails)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from conftest import shared_path
from gateway_support import People, crlf, eml, inbound_rows, posts, send
from web_support import World, sign_in

from gateway import errors
from gateway.addresses import format_bounce_address
from storage import outbox
from storage.away import ContactAway, away_contacts, away_in_workspaces, record_away
from storage.directory import add_client, create_workspace
from storage.mail_log import DROPPED, OutboxEmail, ThreadEvent
from storage.models import User, utcnow
from storage.posting import post_message
from storage.tokens import set_messages_access


def reply_line(code: int, text: str) -> str:
    return f"{code} {' '.join(text.split())}"


def out_of_office(to: str, sender: str, body: str, subject: str = "Automatic reply: Acme Co messages") -> bytes:
    return crlf(f"From: Bob Stone <{sender}>\nTo: {to}\nSubject: {subject}\nMessage-ID: <ooo.{id(body)}."
                f"{utcnow().timestamp()}@client.test>\nAuto-Submitted: auto-replied\n"
                f"Content-Type: text/plain; charset=utf-8\n\n{body}\n".encode())


def test_a_real_auto_reply_from_the_shared_corpus_notes_the_contact_away(settings, people: People, gateway):
    # Discourse's auto_reply fixture (Auto-Submitted: auto-generated), sent by a client contact of the workspace
    # to their own reply address, over SMTP on loopback.
    path = shared_path("corpora", "incoming", "legacy2016_auto_reply.eml")
    jake = add_client("jake@adventuretime.ooo", "Jake the Dog", people.workspace, True)
    address = people.address(jake)
    raw = crlf(Path(path).read_bytes().replace(
        b"To: reply+636ca428858779856c226bb145ef4fad@appmail.adventuretime.ooo", f"To: {address}".encode()))
    code, text = send(gateway.port, raw, address, sender="jake@adventuretime.ooo")
    # Told what any auto-reply is told; logged with its own reason.
    assert reply_line(code, text) == reply_line(250, errors.ClientAway().smtp_reply[4:])
    [row] = inbound_rows()
    assert (row.outcome, row.reason) == (DROPPED, "away")
    assert posts(people.thread) == []
    away = away_contacts([jake.id])[jake.id]
    assert away.back_on is None
    today = utcnow()
    assert away.label == f"away (auto-reply on {today.strftime('%b')} {today.day})"
    assert ContactAway.get(ContactAway.user == jake.id).inbound_email_id == row.id
    # Nobody is notified, and no live-update event is written for anyone.
    assert OutboxEmail.select().count() == 0 and ThreadEvent.select().count() == 0


def test_the_return_date_is_read_from_the_text_and_ends_the_away_on_that_day(settings, people: People, gateway):
    back = (utcnow() + dt.timedelta(days=10)).date()
    body = f"Thank you for your email. I am out of the office and will be back on {back.day} {back:%B %Y}."
    address = people.bob_address
    code, _ = send(gateway.port, out_of_office(address, "bob@acme.test", body), address)
    assert code == 250
    [row] = inbound_rows()
    assert row.reason == "away"
    away = away_contacts([people.bob.id])[people.bob.id]
    assert away.back_on == back and not away.said_until
    assert away.label == f"away, back on {back:%a} {back.day} {back:%b}" + (
        f" {back.year}" if back.year != utcnow().year else "")
    # Evaluated when read, with the clock given: away the day before, back on the day (in their time zone).
    User.update(time_zone="Pacific/Auckland").where(User.id == people.bob.id).execute()
    auckland_midnight = dt.datetime.combine(back, dt.time(0, 30)) - dt.timedelta(hours=13)  # 00:30 NZDT, in UTC
    assert people.bob.id in away_contacts([people.bob.id], now=auckland_midnight - dt.timedelta(hours=1))
    assert away_contacts([people.bob.id], now=auckland_midnight) == {}
    assert away_in_workspaces([people.workspace.id], now=auckland_midnight) == {}


def test_until_shows_the_last_day_away(settings, people: People):
    since = dt.datetime(2026, 12, 3, 9)
    record_away(people.bob.id, since=since, back_on=dt.date(2027, 1, 13), said_until=True, inbound_email_id=None)
    away = away_contacts([people.bob.id], now=since)[people.bob.id]
    assert away.label == "away until Tue 12 Jan 2027"
    assert away_contacts([people.bob.id], now=dt.datetime(2027, 1, 12, 23)) != {}
    assert away_contacts([people.bob.id], now=dt.datetime(2027, 1, 13, 0, 1)) == {}


def test_the_contacts_next_message_ends_it_from_email_or_web(settings, people: People, gateway):
    address = people.bob_address
    send(gateway.port, out_of_office(address, "bob@acme.test", "I am away until further notice."), address)
    assert people.bob.id in away_contacts([people.bob.id])
    # A real reply by email: posted, and Bob is back.
    code, _ = send(gateway.port, eml("plain_reply.eml", to=address), address)
    assert code == 250 and len(posts(people.thread)) == 1
    assert away_contacts([people.bob.id]) == {}
    # Away again with the next auto-reply; back with a post from the web (the one write path).
    send(gateway.port, out_of_office(address, "bob@acme.test", "Out of office."), address)
    assert people.bob.id in away_contacts([people.bob.id])
    post_message(people.thread, people.bob, "Back at my desk.", source="portal")
    assert away_contacts([people.bob.id]) == {}


def test_a_contact_in_two_workspaces_is_away_in_both(settings, people: People, make):
    other = make.workspace("Initech")
    set_messages_access(people.bob, other.id, True)
    record_away(people.bob.id, since=utcnow(), back_on=None, said_until=False, inbound_email_id=None)
    found = away_in_workspaces([people.workspace.id, other.id])
    assert set(found) == {people.workspace.id, other.id}


def test_nobody_else_can_set_a_contact_away(settings, people: People, gateway):
    # An auto-reply to Bob's address from another address, and a teammate's own auto-reply: dropped as any
    # auto-reply, never refused, and nobody is noted as away.
    address = people.bob_address
    code, text = send(gateway.port, out_of_office(address, "mallory@evil.test", "Back on 12 January."), address,
                      sender="mallory@evil.test")
    assert reply_line(code, text) == reply_line(250, errors.AutoReply().smtp_reply[4:])
    kim_address = people.address(people.kim)
    code, _ = send(gateway.port, out_of_office(kim_address, "kim@agency.test", "Back on 12 January."),
                   kim_address, sender="kim@agency.test")
    assert code == 250
    # Through reply@ with a notification's Message-ID, a forged From of Bob: such a reply would be held for
    # Bob to confirm, so it proves nothing and notes nothing.
    message = post_message(people.thread, people.kim, "Is the draft ready?")
    mid = "<wr.9.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=mid).where(OutboxEmail.message == message.id).execute()
    forged = out_of_office("reply@reply.test", people.bob.email, "Back on 12 January.").replace(
        b"Subject:", f"In-Reply-To: {mid}\r\nSubject:".encode())
    code, _ = send(gateway.port, forged, "reply@reply.test", sender=people.bob.email)
    assert code == 250
    assert [r.reason for r in inbound_rows()] == ["auto_reply"] * 3
    assert "held for confirmation" in inbound_rows()[-1].auth
    assert ContactAway.select().count() == 0
    # Mass mail and read receipts are automatic too, but say nothing about being away.
    for name in ("precedence_bulk.eml", "read_receipt.eml"):
        code, _ = send(gateway.port, eml(name, to=address), address)
        assert code == 250
    assert ContactAway.select().count() == 0


def test_the_team_sees_it_and_a_client_never_does(app: Any, world: World):
    record_away(world.client.id, since=utcnow(), back_on=None, said_until=False, inbound_email_id=None)
    label = away_contacts([world.client.id])[world.client.id].label
    team = sign_in(app.test_client(), world.team)
    thread = team.get("/w/acme").get_data(as_text=True)
    assert 'id="away-note"' in thread and f"Bob Stone is {label}" in thread
    listing = team.get("/workspaces").get_data(as_text=True)
    assert 'class="away-mark"' in listing and f"Bob Stone {label}" in listing
    sidebar = team.get("/workspaces/sidebar?current=acme").get_json()["html"]
    assert 'class="away-mark"' in sidebar
    # The workspace's People page: beside the contact, in their row only.
    people = team.get("/w/acme/members").get_data(as_text=True)
    row = people[people.index(f'data-user-id="{world.client.id}"'):]
    row = row[:row.index("</tr>")]
    assert f'<span class="away" data-user-id="{world.client.id}">{label}</span>' in row
    assert people.count('class="away"') == 1
    # The client: thread page, older page, workspace list, search, post answer.
    client = sign_in(app.test_client(), world.client)
    assert client.get("/w/acme/members").status_code in (302, 403, 404)
    pages = [client.get("/portal/w/acme").get_data(as_text=True),
             client.get("/portal/").get_data(as_text=True),
             client.get(f"/portal/w/acme/older?before={world.internal.id + 1}").get_data(as_text=True),
             client.get("/portal/search?q=draft").get_data(as_text=True)]
    other_client = sign_in(app.test_client(), world.other)
    pages.append(other_client.get("/portal/").get_data(as_text=True))
    for html in pages:
        assert "away-note" not in html and "away-mark" not in html and 'class="away"' not in html
        assert label not in html and "is away" not in html


def test_an_away_contact_without_messages_access_is_not_shown(settings, make):
    ws = create_workspace("Hooli", "hooli")
    gavin = make.client(ws, "gavin@hooli.test", "Gavin", access=False)
    record_away(gavin.id, since=utcnow(), back_on=None, said_until=False, inbound_email_id=None)
    assert away_in_workspaces([ws.id]) == {}


def bounce_address_of(settings: Any, message_id: int, user: User) -> str:
    """The envelope sender (bounce+TOKEN@) of the notification about message_id sent to user."""
    token = outbox.new_bounce_token()
    (OutboxEmail.update(bounce_token=token)
     .where((OutboxEmail.message == message_id) & (OutboxEmail.recipient == user.id)).execute())
    return format_bounce_address(token, settings.reply_domain)


def test_a_vacation_reply_to_the_contacts_own_bounce_address_notes_them_away(settings, people: People, gateway):
    # Sieve-style vacation responders answer the envelope sender, with a null sender of their own.
    message = post_message(people.thread, people.kim, "Homepage revisions are ready.")
    address = bounce_address_of(settings, message.id, people.bob)
    body = "I am on holiday. Je serai de retour le 5 janvier."
    code, text = send(gateway.port, out_of_office(address, "bob@acme.test", body), address, sender="")
    assert reply_line(code, text) == reply_line(250, errors.ClientAway().smtp_reply[4:])
    [row] = inbound_rows()
    assert (row.outcome, row.reason) == (DROPPED, "away")
    away = away_contacts([people.bob.id])[people.bob.id]
    assert away.back_on is not None and (away.back_on.month, away.back_on.day) == (1, 5)
    assert len(posts(people.thread)) == 1  # Kim's message; nothing posted from the auto-reply


def test_a_bounce_address_notes_only_the_contact_its_email_went_to(settings, people: People, make, gateway):
    message = post_message(people.thread, people.kim, "Homepage revisions are ready.")
    bobs = bounce_address_of(settings, message.id, people.bob)
    # Another client contact of the workspace answering Bob's bounce address, and a stranger: not noted.
    carol = make.client(people.workspace, "carol@acme.test", "Carol", access=True)
    for sender in ("carol@acme.test", "mallory@evil.test"):
        code, text = send(gateway.port, out_of_office(bobs, sender, "Back on 12 January."), bobs, sender="")
        assert reply_line(code, text) == reply_line(250, errors.AutoReply().smtp_reply[4:])
    # Bob answering the bounce address of Carol's notification: the token is not his.
    carols = bounce_address_of(settings, post_message(people.thread, people.kim, "For Carol too.").id, carol)
    code, _ = send(gateway.port, out_of_office(carols, "bob@acme.test", "Back on 12 January."), carols, sender="")
    assert code == 250
    # A teammate's vacation reply to their own notification's bounce address: the team is never "away".
    note = post_message(people.thread, people.bob, "A question for Kim.")
    kims = bounce_address_of(settings, note.id, people.kim)
    code, _ = send(gateway.port, out_of_office(kims, "kim@agency.test", "Back on 12 January."), kims, sender="")
    assert code == 250
    assert [r.reason for r in inbound_rows()] == ["auto_reply"] * 4
    assert ContactAway.select().count() == 0
    # Bob, without Messages access any more: not noted either.
    set_messages_access(people.bob, people.workspace.id, False)
    code, _ = send(gateway.port, out_of_office(bobs, "bob@acme.test", "Back on 12 January."), bobs, sender="")
    assert code == 250 and ContactAway.select().count() == 0
