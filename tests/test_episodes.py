"""Email episodes and context in the inbox: after a quiet period a notification opens a new email conversation
(new root Message-ID, new stable subject); replies to any episode land in the right thread with the right
audience; earlier messages shown under the marker follow the one visibility rule and are cut exactly from a
reply. Real relay and gateway on loopback, the clock injected."""
from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import make_msgid

from gateway_support import smtp_send, start_gateway
from outbound_relay import Received, send_due

from config import Settings
from gateway.markers import REPLY_ABOVE_LINE
from gateway.outbound.render import render_notification
from storage.episodes import EmailEpisode
from storage.held import HeldPost
from storage.mail_log import OutboxEmail
from storage.models import Membership, Message, User, utcnow
from storage.posting import post_message

DAY = dt.timedelta(days=1)


def post_and_send(settings: Settings, thread, author: User, text: str, at: dt.datetime,  # noqa: ANN001
                  internal: bool = False) -> Message:
    message = post_message(thread, author, text, internal=internal, now=at)
    send_due(settings, at)
    return message


def refs(received: Received) -> list[str]:
    return str(received.mail["References"]).split()


def test_a_quiet_period_opens_a_new_episode_and_the_subject_holds_within_one(settings: Settings, make,
                                                                             relay) -> None:
    settings = settings.replace(relay_url=relay.url, email_episode_days=7)
    ws = make.workspace("Acme Co")
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    thread = make.thread(ws)
    t0 = utcnow()
    post_and_send(settings, thread, kim, "The homepage draft is ready for review.", t0)
    post_and_send(settings, thread, kim, "Also: the footer links are fixed.", t0 + 3 * DAY)
    post_and_send(settings, thread, kim, "Shipping the draft on Friday.", t0 + 9 * DAY)  # 6 days after: same
    first, second, third = relay.to(bob.email)
    subject = "Acme Co \u2014 The homepage draft is ready for review."
    assert [str(r.mail["Subject"]) for r in (first, second, third)] == [subject] * 3
    root = refs(first)[0]
    assert first.mail["In-Reply-To"] == root and refs(first) == [root]
    assert second.mail["In-Reply-To"] == first.mail["Message-ID"]
    assert refs(second) == [root, first.mail["Message-ID"]]
    assert refs(third) == [root, first.mail["Message-ID"], second.mail["Message-ID"]]

    # Seven quiet days: the next email is a new conversation, named after the message that opened it.
    post_and_send(settings, thread, kim, "**New phase**: the shop pages. Kick-off call on Monday?", t0 + 16 * DAY)
    post_and_send(settings, thread, kim, "Agenda attached to the invite.", t0 + 16 * DAY + dt.timedelta(hours=1))
    fourth, fifth = relay.to(bob.email)[3:]
    new_subject = "Acme Co \u2014 New phase: the shop pages. Kick-off call on Monday?"
    assert str(fourth.mail["Subject"]) == str(fifth.mail["Subject"]) == new_subject
    new_root = refs(fourth)[0]
    assert new_root != root and refs(fourth) == [new_root] and fourth.mail["In-Reply-To"] == new_root
    assert refs(fifth) == [new_root, fourth.mail["Message-ID"]]
    assert fifth.mail["In-Reply-To"] == fourth.mail["Message-ID"]
    assert [e.number for e in EmailEpisode.select().order_by(EmailEpisode.id)] == [1, 2]

    # A resend of an older email (after a crash) carries the headers it had, in its own episode.
    lead = OutboxEmail.get(OutboxEmail.mail_message_id == second.mail["Message-ID"])
    again = render_notification([lead], settings, t0 + 20 * DAY)
    assert (again["Message-ID"], again["Subject"], again["References"].split(), again["In-Reply-To"]) == (
        second.mail["Message-ID"], second.mail["Subject"], refs(second), second.mail["In-Reply-To"])


def test_the_recipients_own_reply_keeps_the_episode_going(settings: Settings, make, relay) -> None:
    # A client who answers an old email after eight days expects the answer in that same conversation.
    settings = settings.replace(relay_url=relay.url, email_episode_days=7)
    ws = make.workspace("Acme Co")
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    thread = make.thread(ws)
    t0 = utcnow()
    post_and_send(settings, thread, kim, "Which colour for the buttons?", t0)
    post_message(thread, bob, "Blue, please.", source="email", now=t0 + 8 * DAY)
    post_and_send(settings, thread, kim, "Blue it is.", t0 + 8 * DAY + dt.timedelta(minutes=5))
    first, second = relay.to(bob.email)
    assert second.mail["Subject"] == first.mail["Subject"] and refs(second)[0] == refs(first)[0]


def test_episode_0_days_means_one_conversation_for_ever(settings: Settings, make, relay) -> None:
    settings = settings.replace(relay_url=relay.url, email_episode_days=0)
    ws = make.workspace("Acme Co")
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    t0 = utcnow()
    post_and_send(settings, make.thread(ws), kim, "One", t0)
    post_and_send(settings, make.thread(ws), kim, "Two", t0 + 400 * DAY)
    first, second = relay.to(bob.email)
    assert second.mail["Subject"] == first.mail["Subject"] and refs(second)[0] == refs(first)[0]


def test_deleting_the_opening_message_retires_its_subject(settings: Settings, make, relay) -> None:
    from storage.posting import delete_message

    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace("Acme Co")
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    t0 = utcnow()
    opening = post_and_send(settings, make.thread(ws), kim, "Password is hunter2", t0)
    delete_message(opening, kim)
    post_and_send(settings, make.thread(ws), kim, "Sorry, wrong chat.", t0 + dt.timedelta(minutes=1))
    second = relay.to(bob.email)[-1]
    assert "hunter2" not in str(second.mail["Subject"]) and "hunter2" not in second.text() + second.html()
    assert str(second.mail["Subject"]) == "Acme Co \u2014 Sorry, wrong chat."


def reply_mail(received: Received, sender: str, text: str, *, to: str | None = None,
               in_reply_to: str | None = None, references: str | None = None) -> EmailMessage:
    note = received.mail
    reply = EmailMessage()
    reply["From"], reply["To"] = sender, to or note["Reply-To"]
    reply["Subject"] = "Re: " + str(note["Subject"])
    reply["Message-ID"] = make_msgid(domain="acme.test")
    reply["In-Reply-To"] = in_reply_to if in_reply_to is not None else note["Message-ID"]
    reply["References"] = references if references is not None else f"{' '.join(refs(received))} {note['Message-ID']}"
    quoted = "\n".join("> " + line for line in received.text().splitlines())
    reply.set_content(f"{text}\n\nOn Mon, {note['From']} wrote:\n{quoted}\n")
    return reply


def test_replies_to_an_older_episode_land_in_the_right_thread_with_the_right_audience(settings: Settings, make,
                                                                                     relay) -> None:
    settings = settings.replace(relay_url=relay.url, email_episode_days=7, reply_plain_per_hour=100)
    acme, globex = make.workspace("Acme Co"), make.workspace("Globex")
    kim, lee = make.team("kim@agency.test"), make.team("lee@agency.test", name="Lee Chan")
    bob = make.client(acme, "bob@acme.test")
    Membership.create(user=bob, workspace=globex, messages_access=True)  # a client of both
    t0 = utcnow()
    post_and_send(settings, make.thread(acme), kim, "Acme: first round.", t0)
    post_and_send(settings, make.thread(globex), kim, "Globex: first round.", t0)
    post_and_send(settings, make.thread(acme), kim, "Acme: second round.", t0 + 10 * DAY)
    post_and_send(settings, make.thread(acme), kim, "Internal: margin is thin.", t0 + 10 * DAY, internal=True)
    acme_old, globex_old, acme_new = relay.to(bob.email)
    assert acme_old.mail["Subject"] != acme_new.mail["Subject"]
    [lee_internal] = relay.to(lee.email)
    gateway = start_gateway(settings)
    try:
        # Through the reply address of the older episode's email.
        reply = reply_mail(acme_old, "Bob Stone <bob@acme.test>", "Answering the old email.")
        assert smtp_send(gateway, bob.email, acme_old.mail["Reply-To"], reply.as_bytes(policy=default_policy)) == 250
        # Through reply@ (the +token lost), found by In-Reply-To of the older episode, and of the other thread.
        plain = f"reply@{settings.reply_domain}"
        for received, text in ((acme_old, "Lost token, old Acme email."), (globex_old, "Lost token, Globex.")):
            reply = reply_mail(received, "Bob Stone <bob@acme.test>", text, to=plain)
            assert smtp_send(gateway, bob.email, plain, reply.as_bytes(policy=default_policy)) == 250
        # A client that kept only the episode's root in References.
        reply = reply_mail(acme_new, "Bob Stone <bob@acme.test>", "Only the root was kept.", to=plain,
                           in_reply_to="", references=refs(acme_new)[0])
        assert smtp_send(gateway, bob.email, plain, reply.as_bytes(policy=default_policy)) == 250
        # An internal episode's root never routes a reply@ mail: it could post as the team, to the client.
        forged = reply_mail(lee_internal, "Lee Chan <lee@agency.test>", "Forged through the root.", to=plain,
                            in_reply_to="", references=refs(lee_internal)[0])
        assert smtp_send(gateway, lee.email, plain, forged.as_bytes(policy=default_policy)) >= 500
    finally:
        gateway.stop()
    posted = {m.text: (m.thread.workspace.name, m.visibility, m.author_id)
              for m in Message.select().where(Message.source == "email")}
    assert posted == {"Answering the old email.": ("Acme Co", "client", bob.id)}
    # Without a reply address and an aligned SPF/DKIM pass, reply@ mail is held for the sender to confirm
    # (issue 16): routed by the episode, to the thread and audience it would be posted to.
    held = {h.text: (h.thread.workspace.name, h.internal, h.author_id) for h in HeldPost.select()}
    assert held == {
        "Lost token, old Acme email.": ("Acme Co", False, bob.id),
        "Lost token, Globex.": ("Globex", False, bob.id),
        "Only the root was kept.": ("Acme Co", False, bob.id),
    }


def test_context_shows_earlier_client_visible_messages_never_an_internal_note(settings: Settings, make,
                                                                              relay) -> None:
    settings = settings.replace(relay_url=relay.url, email_context_messages=3)
    ws = make.workspace("Acme Co")
    kim = make.team("kim@agency.test", name="Kim Lee")
    bob = make.client(ws, "bob@acme.test", name="Bob Stone")
    thread = make.thread(ws)
    t0 = utcnow()
    for i, (author, text, internal) in enumerate([
            (kim, "Context one: kick-off notes.", False),
            (kim, "Context two: wireframes.", False),
            (bob, "Context three: looks good.", False),
            (kim, "SECRET internal: margin is thin.", True),
            (kim, "Context four: the draft.", False)]):
        post_message(thread, author, text, internal=internal, now=t0 + i * dt.timedelta(minutes=1))
    send_due(settings, t0 + dt.timedelta(minutes=10))
    relay.keeper.received.clear()
    post_and_send(settings, thread, kim, "The newest message.", t0 + DAY)
    [to_bob] = relay.to(bob.email)
    assert "SECRET" not in to_bob.html() + to_bob.text() + str(to_bob.mail["Subject"])
    for body in (to_bob.text(), to_bob.html().split("<body", 1)[1]):  # (the title is the episode's subject)
        assert "Context one" not in body  # the last three client-visible ones only
        assert body.index("The newest message.") < body.index("Context two") < body.index("Context three") \
            < body.index("Context four")
        assert body.index(REPLY_ABOVE_LINE) < body.index("Context two")
    assert "Earlier in this conversation" in to_bob.text() and "Earlier in this conversation" in to_bob.html()

    # A team member's email of the client audience holds no internal note either: its reply address posts
    # client-visible, so a quoted note could reach the client.
    post_and_send(settings, thread, bob, "A client question.", t0 + 2 * DAY)
    [to_kim] = relay.to(kim.email)
    assert "Context four" in to_kim.text() and "SECRET" not in to_kim.text() + to_kim.html()
    # An internal email (its reply stays internal) shows the team internal context, marked as such.
    relay.keeper.received.clear()
    lee = make.team("lee@agency.test", name="Lee Chan")
    post_and_send(settings.replace(email_context_messages=10), thread, lee, "Internal: a team question.",
                  t0 + 2 * DAY, internal=True)
    [to_kim] = relay.to(kim.email)
    assert "SECRET internal" in to_kim.text() and "[INTERNAL NOTE, team only]" in to_kim.text()
    assert "Internal note (team only)" in to_kim.html()

    # 0: no context at all.
    relay.keeper.received.clear()
    post_and_send(settings.replace(email_context_messages=0), thread, kim, "Bare.", t0 + 3 * DAY)
    assert "Earlier in this conversation" not in relay.to(bob.email)[0].text()


def marker_reply(received: Received, text: str, *, html: bool = True, keep_ids: bool = True) -> EmailMessage:
    """A reply as a client writes it with no quote markup of its own (Outlook-like): the new text, then our
    email pasted whole, in both parts. Only our marker tells where the reply ends."""
    note = received.mail
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = "Bob Stone <bob@acme.test>", note["Reply-To"], "RE: " + str(
        note["Subject"])
    reply["Message-ID"] = make_msgid(domain="acme.test")
    reply["In-Reply-To"] = note["Message-ID"]
    reply.set_content(f"{text}\n\n{received.text()}")
    if not html:
        return reply
    body = re.search(r"<body[^>]*>(.*)</body>", received.html(), re.S).group(1)  # type: ignore[union-attr]
    if not keep_ids:  # a client that drops element ids: the visible marker line is what is left
        body = re.sub(r' id="[^"]*"', "", body)
    reply.add_alternative(f"<html><body><div>{text}</div><div><br></div>{body}</body></html>", subtype="html")
    return reply


def test_the_trimmer_cuts_the_context_exactly_over_smtp(settings: Settings, make, relay) -> None:
    settings = settings.replace(relay_url=relay.url)
    ws = make.workspace("Acme Co")
    kim, bob = make.team("kim@agency.test"), make.client(ws, "bob@acme.test")
    thread = make.thread(ws)
    t0 = utcnow()
    post_message(thread, kim, "Context: the **brief** is [here](https://example.test/brief).", now=t0)
    post_message(thread, bob, "Context: thanks, reading it.", now=t0 + dt.timedelta(minutes=1))
    send_due(settings, t0 + dt.timedelta(minutes=2))
    relay.keeper.received.clear()
    post_and_send(settings, thread, kim, "Here is the first draft.", t0 + DAY)
    [note] = relay.to(bob.email)
    assert "Context: thanks" in note.text() and "Context: thanks" in note.html()
    gateway = start_gateway(settings)
    try:
        reply = marker_reply(note, "Thanks, the draft works for us.")
        assert smtp_send(gateway, bob.email, note.mail["Reply-To"], reply.as_bytes(policy=default_policy)) == 250
        plain_only = marker_reply(note, "Plain only, also fine.", html=False)
        assert smtp_send(gateway, bob.email, note.mail["Reply-To"],
                         plain_only.as_bytes(policy=default_policy)) == 250
        no_ids = marker_reply(note, "Ids dropped, still cut.", keep_ids=False)
        html_only = EmailMessage()
        for header in ("From", "To", "Subject", "In-Reply-To"):
            html_only[header] = no_ids[header]
        html_only["Message-ID"] = make_msgid(domain="acme.test")
        html_only.set_content(no_ids.get_body(("html",)).get_content(), subtype="html")
        assert smtp_send(gateway, bob.email, note.mail["Reply-To"],
                         html_only.as_bytes(policy=default_policy)) == 250
    finally:
        gateway.stop()
    texts = [m.text for m in Message.select().where(Message.source == "email").order_by(Message.id)]
    assert texts == ["Thanks, the draft works for us.", "Plain only, also fine.", "Ids dropped, still cut."]
