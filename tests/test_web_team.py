"""The team's side of the web app: signing in (password, magic link, rate limit, sign-out), the workspaces
list, the thread page (newest page, load older, internal marking, search highlight, original email,
trimmed text, delivery status), the composer (posting, Internal toggle, attachments, errors that keep the
text), the members page and the "what the client sees" switch."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import re
from typing import Any

import pytest
from web_support import CLIENT_TEXT, INTERNAL_TEXT, TEAM_PASSWORD, World, csrf_token, newest, post_form, sign_in

from gateway.outbound.worker import OutboxWorker
from storage.files import FileStore
from storage.mail_log import ACCEPTED, LOGIN_LINK, LOGIN_REQUEST, InboundEmail, OutboxEmail
from storage.models import Attachment, LoginToken, Membership, Message, ReplyToken, User
from storage.posting import post_message
from storage.tokens import create_login_token, reply_token_for
from web.signin_limits import NETWORK_FACTOR

# ---------------------------------------------------------------------------------------------------
# Signing in


def test_team_signs_in_with_password_and_out_again(app: Any, world: World) -> None:
    # Right email and password: signed in and sent to the page asked for; sign-out ends the session.
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/login?next=/w/acme", data={"email": "KIM@agency.test", "password": TEAM_PASSWORD,
                                                         "csrf_token": token})
    assert response.status_code == 302 and response.location == "/w/acme"
    assert client.get("/w/acme").status_code == 200
    assert post_form(client, "/logout").status_code == 302
    assert client.get("/w/acme").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.test/", "//evil.test/x", "/\\evil.test"])
def test_sign_in_never_redirects_off_site(app: Any, world: World, target: str) -> None:
    # ?next= pointing at another site is ignored: the person lands on their home page.
    client = app.test_client()
    response = client.post(f"/login?next={target}", data={"email": "kim@agency.test", "password": TEAM_PASSWORD,
                                                           "csrf_token": csrf_token(client)})
    assert response.location == "/workspaces"


@pytest.mark.parametrize("email,password", [("kim@agency.test", "wrong password"),
                                            ("nobody@agency.test", TEAM_PASSWORD),
                                            ("bob@acme.test", "")])
def test_wrong_password_is_refused_with_a_sentence(app: Any, world: World, email: str, password: str) -> None:
    # A wrong password, an unknown address or a client's address: 401 with the same sentence, email kept.
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    html = response.get_data(as_text=True)
    assert "don&#39;t match" in html and f'value="{email}"' in html


def test_sign_in_attempts_are_rate_limited(app: Any, world: World, settings: Any) -> None:
    # After LOGIN_ATTEMPTS failures for one address, even the right password is refused for 15 minutes (429).
    app.extensions["workrate_settings"] = settings.replace(login_attempts=3)
    client = app.test_client()
    token = csrf_token(client)
    for _ in range(3):
        r = client.post("/login", data={"email": "kim@agency.test", "password": "nope", "csrf_token": token})
        assert r.status_code == 401
    r = client.post("/login", data={"email": "kim@agency.test", "password": TEAM_PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and "Too many sign-in attempts" in r.get_data(as_text=True)


def test_rate_limit_counts_per_remote_address(app: Any, world: World, settings: Any) -> None:
    # Guessing across many addresses from one network is limited (3 times the per-address limit); another
    # network is not.
    app.extensions["workrate_settings"] = settings.replace(login_attempts=3)
    client = app.test_client()
    token = csrf_token(client)
    for i in range(3 * NETWORK_FACTOR):
        client.post("/login", data={"email": f"x{i}@agency.test", "password": "nope", "csrf_token": token})
    r = client.post("/login", data={"email": "kim@agency.test", "password": TEAM_PASSWORD, "csrf_token": token})
    assert r.status_code == 429
    elsewhere = app.test_client()
    r = elsewhere.post("/login", data={"email": "kim@agency.test", "password": TEAM_PASSWORD,
                                       "csrf_token": csrf_token(elsewhere)},
                       environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert r.status_code == 302


def test_magic_link_signs_in_once(app: Any, world: World) -> None:
    # GET shows a Continue button without using the link; POST signs in; the link then never works again.
    secret = create_login_token(world.client, 15)
    client = app.test_client()
    page = client.get(f"/login/{secret}")
    assert page.status_code == 200 and "Bob Stone" in page.get_data(as_text=True)
    assert client.get(f"/login/{secret}").status_code == 200  # a mail scanner's GET does not use it up
    response = client.post(f"/login/{secret}", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.location == "/portal/"
    assert client.get("/portal/w/acme").status_code == 200
    again = app.test_client()
    assert again.get(f"/login/{secret}").status_code == 410
    assert again.post(f"/login/{secret}", data={"csrf_token": csrf_token(again)}).status_code == 410
    assert again.get("/portal/w/acme").status_code == 302


def test_expired_magic_link_is_refused(app: Any, world: World) -> None:
    # A link older than its minutes is refused with a page offering a new one.
    secret = create_login_token(world.client, 15)
    LoginToken.update(expires_at=dt.datetime(2000, 1, 1)).execute()
    client = app.test_client()
    response = client.post(f"/login/{secret}", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 410 and "Ask for a new link" in response.get_data(as_text=True)
    assert client.get("/portal/").status_code == 302


def test_link_request_reveals_nothing_and_queues_a_mail(app: Any, world: World, settings: Any) -> None:
    # Known and unknown addresses get the same answer; only a known one gets a login_link email queued.
    client = app.test_client()
    known = post_form(client, "/login/link", {"email": "Bob@Acme.test"})
    unknown = post_form(client, "/login/link", {"email": "nobody@acme.test"})
    assert known.status_code == unknown.status_code == 200

    def sentence(r: Any) -> str:
        return re.search(r'<p id="link-sent">(.*?)</p>', r.get_data(as_text=True)).group(1)

    assert sentence(known) == sentence(unknown)
    # Both did the same work: one request row each; the worker sends a link for the known client only.
    logins = OutboxEmail.kind.in_([LOGIN_REQUEST, LOGIN_LINK])
    assert [r.kind for r in OutboxEmail.select().where(logins)] == [LOGIN_REQUEST, LOGIN_REQUEST]
    asyncio.run(OutboxWorker(settings).run_once())
    rows = list(OutboxEmail.select().where(OutboxEmail.kind == LOGIN_LINK))
    assert [(r.to_address, r.status) for r in rows] == [("bob@acme.test", "sent")]
    [eml] = (settings.data_dir / "outbox-mail").glob("login-*.eml")
    assert "/login/" in eml.read_text()


def test_team_members_are_not_emailed_sign_in_links(app: Any, world: World, settings: Any) -> None:
    # A team member signs in with a password: asking for a link answers the same sentence and sends nothing.
    client = app.test_client()
    answer = post_form(client, "/login/link", {"email": "kim@agency.test"})
    assert answer.status_code == 200 and 'id="link-sent"' in answer.get_data(as_text=True)
    asyncio.run(OutboxWorker(settings).run_once())
    assert OutboxEmail.select().where(OutboxEmail.kind.in_([LOGIN_REQUEST, LOGIN_LINK])).count() == 0


# ---------------------------------------------------------------------------------------------------
# Workspaces and the thread page


def test_workspaces_list_shows_unread_counts(app: Any, world: World) -> None:
    # Unread: messages by others after the person's read marker; opening the thread clears it.
    post_message(world.thread, world.client, "one")
    post_message(world.thread, world.client, "two")
    client = sign_in(app.test_client(), world.team)
    html = client.get("/workspaces").get_data(as_text=True)
    acme = html[html.index('data-slug="acme"'):]
    assert re.search(r'class="unread"[^>]*>2<', acme[:600])
    client.get("/w/acme")
    html = client.get("/workspaces").get_data(as_text=True)
    acme = html[html.index('data-slug="acme"'):]
    assert 'class="unread"' not in acme[:600]


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-message-id="(\d+)"', html)]


def test_thread_shows_newest_page_and_loads_older_by_cursor(app: Any, world: World) -> None:
    # 120 messages: the page shows the newest 50 oldest-first; "load older" pages back 50 at a time.
    for i in range(118):
        post_message(world.thread, world.team, f"message number {i}")
    client = sign_in(app.test_client(), world.team)
    html = client.get("/w/acme").get_data(as_text=True)
    all_ids = [m.id for m in Message.select().where(Message.thread == world.thread).order_by(Message.id)]
    assert _ids(html) == all_ids[-50:]
    assert 'id="load-older"' in html
    older = client.get(f"/w/acme/older?before={all_ids[-50]}").get_json()
    assert _ids(older["html"]) == all_ids[-100:-50] and older["has_more"] is True
    oldest = client.get(f"/w/acme/older?before={older['oldest_id']}").get_json()
    assert _ids(oldest["html"]) == all_ids[:20] and oldest["has_more"] is False
    # Without JavaScript, the same pages come as ?before= links.
    assert _ids(client.get(f"/w/acme?before={all_ids[-50]}").get_data(as_text=True)) == all_ids[-100:-50]


def test_internal_messages_are_marked(app: Any, world: World) -> None:
    # The team sees the internal note with the internal class, badge and data attribute.
    html = sign_in(app.test_client(), world.team).get("/w/acme").get_data(as_text=True)
    article = html[html.index(f'id="m-{world.internal.id}"') - 200:]
    assert 'class="message internal' in article[:300] and 'data-visibility="internal"' in article[:400]
    assert "internal-badge" in article[:1200] and INTERNAL_TEXT in article[:2000]


def test_message_markdown_is_rendered_and_sanitized(app: Any, world: World) -> None:
    # Markdown shows as HTML; script, event handlers and javascript: links never reach the page.
    post_message(world.thread, world.team,
                 "**bold** <script>alert(1)</script> [x](javascript:alert(2)) <img src=x onerror=alert(3)>")
    html = sign_in(app.test_client(), world.team).get("/w/acme").get_data(as_text=True)
    assert "<strong>bold</strong>" in html
    assert "<script>alert" not in html and 'href="javascript' not in html and "<img" not in html


def test_search_highlights_matching_words(app: Any, world: World) -> None:
    # Search finds messages containing every word, shows them rendered with matching words in <mark> (never
    # inside a tag or an entity), counts in English, and links each to its place in the thread.
    post_message(world.thread, world.team, "The **invoice** for [March](https://acme.test/invoice) & <b>more</b>")
    post_message(world.thread, world.team, "Nothing to see")
    client = sign_in(app.test_client(), world.team)
    assert client.get("/w/acme?q=invoice").headers["Location"].endswith("/search?q=invoice")
    html = client.get("/search?q=invoice").get_data(as_text=True)
    assert "<strong><mark>invoice</mark></strong>" in html and 'href="https://acme.test/invoice"' in html
    assert "&amp;" in html and "<b>more</b>" not in html and "Nothing to see" not in html
    assert "1 message in 1 workspace match" in html
    found = newest(world.thread).id - 1
    assert f'href="/w/acme?before={found + 1}#m-{found}"' in html


def test_search_covers_every_workspace_grouped(app: Any, world: World) -> None:
    # The team searches all workspaces at once; a client only their own; ?w= narrows to one workspace.
    post_message(world.thread, world.team, "quarterly report for Acme")
    post_message(world.thread, world.team, "quarterly report draft")
    post_message(world.globex_thread, world.team, "quarterly report for Globex")
    team = sign_in(app.test_client(), world.team)
    html = team.get("/search?q=quarterly").get_data(as_text=True)
    assert "3 messages in 2 workspaces match" in html
    assert ">2 messages<" in html and ">1 message<" in html
    assert html.index("Globex") < html.index("Acme Co")  # the most recent match first
    assert "1 message in 1 workspace" not in team.get("/search?q=quarterly&w=acme").get_data(as_text=True)
    assert "2 messages in 1 workspace match" in team.get("/search?q=quarterly&w=acme").get_data(as_text=True)
    bob = sign_in(app.test_client(), world.client)
    client_html = bob.get("/portal/search?q=quarterly").get_data(as_text=True)
    assert "2 messages in 1 conversation match" in client_html and "Globex" not in client_html
    assert bob.get("/portal/search?q=quarterly&w=globex").status_code == 404


def test_portal_search_never_finds_internal_notes(app: Any, world: World) -> None:
    # The team finds internal notes; the client's search does not, nor their edited or earlier texts.
    team = sign_in(app.test_client(), world.team).get("/search?q=budget").get_data(as_text=True)
    assert "<mark>budget</mark>" in team
    bob = sign_in(app.test_client(), world.client)
    client = bob.get("/portal/search?q=budget").get_data(as_text=True)
    assert INTERNAL_TEXT not in client and "No messages match" in client
    from storage.posting import edit_message

    edit_message(world.internal, world.team, "renamed zebra budget")
    html = bob.get("/portal/search?q=zebra").get_data(as_text=True)
    assert "No messages match" in html and "renamed" not in html


def test_emailed_post_shows_original_email_escaped_and_trimmed_text(app: Any, world: World, settings: Any) -> None:
    # An emailed post links to its raw mail, shown as escaped text; the trimmed quote is one click away.
    raw = b"From: bob@acme.test\r\nSubject: Re: draft\r\n\r\n<b>Looks good</b><script>alert(1)</script>\r\n"
    key = FileStore(settings.effective_files_dir).put_bytes(raw).key
    inbound = InboundEmail.create(outcome=ACCEPTED, raw_key=key, mail_from="bob@acme.test",
                                  rcpt_to="reply+x@reply.test", subject="Re: draft")
    message = post_message(world.thread, world.client, "Looks good", source="email",
                           trimmed_text="> quoted line one\n> quoted line two", inbound_email_id=inbound.id)
    client = sign_in(app.test_client(), world.team)
    html = client.get("/w/acme").get_data(as_text=True)
    assert f'href="/messages/{message.id}/email"' in html
    assert "2 lines trimmed · show" in html and "&gt; quoted line one" in html
    page = client.get(f"/messages/{message.id}/email").get_data(as_text=True)
    assert "&lt;b&gt;Looks good&lt;/b&gt;&lt;script&gt;" in page and "<script>alert" not in page
    portal = sign_in(app.test_client(), world.client)
    assert "quoted line one" not in portal.get("/portal/w/acme").get_data(as_text=True)
    assert portal.get(f"/messages/{message.id}/email").status_code == 404


def test_delivery_status_is_shown_next_to_messages(app: Any, world: World) -> None:
    # Queued, sent and failed notification emails show next to the message, with the failure's words.
    message = post_message(world.thread, world.team, "status please")
    row = OutboxEmail.get(OutboxEmail.message == message)
    OutboxEmail.update(status="failed", last_error="550 5.1.1 mailbox unknown").where(OutboxEmail.id == row.id) \
        .execute()
    html = sign_in(app.test_client(), world.team).get("/w/acme").get_data(as_text=True)
    article = html[html.index(f'id="m-{message.id}"'):]
    article = article[:article.index("</article>")]
    assert "1 failed" in article and "550 5.1.1 mailbox unknown" in article
    assert "1 queued" in html  # the welcome message's email to Bob is still pending


def test_delivery_lines_refresh(app: Any, world: World) -> None:
    # The page asks again for queued messages' delivery lines; a sent email then shows as sent. Ids of
    # other workspaces are ignored.
    row = OutboxEmail.get(OutboxEmail.message == world.public)
    client = sign_in(app.test_client(), world.team)
    ids = f"{world.public.id},{world.globex_message.id},abc"
    before = client.get(f"/w/acme/delivery?ids={ids}").get_json()
    assert list(before) == [str(world.public.id)] and "1 queued" in before[str(world.public.id)]
    OutboxEmail.update(status="sent").where(OutboxEmail.id == row.id).execute()
    after = client.get(f"/w/acme/delivery?ids={ids}").get_json()
    assert "1 sent" in after[str(world.public.id)] and 'data-pending="0"' in after[str(world.public.id)]


# ---------------------------------------------------------------------------------------------------
# The composer


def test_post_without_javascript_redirects_to_the_new_message(app: Any, world: World) -> None:
    # A plain form post creates a client-visible web message and redirects to it.
    client = sign_in(app.test_client(), world.team)
    response = post_form(client, "/w/acme/messages", {"text": "Plain **post**"})
    message = newest(world.thread)
    assert response.status_code == 302 and response.location == f"/w/acme#m-{message.id}"
    assert (message.text, message.visibility, message.source) == ("Plain **post**", "client", "web")


def test_internal_toggle_posts_an_internal_note(app: Any, world: World) -> None:
    # With the Internal toggle on, the post is internal; the JSON answer carries the rendered message.
    client = sign_in(app.test_client(), world.team)
    response = post_form(client, "/w/acme/messages", {"text": "team eyes only", "internal": "1"}, json=True)
    assert response.status_code == 201
    message = newest(world.thread)
    assert message.visibility == "internal" and response.get_json()["id"] == message.id
    assert 'class="message internal' in response.get_json()["html"]


def test_composer_error_keeps_the_typed_text(app: Any, world: World) -> None:
    # An empty post is refused with a sentence; a too-long one too, and the typed text stays in the box.
    client = sign_in(app.test_client(), world.team)
    response = post_form(client, "/w/acme/messages", {"text": "   "})
    assert response.status_code == 400 and "Please write a message or attach a file" in response.get_data(True)
    long_text = "x" * 100_001
    response = post_form(client, "/w/acme/messages", {"text": long_text, "internal": "1"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "at most 100,000 characters" in html
    assert long_text in html and 'id="internal-toggle" name="internal" value="1" checked' in html
    json_error = post_form(client, "/w/acme/messages", {"text": ""}, json=True)
    assert json_error.status_code == 400 and "Please write" in json_error.get_json()["error"]


def test_several_attachments_upload_and_download(app: Any, world: World) -> None:
    # Several files in one post are stored with safe names and their types, and download again.
    client = sign_in(app.test_client(), world.team)
    data = {"text": "files", "attachments": [(io.BytesIO(b"one"), "../../etc/passwd"),
                                             (io.BytesIO(b"%PDF-1.4 two"), "report.pdf")]}
    response = post_form(client, "/w/acme/messages", data, json=True, content_type="multipart/form-data")
    assert response.status_code == 201
    files = list(newest(world.thread).attachments.order_by(Attachment.id))
    assert [(f.name, f.content_type, f.size) for f in files] == [("passwd", "application/octet-stream", 3),
                                                                 ("report.pdf", "application/pdf", 12)]
    download = client.get(f"/attachments/{files[1].id}/report.pdf")
    assert download.data == b"%PDF-1.4 two" and download.headers["Content-Type"] == "application/pdf"
    assert download.headers["Content-Disposition"].startswith("attachment")


def test_attachments_over_the_size_limit_are_refused(app: Any, world: World, settings: Any) -> None:
    # Files larger than max_message_size in all are refused with a sentence; nothing is posted.
    app.extensions["workrate_settings"] = settings.replace(max_message_size=1000)
    client = sign_in(app.test_client(), world.team)
    before = world.thread.messages.count()
    data = {"text": "big", "attachments": [(io.BytesIO(b"a" * 600), "a.bin"), (io.BytesIO(b"b" * 600), "b.bin")]}
    response = post_form(client, "/w/acme/messages", data, json=True, content_type="multipart/form-data")
    assert response.status_code == 400 and "too large" in response.get_json()["error"]
    assert world.thread.messages.count() == before


def test_request_larger_than_the_limit_gets_a_sentence(app: Any, world: World) -> None:
    # A request body over the limit is refused with 413 and a sentence, before it is read.
    app.config["MAX_CONTENT_LENGTH"] = 2000
    client = sign_in(app.test_client(), world.team)
    data = {"text": "big", "attachments": [(io.BytesIO(b"a" * 5000), "a.bin")]}
    response = post_form(client, "/w/acme/messages", data, content_type="multipart/form-data")
    assert response.status_code == 413 and "too large" in response.get_data(as_text=True)


# ---------------------------------------------------------------------------------------------------
# Members and the client's view


def test_invite_creates_a_client_and_emails_a_link(app: Any, world: World) -> None:
    # Inviting adds the client with access and queues an invitation with a sign-in link.
    client = sign_in(app.test_client(), world.team)
    response = post_form(client, "/w/acme/members/invite", {"email": "Dana@Acme.test", "name": "Dana",
                                                            "messages_access": "1"})
    assert response.status_code == 302
    dana = User.get(User.email == "dana@acme.test")
    assert dana.role == "client"
    assert Membership.get(Membership.user == dana).messages_access is True
    mail = OutboxEmail.get((OutboxEmail.kind == LOGIN_LINK) & (OutboxEmail.recipient == dana))
    assert "/login/" in mail.body_text
    page = client.get("/w/acme/members").get_data(as_text=True)
    assert "dana@acme.test" in page and "Invited dana@acme.test" in page


def test_invite_refuses_a_team_member_with_a_sentence(app: Any, world: World) -> None:
    client = sign_in(app.test_client(), world.team)
    response = post_form(client, "/w/acme/members/invite", {"email": "kim@agency.test", "name": "Kim"})
    assert response.status_code == 400 and "is a team member" in response.get_data(as_text=True)


def test_revoking_access_revokes_reply_tokens(app: Any, world: World) -> None:
    # Revoking a client's access kills their reply addresses; granting it back restores the thread.
    token = reply_token_for(world.client, world.thread, secret_key="test-key")
    client = sign_in(app.test_client(), world.team)
    assert post_form(client, f"/w/acme/members/{world.client.id}/access", {"granted": "0"}).status_code == 302
    assert ReplyToken.get_by_id(token.id).revoked_at is not None
    portal = sign_in(app.test_client(), world.client)
    assert portal.get("/portal/w/acme").status_code == 403
    post_form(client, f"/w/acme/members/{world.client.id}/access", {"granted": "1"})
    assert portal.get("/portal/w/acme").status_code == 200


def test_follow_and_unfollow(app: Any, world: World) -> None:
    # The members page lists followers; unfollowing removes the current team member from it.
    client = sign_in(app.test_client(), world.team)
    assert f'data-user-id="{world.team.id}"' in client.get("/w/acme/members").get_data(as_text=True)
    post_form(client, "/w/acme/follow", {"following": "0"})
    page = client.get("/w/acme/members").get_data(as_text=True)
    followers = page[page.index('id="followers"'):page.index("</ul>", page.index('id="followers"'))]
    assert "Kim Lee" not in followers and "Follow this workspace" in page
    post_form(client, "/w/acme/follow", {"following": "1"})
    assert "Unfollow this workspace" in client.get("/w/acme/members").get_data(as_text=True)


def test_what_the_client_sees(app: Any, world: World) -> None:
    # The switch draws the thread through the visibility rule as a client with access: no internal note.
    client = sign_in(app.test_client(), world.team)
    html = client.get("/w/acme?as=").get_data(as_text=True)
    assert "Bob Stone" in html and CLIENT_TEXT in html and INTERNAL_TEXT not in html
    assert 'id="composer"' not in html
    as_carol = client.get(f"/w/acme?as={world.no_access.id}").get_data(as_text=True)
    assert CLIENT_TEXT not in as_carol  # Carol has no access, so she sees nothing
    older = client.get(f"/w/acme/older?as=&before={world.internal.id + 1}").get_json()
    assert INTERNAL_TEXT not in older["html"] and CLIENT_TEXT in older["html"]


class QueryCounter(logging.Handler):
    """Counts the SQL statements peewee runs (it logs each one at DEBUG on the "peewee" logger)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def statements_for(client: Any, url: str) -> int:
    counter, logger = QueryCounter(), logging.getLogger("peewee")
    level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        assert client.get(url).status_code == 200
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)
    return counter.count


def test_first_page_of_a_big_thread_reads_one_page(app: Any, world: World, make: Any) -> None:
    # With 2,000 messages, the thread page and the portal show the newest page only and ask the database
    # no more than for a thread of two messages. (How long they take is measured by bench/web.py.)
    # Bulk rows are inserted directly here only to build the fixture fast.
    from storage.models import Message as M
    from web.threadview import PAGE_SIZE

    team = sign_in(app.test_client(), world.team)
    portal = sign_in(app.test_client(), world.client)
    pages = {"/w/acme": team, "/portal/w/acme": portal}
    for url, client in pages.items():
        client.get(url)  # warm up: the first request of a session may read more than the page itself
    small = {url: statements_for(client, url) for url, client in pages.items()}
    now = dt.datetime(2024, 1, 1)
    rows = [{"thread": world.thread.id, "author": world.team.id, "visibility": "internal" if i % 7 == 0 else "client",
             "text": f"message {i} about the website redesign", "html": f"<p>message {i}.</p>", "source": "web",
             "created_at": now} for i in range(2_000)]
    for start in range(0, len(rows), 500):
        M.insert_many(rows[start:start + 500]).execute()
    for url, client in pages.items():
        assert statements_for(client, url) <= small[url], url
    team_html = team.get("/w/acme").get_data(as_text=True)
    assert len(re.findall(r"<p>message \d+\.</p>", team_html)) == PAGE_SIZE
    assert "<p>message 1999.</p>" in team_html and "<p>message 0.</p>" not in team_html
    portal_html = portal.get("/portal/w/acme").get_data(as_text=True)
    assert len(re.findall(r"<p>message \d+\.</p>", portal_html)) == PAGE_SIZE
    assert "<p>message 1999.</p>" in portal_html and "<p>message 1995.</p>" not in portal_html  # 1995: internal


# ---------------------------------------------------------------------------------------------------
# One-click unsubscribe and the demo


def test_unsubscribe_link_confirms_then_unsubscribes(app: Any, world: World, settings: Any) -> None:
    # GET only shows a button (mail scanners follow links); POST works without session or CSRF (RFC 8058).
    from gateway.outbound.unsubscribe import make_unsubscribe_token

    token = make_unsubscribe_token(settings, world.client.id, world.thread.id)
    client = app.test_client()
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and 'id="unsubscribe"' in page.get_data(as_text=True)
    assert Membership.get(Membership.user == world.client).following is True
    response = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "no longer get emails" in response.get_data(as_text=True)
    assert Membership.get(Membership.user == world.client).following is False


@pytest.mark.parametrize("token", ["garbage", "WzEsMV0.forged-signature"])
def test_forged_unsubscribe_token_is_404(app: Any, world: World, token: str) -> None:
    client = app.test_client()
    assert client.get(f"/unsubscribe/{token}").status_code == 404
    assert client.post(f"/unsubscribe/{token}").status_code == 404


def test_demo_is_idempotent_and_its_links_work(app: Any, settings: Any, database: Any) -> None:
    # `workrate run --demo` twice: one workspace, four sample messages (one internal), working sign-in links.
    from cli.demo import create_demo
    from storage.models import Workspace

    lines: list[str] = []
    create_demo(settings, lines.append)
    create_demo(settings, lines.append)
    assert Workspace.select().count() == 1
    messages = list(Message.select())
    assert len(messages) == 4 and sum(m.visibility == "internal" for m in messages) == 1
    assert any("kim@agency.example" in line and "demo-password" in line for line in lines)
    links = [line.strip() for line in lines if line.strip().startswith("http") and "/login/" in line]
    assert len(links) == 4  # per run: Bob's link, then Carol's
    bob, carol = app.test_client(), app.test_client()
    response = bob.post(f"/login/{links[2].rsplit('/', 1)[1]}", data={"csrf_token": csrf_token(bob)})
    assert response.status_code == 302 and response.location == "/portal/"
    html = bob.get("/portal/w/acme").get_data(as_text=True)
    assert "Could we see the home page draft" in html and "designer is out" not in html
    file_url = re.search(r'href="(/attachments/\d+/home-page-outline\.txt)"', html)
    assert file_url, "the demo's file is shown to the client"
    download = bob.get(file_url.group(1))
    assert download.status_code == 200 and download.data.startswith(b"Home page outline")
    carol.post(f"/login/{links[3].rsplit('/', 1)[1]}", data={"csrf_token": csrf_token(carol)})
    assert carol.get("/portal/w/acme").status_code == 403
    team = app.test_client()
    assert team.post("/login", data={"email": "kim@agency.example", "password": "demo-password",
                                     "csrf_token": csrf_token(team)}).status_code == 302


def test_sidebar_lists_workspaces_with_preview_unread_and_awaiting_reply(app: Any, world: World) -> None:
    # The team's sidebar (JSON HTML for the thread page): newest message's preview, unread count, "Awaiting
    # your reply" when the client spoke last, most recent first; clients cannot fetch it.
    post_message(world.thread, world.client, "Can we **talk** tomorrow?", source="portal")
    team = sign_in(app.test_client(), world.team)
    html = team.get("/workspaces/sidebar?current=acme").get_json()["html"]
    acme = html[html.index('data-slug="acme"'):html.index('data-slug="globex"')]
    assert "Bob Stone: Can we talk tomorrow?" in acme and "Awaiting your reply" in acme
    assert 'aria-current="page"' in acme
    assert html.index('data-slug="acme"') < html.index('data-slug="globex"')
    assert sign_in(app.test_client(), world.client).get("/workspaces/sidebar").status_code in (302, 403, 404)
    assert "preview-internal" not in acme
    post_message(world.thread, world.team, "Margin is thin.", internal=True)
    html = team.get("/workspaces/sidebar?current=acme").get_json()["html"]
    acme = html[html.index('data-slug="acme"'):html.index('data-slug="globex"')]
    assert '<span class="preview-internal">Internal</span> Kim Lee: Margin is thin.' in acme  # marked as such
