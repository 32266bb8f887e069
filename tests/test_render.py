"""Rendering of notifications: headers that thread and keep auto-responders quiet, markers for reply
extraction, links per audience, formatted text, and names that can never inject a header."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage

import pytest

from config import Settings
from gateway.markers import HTML_MARKER_ID_PREFIX, LOOP_HEADER, REPLY_ABOVE_LINE
from gateway.outbound.render import (
    MAIL_POLICY,
    NothingVisible,
    UnsafeHeaders,
    mail_message_id,
    render_notification,
    visible_rows,
    wire_bytes,
)
from gateway.outbound.transport import to_bytes
from gateway.outbound.unsubscribe import read_unsubscribe_token
from storage import outbox
from storage.directory import set_access
from storage.mail_log import OutboxEmail
from storage.models import Attachment, ReplyToken, User, Workspace
from storage.posting import NewAttachment, post_message
from storage.tokens import hash_secret, reply_token_for


def pending(recipient: User) -> list[OutboxEmail]:
    return list(OutboxEmail.select().where((OutboxEmail.recipient == recipient.id) & (OutboxEmail.status == "pending"))
                .order_by(OutboxEmail.id))


def wire(mail: email.message.EmailMessage) -> email.message.EmailMessage:
    """The mail as a receiver parses it from the bytes we send."""
    return email.message_from_bytes(to_bytes(mail), policy=email.policy.default)


def text_of(mail: email.message.EmailMessage) -> str:
    return mail.get_body(("plain",)).get_content()


def html_of(mail: email.message.EmailMessage) -> str:
    return mail.get_body(("html",)).get_content()


def test_headers_of_a_client_notification(settings: Settings, make) -> None:
    # From names the author "via WorkRate" at MAIL_FROM; Reply-To is the recipient's own reply address;
    # the subject names the workspace and the start of the message; auto-responders are asked to stay quiet;
    # our loop header and a one-click List-Unsubscribe (RFC 8058) are present.
    ws = make.workspace("Acme Co")
    kim = make.team(name="Kim Lee")
    bob = make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), kim, "Hello")
    row = pending(bob)[0]
    mail = wire(render_notification([row], settings))
    assert mail["From"].addresses[0].display_name == "Kim Lee via WorkRate"
    assert mail["From"].addresses[0].addr_spec == settings.effective_mail_from == "notifications@reply.test"
    assert mail["To"].addresses[0].addr_spec == "bob@acme.test"
    token = reply_token_for(bob, make.thread(ws), secret_key=settings.secret_key)
    assert mail["Reply-To"] == f"reply+{token.token}@reply.test" and not token.internal
    assert ReplyToken.select().count() == 1
    assert mail["Subject"] == "Acme Co \u2014 Hello"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail[LOOP_HEADER]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(.+)>", mail["List-Unsubscribe"]).group(1)
    assert url.startswith("http://app.test/unsubscribe/")
    assert read_unsubscribe_token(settings, url.rsplit("/", 1)[1]) == (bob.id, make.thread(ws).id)
    assert mail["Message-ID"] == mail_message_id([row.id], settings)
    assert mail["Date"] and mail["MIME-Version"] == "1.0"


def test_message_id_is_stable_across_a_resend_and_changes_with_the_batch(settings: Settings, make) -> None:
    # Rendering the same rows again (a resend after a crash) gives the same Message-ID; a batch that grew
    # meanwhile gets another one, so a mail client never hides its new messages as a duplicate.
    ws = make.workspace()
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), kim, "one")
    first = pending(bob)
    a, b = render_notification(first, settings), render_notification(first, settings)
    assert a["Message-ID"] == b["Message-ID"]
    post_message(make.thread(ws), kim, "two")
    assert render_notification(pending(bob), settings)["Message-ID"] != a["Message-ID"]
    assert mail_message_id([1, 2], settings) != mail_message_id([1, 2], settings.replace(secret_key="other"))


def test_later_notifications_thread_under_the_earlier_ones(settings: Settings, make) -> None:
    # In-Reply-To and References point at the previous notifications of the thread to the same person, and
    # the subject stays the one of the email that opened the episode, so mail clients show one conversation.
    ws = make.workspace("Acme Co")
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    sent_ids = []
    for i in range(3):
        post_message(make.thread(ws), kim, f"Update {i}")
        rows = pending(bob)
        mail = render_notification(rows, settings)
        if sent_ids:
            assert mail["In-Reply-To"] == sent_ids[-1]
            assert mail["References"].split()[1:] == sent_ids
        assert mail["Subject"] == mail["Thread-Topic"] == "Acme Co \u2014 Update 0"
        root = mail["References"].split()[0]
        outbox.save_rendered(rows, mail_message_id=mail["Message-ID"], bounce_token=outbox.new_bounce_token(),
                             subject=mail["Subject"], headers="", body_text="", body_html="")
        outbox.mark_sent(rows)
        sent_ids.append(mail["Message-ID"])
    assert all(root != m for m in sent_ids)


def test_internal_notification_is_marked_and_carries_an_internal_reply_address(settings: Settings, make) -> None:
    # An internal note's email says so in the subject and body, and its Reply-To is the team member's
    # internal token (a reply posts an internal note), distinct from their client-visible token.
    ws = make.workspace("Acme Co")
    kim, lee = make.team(), make.team()
    post_message(make.thread(ws), kim, "Budget is tight.", internal=True)
    mail = render_notification(pending(lee), settings)
    assert mail["Subject"] == "[Internal] Acme Co \u2014 Budget is tight."
    assert "internal note" in text_of(mail).lower() and "Internal" in html_of(mail)
    token = re.search(r"reply\+([0-9a-f]+)@", mail["Reply-To"]).group(1)
    assert ReplyToken.get(token_hash=hash_secret(token)).internal


def test_a_client_can_never_receive_an_internal_notification(settings: Settings, make) -> None:
    # Even a forged outbox row cannot make a client's email carry an internal note or an internal token.
    ws = make.workspace()
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    message = post_message(make.thread(ws), kim, "Team only", internal=True)
    forged = OutboxEmail.create(recipient=bob, to_address=bob.email, thread=make.thread(ws), message=message,
                                internal=True)
    with pytest.raises(NothingVisible):
        render_notification([forged], settings)
    also = OutboxEmail.create(recipient=bob, to_address=bob.email, thread=make.thread(ws), message=message,
                              internal=False)
    assert visible_rows([also]) == ([], [also])
    assert not ReplyToken.select().where(ReplyToken.internal == True).exists()  # noqa: E712


def test_no_longer_visible_messages_are_left_out(settings: Settings, make) -> None:
    # Rendering asks can_see() again: a client whose access was revoked gets nothing rendered.
    ws = make.workspace()
    kim, bob = make.team(), make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), kim, "Hello")
    rows = pending(bob)
    set_access(bob, ws, False)
    with pytest.raises(NothingVisible):
        render_notification(rows, settings)


def test_body_markers_text_formatting_and_links(settings: Settings, make) -> None:
    # The text part starts with the reply marker line and holds the Markdown; the HTML part has the hidden
    # marker element and the formatted text; attachments and the thread are linked for that person's side.
    ws = make.workspace("Acme Co")
    kim, bob = make.team(name="Kim Lee"), make.client(ws, "bob@acme.test")
    message = post_message(make.thread(ws), kim, "Revisions are **ready**:\n\n- home\n- [about](https://acme.test/a)")
    Attachment.create(message=message, name="logo final.png", content_type="image/png", size=2048, sha256="0" * 64,
                      storage_key="k")
    row = pending(bob)[0]
    mail = wire(render_notification([row], settings))
    text, html = text_of(mail), html_of(mail)
    assert text.splitlines()[0] == REPLY_ABOVE_LINE
    # Plain text reads as text: no emphasis markers, links as "label (URL)".
    assert "Revisions are ready:" in text and "Kim Lee" in text and "about (https://acme.test/a)" in text
    assert "**" not in text and "](" not in text
    assert f'id="{HTML_MARKER_ID_PREFIX}{row.id:x}"' in html
    assert "<strong>ready</strong>" in html and "<li>home</li>" in html and 'href="https://acme.test/a"' in html
    attachment = Attachment.get(message=message)
    # A client's links sign them in (one link per email, bound to them) and land on what they name.
    signed = re.compile(r"http://app\.test/login/([A-Za-z0-9_-]{40,})\?next=")
    secrets_in_mail = set(signed.findall(text)) | set(signed.findall(html))
    assert len(secrets_in_mail) == 1
    link = f"http://app.test/login/{secrets_in_mail.pop()}?next="
    assert f"{link}%2Fattachments%2F{attachment.id}%2Flogo%2520final.png" in text
    assert f"{link}%2Fportal%2Fw%2Facme-co%23m-{message.id}" in text
    assert f"{link}%2Fportal%2Fw%2Facme-co%23m-{message.id}" in html
    post_message(make.thread(ws), bob, "Thanks", source="portal")
    team_mail = render_notification(pending(kim), settings)
    assert "http://app.test/w/acme-co" in text_of(team_mail) and "/portal/" not in text_of(team_mail)


def test_batch_lists_every_message_with_its_author_oldest_first(settings: Settings, make) -> None:
    # A batch shows each message with its author and time; From names the last author.
    ws = make.workspace()
    kim, ann = make.team(name="Kim Lee"), make.team(name="Ann Berg")
    bob = make.client(ws, "bob@acme.test")
    t0 = dt.datetime(2026, 3, 1, 9, 30)
    post_message(make.thread(ws), kim, "First.", now=t0)
    post_message(make.thread(ws), ann, "Second.", now=t0 + dt.timedelta(minutes=1))
    mail = wire(render_notification(pending(bob), settings))
    text = text_of(mail)
    assert "2 new messages" in text
    assert (text.index("Kim Lee, Sun 01 Mar 2026, 09:30 UTC") < text.index("First.")
            < text.index("Ann Berg, Sun 01 Mar 2026, 09:31 UTC") < text.index("Second."))
    assert mail["From"].addresses[0].display_name == "Ann Berg via WorkRate"


@pytest.mark.parametrize("evil", [
    "Kim\r\nBcc: victim@evil.test",
    "Kim\nX-Injected: yes",
    "Kim\rSubject: phish",
    "Kim\x01\x1b[31m\x7f\u2028X-Injected: yes",
    "Kim =?utf-8?q?=0D=0ABcc:_victim@evil.test?=",
])
def test_names_and_workspace_names_cannot_inject_headers(settings: Settings, make, evil: str) -> None:
    # Control characters in an author's name or a workspace name become spaces; they never start a header
    # of their own, and the mail still parses with one From, one Subject and no Bcc.
    ws = make.workspace("Acme")
    Workspace.update(name=evil.replace("Kim", "Acme")).where(Workspace.id == ws.id).execute()
    author = make.team()
    User.update(name=evil).where(User.id == author.id).execute()
    bob = make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), User.get_by_id(author.id), "Hello")
    raw = to_bytes(render_notification(pending(bob), settings))
    head = raw.split(b"\r\n\r\n", 1)[0]
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail.get_all("Bcc") is None and mail.get_all("X-Injected") is None
    assert len(mail.get_all("From")) == 1 and len(mail.get_all("Subject")) == 1
    assert not re.search(rb"\r\n(Bcc|X-Injected|Subject: phish)", head, re.IGNORECASE)
    assert all(ord(c) >= 32 for c in str(mail["From"]) + str(mail["Subject"]))
    assert mail["From"].addresses[0].addr_spec == "notifications@reply.test"
    assert not any(ord(c) < 32 or ord(c) == 127 for c in mail["From"].addresses[0].display_name)


def test_non_ascii_names_and_subjects_are_encoded(settings: Settings, make) -> None:
    # Names and workspace names in any script arrive intact: headers are RFC 2047-encoded (pure ASCII on
    # the wire) and decode back to the original text.
    ws = make.workspace("Café Crème 東京")
    author = make.team(name="Zoë Ångström 山田")
    bob = make.client(ws, "bob@acme.test", name="Bjørn Ødegård")
    post_message(make.thread(ws), author, "Grüße — ça va?")
    raw = to_bytes(render_notification(pending(bob), settings))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["From"].addresses[0].display_name == "Zoë Ångström 山田 via WorkRate"
    assert mail["To"].addresses[0].display_name == "Bjørn Ødegård"
    assert mail["Subject"] == "Café Crème 東京 \u2014 Grüße — ça va?"
    assert "Grüße — ça va?" in text_of(mail)


def test_html_escapes_names_and_drops_unsafe_markup(settings: Settings, make) -> None:
    # Names and workspace names are escaped in the HTML part; the message HTML is the sanitized rendering.
    ws = make.workspace("<script>alert(1)</script> Co")
    author = make.team(name="Kim <img src=x onerror=alert(1)>")
    bob = make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), author, "Hi <script>alert(2)</script> [x](javascript:alert(3))")
    html = html_of(render_notification(pending(bob), settings))
    assert "<script>" not in html and "<img" not in html
    assert "Kim &lt;img src=x onerror=alert(1)&gt;" in html
    assert "href=\"javascript:" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Co" in html


def test_the_wire_guard_never_lets_an_injected_header_out() -> None:
    # Whatever a header value holds, wire_bytes() either refuses the mail or sends no header we did not set:
    # here an encoded CR LF that Python 3.11's header parser would decode into a real line break.
    mail = EmailMessage(policy=MAIL_POLICY)
    mail["Subject"] = "Hi =?utf-8?q?=0D=0ABcc:_victim@evil.test?="
    mail.set_content("x")
    try:
        raw = wire_bytes(mail)
    except UnsafeHeaders:
        return
    assert b"\r\nBcc:" not in raw.split(b"\r\n\r\n", 1)[0]


def test_subject_excerpt_reads_as_plain_text_and_is_cut_at_a_word(settings: Settings, make) -> None:
    # Markdown never shows in a subject; a long message is cut at a word with an ellipsis; a message of
    # files only names the first file.
    from gateway.outbound.render import excerpt

    assert excerpt("**Homepage** draft: see [the mockup](https://x.test/m)") == "Homepage draft: see the mockup (https://x.test/m)"
    long = excerpt("The homepage revisions are ready for your review, with the new hero image and the pricing table")
    assert long.endswith("\u2026") and len(long) <= 61 and " " in long and not long[:-1].endswith(" ")
    assert excerpt("- first item\n- second") == "first item second"
    ws = make.workspace("Acme Co")
    kim, bob = make.team(name="Kim Lee"), make.client(ws, "bob@acme.test")
    post_message(make.thread(ws), kim, "", attachments=[NewAttachment("plan.pdf", "application/pdf", 3, "0" * 64, "k")])
    assert render_notification(pending(bob), settings)["Subject"] == "Acme Co \u2014 Kim Lee sent plan.pdf"


def test_times_in_emails_follow_the_recipients_time_zone(settings: Settings, make) -> None:
    # A recipient with a stored time zone reads local times; without one (or an unknown one), UTC.
    import datetime as dt

    ws = make.workspace("Acme Co")
    kim, bob = make.team(name="Kim Lee"), make.client(ws, "bob@acme.test")
    bob.time_zone = "America/New_York"
    bob.save()
    post_message(make.thread(ws), kim, "Winter time", now=dt.datetime(2026, 1, 15, 17, 30))
    assert "Thu 15 Jan 2026, 12:30 EST" in text_of(render_notification(pending(bob), settings))
    bob.time_zone = "Not/AZone"
    bob.save()
    assert "17:30 UTC" in text_of(render_notification(pending(bob), settings))
