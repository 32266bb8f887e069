"""The fast paths give the same answers as the straightforward code they replace: audience() and the rule,
statements compiled once (storage/db.py), the quick Markdown shortcuts, the file store's layout, and the
gateway's DATA reader.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os

import pytest
from gateway_support import eml, run_pipeline, start_gateway
from hypothesis import given, settings
from hypothesis import strategies as st
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt

from storage.db import PreparedInsert, PreparedQuery, insert_rows
from storage.directory import set_access, set_following
from storage.files import FileStore, TooLarge
from storage.mail_log import NOTIFICATION, OutboxEmail, ThreadEvent, read_raw_mail
from storage.models import CLIENT, TEAM, Membership, Message, Thread, User
from storage.posting import post_message
from storage.rendering import (
    _MAYBE_LINK,
    _NOT_PLAIN,
    _PLAIN_ASCII,
    _maybe_link,
    _plain_html,
    render_markdown,
    sanitize_html,
)
from storage.visibility import Viewer, audience, can_open_thread, can_see, last_activity, visible_messages


@pytest.fixture
def everyone(make):
    """A workspace with every kind of person: active and deactivated team members, one who unfollowed,
    clients with and without Messages access, a deactivated client, a muted one, and a client of
    another workspace."""
    ws, other_ws = make.workspace(), make.workspace()
    p = {
        "team": make.team(), "team2": make.team(), "team_off": make.team(), "team_unfollowed": make.team(),
        "team_muted": make.team(),
        "client": make.client(ws), "client2": make.client(ws), "client_no_access": make.client(ws, access=False),
        "client_off": make.client(ws), "client_muted": make.client(ws), "client_unfollowed": make.client(ws),
        "other_client": make.client(other_ws),
    }
    User.update(active=False).where(User.id.in_([p["team_off"].id, p["client_off"].id])).execute()
    User.update(email_muted=True).where(User.id.in_([p["team_muted"].id, p["client_muted"].id])).execute()
    set_following(p["team_unfollowed"], ws, False)
    # A client's one-click unsubscribe.
    Membership.update(following=False).where((Membership.user == p["client_unfollowed"].id)
                                             & (Membership.workspace == ws.id)).execute()
    p = {name: User.get_by_id(u.id) for name, u in p.items()}
    return ws, make.thread(ws), make.thread(other_ws), p


def _messages(thread: Thread, people: dict[str, User]) -> list[Message]:
    return [Message.create(thread=thread, author=people[author], visibility=visibility, text="x", html="x",
                           source="web")
            for author, visibility in itertools.product(["team", "client"], ["client", "internal"])]


def test_the_rule_for_every_kind_of_viewer(everyone) -> None:
    # Active team members see every message; clients with Messages access see the client-visible ones of
    # their workspace; deactivated people and clients without access see nothing. can_see() and
    # visible_messages() answer alike.
    ws, thread, other_thread, p = everyone
    team = {"team", "team2", "team_unfollowed", "team_muted"}
    clients = {thread.id: {"client", "client2", "client_muted", "client_unfollowed"}, other_thread.id: {"other_client"}}
    for message in _messages(thread, p) + _messages(other_thread, p):
        expected = team | (clients[message.thread_id] if message.visibility == "client" else set())
        assert {name for name, u in p.items() if can_see(Viewer.of(u), message)} == expected
        listed = {name for name, u in p.items()
                  if message.id in [m.id for m in visible_messages(Viewer.of(u), message.thread_id)]}
        assert listed == expected


def test_the_rule_follows_access_changes(everyone) -> None:
    # The rule is evaluated when asked: revoking access hides client messages from that client at once.
    ws, thread, _, p = everyone
    message = Message.create(thread=thread, author=p["team"], visibility="client", text="x", html="x",
                             source="web")
    client = Viewer.of(p["client"])
    assert can_see(client, message) and message.id in [m.id for m in visible_messages(client, thread)]
    set_access(p["client"], ws, False)
    assert not can_see(client, message) and list(visible_messages(client, thread)) == []


def _audience_reference(message: Message) -> list[int]:
    """audience() as it was written before it became one query: candidates, then can_see() for each."""
    thread = Thread.get_by_id(message.thread_id)
    author = User.get_by_id(message.author_id)
    mailable = ((User.active == True) & (User.email_muted == False)  # noqa: E712
                & (User.email_disabled == False) & (User.id != author.id))  # noqa: E712
    if author.is_team and message.visibility == "client":
        candidates = (User.select().join(Membership)
                      .where(mailable & (User.role == CLIENT) & (Membership.workspace == thread.workspace_id)
                             & (Membership.messages_access == True) & (Membership.following == True)))  # noqa: E712
    else:
        unfollowed = Membership.select(Membership.user).where(
            (Membership.workspace == thread.workspace_id) & (Membership.following == False))  # noqa: E712
        candidates = User.select().where(mailable & (User.role == TEAM) & User.id.not_in(unfollowed))
    return [u.id for u in candidates.order_by(User.id) if can_see(Viewer.of(u), message)]


def test_audience_is_the_candidates_that_can_see(everyone) -> None:
    # One query gives the same people, in the same order, as candidates filtered through can_see().
    ws, thread, other_thread, p = everyone
    for message in _messages(thread, p) + _messages(other_thread, p):
        expected = _audience_reference(message)
        assert [u.id for u in audience(message)] == expected
        assert [u.id for u in audience(message, thread=Thread.get_by_id(message.thread_id),
                                       author=User.get_by_id(message.author_id))] == expected
    internal = Message.create(thread=thread, author=p["team"], visibility="internal", text="x", html="x",
                              source="web")
    assert not any(u.role == CLIENT for u in audience(internal))
    people_found = audience(internal)
    assert people_found and all(u.active is True and isinstance(u.created_at, dt.datetime) for u in people_found)
    stored = User.select().where(User.id.in_([x.id for x in people_found])).order_by(User.id)
    assert [(u.id, u.email, u.name) for u in people_found] == [(u.id, u.email, u.name) for u in stored]


def test_can_open_thread_for_every_viewer(everyone) -> None:
    # The compiled statements of can_open_thread answer as the rule says.
    ws, thread, other_thread, p = everyone
    opens = {name for name, u in p.items() if can_open_thread(Viewer.of(u), thread)}
    assert opens == {"team", "team2", "team_unfollowed", "team_muted", "client", "client2", "client_muted",
                     "client_unfollowed"}
    assert not can_open_thread(Viewer(user_id=p["team"].id, role="nobody"), thread)


def test_post_message_writes_every_row_with_defaults(everyone) -> None:
    # A post through the compiled statements leaves the rows peewee's create() would: defaults filled in.
    ws, thread, _, p = everyone
    message = post_message(thread, p["team"], "Hello **there**", notify_delay=30)
    stored = Message.get_by_id(message.id)
    assert (stored.text, stored.html, stored.author_id, stored.thread_id) == (
        "Hello **there**", "<p>Hello <strong>there</strong></p>\n", p["team"].id, thread.id)
    assert stored.created_at == message.created_at
    rows = list(OutboxEmail.select().where(OutboxEmail.message == message.id).order_by(OutboxEmail.recipient))
    assert [r.recipient_id for r in rows] == [p["client"].id, p["client2"].id]
    for row in rows:
        assert (row.kind, row.status, row.attempts, row.last_error, row.internal) == (
            NOTIFICATION, "pending", 0, "", False)
        assert (row.next_attempt_at - message.created_at).total_seconds() == 30
    assert ThreadEvent.select().where(ThreadEvent.message == message.id).count() == 1
    assert last_activity(Viewer.of(p["team"]), Thread.get_by_id(thread.id)) == message.created_at


def test_insert_rows_in_batches(everyone) -> None:
    # Many rows go in statements of at most `batch` rows, all of them written.
    ws, thread, _, p = everyone
    message = post_message(thread, p["client"], "Hi")
    before = OutboxEmail.select().count()
    insert_rows(OutboxEmail, ("kind", "recipient", "to_address", "thread", "message"),
                [(NOTIFICATION, p["team"].id, f"a{i}@x.test", thread.id, message.id) for i in range(37)], batch=16)
    assert OutboxEmail.select().count() == before + 37


def test_prepared_insert_ignores_conflicts(everyone) -> None:
    # ON CONFLICT DO NOTHING: a row the unique index refuses is not written, and no id comes back.
    ws, thread, _, p = everyone
    insert = PreparedInsert(User, ("email", "name", "role"), ignore_conflicts=True)
    first = insert.execute(("same@x.test", "A", TEAM))
    assert first is not None and User.get_by_id(first).name == "A"
    assert insert.execute(("same@x.test", "B", TEAM)) is None
    assert User.select().where(User.email == "same@x.test").count() == 1


def test_prepared_query_placeholders_and_constants(everyone) -> None:
    # Placeholders take new values on every run; constants compiled into the statement stay.
    ws, thread, _, p = everyone
    query = PreparedQuery(lambda user_id: User.select(User.email).where((User.id == user_id) & (User.active == True)),  # noqa: E712
                          "user_id")
    assert query.scalar(user_id=p["team"].id) == p["team"].email
    assert query.scalar(user_id=p["team2"].id) == p["team2"].email
    assert query.scalar(user_id=p["team_off"].id) is None


MARKDOWN_SAMPLES = [
    "Plain prose. Ship it on Friday, please.",
    "Reply number 7: the homepage looks good.\nSecond line.\n\nNew paragraph.",
    "see www.example.com and http://x.org/a?b=c or bob@example.org. Done.",
    "mailto:kim@agency.test and ftp://files.test/a and //cdn.test/x.js",
    "an IP 192.168.1.1 and localhost:8080 and example.com/path and e.g. this",
    "домен пример.рф и test.xn--p1ai", "ends with a dot.", "file.TXT and README.md and v1.2.3",
    "**bold** _em_ `code` [link](http://a.test) <script>alert(1)</script>",
    "trailing dot www.", "@mention only", "a.b", "1. one\n2. two", "> quote\n\n- item",
    "javascript:alert(1) and [x](javascript:alert(1))", "Ünïcödé wörds. Ça va? Ok.",
]


_REFERENCE = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True}).enable("linkify")
_REFERENCE.linkify = LinkifyIt()  # linkify-it's own pretest


def _reference_html(text: str) -> str:
    return sanitize_html(_REFERENCE.render(text))


@pytest.mark.parametrize("text", MARKDOWN_SAMPLES)
def test_markdown_quick_link_pretest_changes_nothing(text: str) -> None:
    # The quick pretest only skips linkify-it's slow one where it could not match: same HTML either way.
    assert render_markdown(text) == _reference_html(text)


_LINE_STARTS = ["", " ", "  ", "   ", "    ", "1. ", "2) ", "12.", "- ", "+ ", "* ", "# ", "> ", "=", "---", "(",
                '"', "'", "é", "9", ":", "\t", "\u00a0"]
_PROSE = st.text(alphabet=st.sampled_from(list("abcXYZ éßЖ中 09 .,;:?!'\"()/%$+=-_*&<>#`\\[]~\t\u00a0@")), max_size=30)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_LINE_STARTS), _PROSE, st.sampled_from(["", " ", "  ", "   "])),
                max_size=8))
def test_plain_prose_shortcut_renders_as_markdown_does(lines: list[tuple[str, str, str]]) -> None:
    # Whatever the text, render_markdown (with its shortcut for plain prose) gives markdown-it + nh3's HTML.
    text = "\n".join(start + body + end for start, body, end in lines)
    assert render_markdown(text) == _reference_html(text)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcHTtpSFmailoKsxX:/.@ 1é\u212a\u017f")), max_size=20))
def test_quick_link_check_is_the_regular_expression(text: str) -> None:
    # _maybe_link answers as the case-insensitive _MAYBE_LINK does, Unicode case folding included.
    assert _maybe_link(text) == bool(_MAYBE_LINK.search(text))


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_ascii_plain_check_is_the_general_one(text: str) -> None:
    # For ASCII text the quick whole-text match accepts exactly what the general search finds nothing in.
    assert (_PLAIN_ASCII.fullmatch(text) is not None) == (_NOT_PLAIN.search(text) is None)


@pytest.mark.parametrize("text", [
    "Thanks, looks good. Ship it on Friday, please!",
    "Hi Kim,\n\nThe homepage looks good (the blue one).\nLet's go with it: 100% agreed.\n\nBob",
    "  Indented by two.\n\n\nThree blank lines above; \"quoted\" words and it's fine.  ",
])
def test_plain_prose_takes_the_shortcut(text: str) -> None:
    # Ordinary replies skip the parser and still come out exactly as markdown-it renders them.
    assert _plain_html(text) is not None
    assert render_markdown(text) == _reference_html(text)


def test_file_store_layout_and_old_layout(tmp_path) -> None:
    # New files go to ROOT/ab/KEY; files of the two-level layout are still found and not written again.
    store = FileStore(tmp_path / "files")
    stored = store.put_bytes(b"new bytes")
    assert store.path(stored.key) == tmp_path / "files" / stored.key[:2] / stored.key
    assert store.read(stored.key) == b"new bytes"
    chunked = store.put_chunks([b"new ", b"bytes"])
    assert chunked == stored
    old_key = FileStore(tmp_path / "x").put_bytes(b"old bytes").key
    old_path = tmp_path / "files" / old_key[:2] / old_key[2:4] / old_key
    old_path.parent.mkdir(parents=True)
    old_path.write_bytes(b"old bytes")
    assert store.path(old_key) == old_path and store.exists(old_key)
    assert store.put_bytes(b"old bytes").key == old_key
    assert not (tmp_path / "files" / old_key[:2] / old_key).exists()


def test_file_store_leaves_no_partial_files(tmp_path) -> None:
    # A stream over its limit leaves nothing behind: no key, no temporary file.
    store = FileStore(tmp_path / "files")
    with pytest.raises(TooLarge):
        store.put_chunks([b"x" * 100, b"y" * 100], limit=150)
    leftovers = [name for _, _, names in os.walk(tmp_path / "files") for name in names]
    assert leftovers == []


def test_data_reader_unstuffs_dots_across_piece_boundaries(settings, make) -> None:
    # The DATA reader takes the mail in pieces (here at most 64 bytes, the line limit): lines that start
    # with dots, lines that end with one, and "." lines split between pieces arrive exactly as sent.
    import random
    import smtplib

    from gateway.addresses import format_reply_address
    from storage.mail_log import InboundEmail
    from storage.tokens import reply_token_for

    ws = make.workspace()
    bob = make.client(ws, "bob@acme.test")
    token = reply_token_for(bob, make.thread(ws), secret_key=settings.secret_key).token
    address = format_reply_address(token, settings.reply_domain)
    rng = random.Random(5)
    sent = []
    controller = start_gateway(settings.replace(max_line_length=64))
    try:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as client:
            for _ in range(40):
                lines = ["".join(rng.choice(".a \r") for _ in range(rng.randint(0, 30))).replace("\r", "")
                         for _ in range(rng.randint(1, 20))]
                raw = ("\r\n".join(lines) + "\r\n").encode()
                sent.append(raw)
                try:
                    client.sendmail("bob@acme.test", [address], raw)  # smtplib dot-stuffs
                except smtplib.SMTPResponseException:
                    pass  # not a mail anyone could post: refused, but kept
    finally:
        controller.stop()
    store = FileStore(settings.effective_files_dir)
    received = [read_raw_mail(row.raw_key, store) for row in InboundEmail.select().order_by(InboundEmail.id)]
    assert received == sent


def test_data_reader_refuses_long_lines_split_between_pieces(settings, make) -> None:
    # A line over the limit is refused even when no single piece holds all of it.
    import smtplib

    from gateway import errors
    from gateway.addresses import format_reply_address
    from storage.tokens import reply_token_for

    ws = make.workspace()
    bob = make.client(ws, "bob@acme.test")
    token = reply_token_for(bob, make.thread(ws), secret_key=settings.secret_key).token
    address = format_reply_address(token, settings.reply_domain)
    controller = start_gateway(settings.replace(max_line_length=100))
    try:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as client:
            for raw, refused in [(b"a" * 99 + b"\r\n" + (b"b." * 45 + b"\r\n") * 3, False),
                                 (b"x\r\n" + b"a." * 60 + b"\r\n", True), (b"." * 250 + b"\r\n", True)]:
                try:
                    client.sendmail("bob@acme.test", [address], raw)
                    reply = "250"
                except smtplib.SMTPResponseException as e:
                    reply = f"{e.smtp_code} {e.smtp_error.decode()}"
                assert (reply == errors.LineTooLong().smtp_reply) == refused, reply
    finally:
        controller.stop()


def test_data_reader_unstuffs_a_dot_after_a_line_end_split_between_reads(settings, make) -> None:
    # When the network delivers "…\r\n." and the rest later, the reader's piece can end between the
    # "\r" and the "\n": the dot that starts the next line is still removed.
    import socket
    import time

    from gateway.addresses import format_reply_address
    from storage.mail_log import InboundEmail
    from storage.tokens import reply_token_for

    ws = make.workspace()
    bob = make.client(ws, "bob@acme.test")
    token = reply_token_for(bob, make.thread(ws), secret_key=settings.secret_key).token
    address = format_reply_address(token, settings.reply_domain)
    controller = start_gateway(settings.replace(max_line_length=64))
    try:
        with socket.create_connection(("127.0.0.1", controller.port), timeout=10) as sock:
            replies = sock.makefile("rb")
            replies.readline()
            for command in (b"EHLO client.test", b"MAIL FROM:<bob@acme.test>", f"RCPT TO:<{address}>".encode(),
                            b"DATA"):
                sock.sendall(command + b"\r\n")
                line = replies.readline()
                while line[3:4] == b"-":
                    line = replies.readline()
            assert line.startswith(b"354")
            first = b"Subject: dots\r\n\r\n" + b"a" * 50 + b"\r\n."  # 69 bytes, no ".\r\n" in them
            sock.sendall(first)
            time.sleep(0.3)  # the reader takes all but the last two bytes: its piece ends with "\r"
            sock.sendall(b".stuffed\r\n.\r\n")
            assert replies.readline()[:1] in (b"2", b"5")
    finally:
        controller.stop()
    row = InboundEmail.select().order_by(InboundEmail.id.desc()).get()
    assert read_raw_mail(row.raw_key, FileStore(settings.effective_files_dir)) == (
        b"Subject: dots\r\n\r\n" + b"a" * 50 + b"\r\n.stuffed\r\n")


def test_a_big_mail_is_parsed_from_its_text_after_it_is_stored(settings, make) -> None:
    # A mail of several MB is stored, then its bytes are released and it is parsed from the decoded text:
    # the stored raw mail, the post, its attachment and the content-based duplicate check are unchanged.
    import base64

    from gateway.addresses import format_reply_address
    from gateway.errors import Accepted, Duplicate
    from gateway.inbound.authenticate import resolve_recipient
    from gateway.inbound.mail import InboundMail
    from gateway.inbound.parse import RELEASE_RAW_FROM
    from storage.mail_log import InboundEmail
    from storage.tokens import reply_token_for

    ws = make.workspace()
    bob = make.client(ws, "bob@acme.test")
    thread = make.thread(ws)
    token = reply_token_for(bob, thread, secret_key=settings.secret_key).token
    address = format_reply_address(token, settings.reply_domain)
    blob = os.urandom(RELEASE_RAW_FROM)
    encoded = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    raw = (b"\r\nFrom: Bob <bob@acme.test>\r\nTo: " + address.encode() + b"\r\nSubject: Big file\r\n"  # no Message-ID
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nHere it is, caf\xc3\xa9.\r\n--XX\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--XX--\r\n")

    def deliver() -> object:
        mail = InboundMail(raw=bytearray(raw), settings=settings, mail_from="bob@acme.test",
                           recipients=[resolve_recipient(address, settings)])
        return run_pipeline(mail)

    assert isinstance(deliver(), Accepted)
    [row] = list(InboundEmail.select())
    store = FileStore(settings.effective_files_dir)
    assert read_raw_mail(row.raw_key, store) == raw
    [message] = list(Message.select().where(Message.thread == thread.id))
    assert message.text == "Here it is, café."
    [attachment] = list(message.attachments)
    assert (attachment.name, attachment.size) == ("big.bin", len(blob)) and store.read(attachment.storage_key) == blob
    assert isinstance(deliver(), Duplicate)  # the same content, without a Message-ID: the same mail


@pytest.mark.slow
def test_serve_with_two_processes_on_one_port(settings, make) -> None:
    # serve(processes=2) starts a second gateway process on the same port (SO_REUSEPORT): replies sent
    # over many connections are all posted once, and stopping serve stops the other process too.
    import asyncio
    import multiprocessing
    import smtplib
    import threading
    import time

    from procs import free_port

    from gateway.addresses import format_reply_address
    from gateway.smtp.serve import serve
    from storage.tokens import reply_token_for

    ws = make.workspace()
    bob = make.client(ws, "bob@acme.test")
    thread = make.thread(ws)
    token = reply_token_for(bob, thread, secret_key=settings.secret_key).token
    address = format_reply_address(token, settings.reply_domain)
    port = free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=loop.run_until_complete,
                              args=(serve(settings.replace(smtp_port=port, loop_posts=100), stop, processes=2),),
                              daemon=True)  # twelve quick replies: more than the loop breaker lets through
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not multiprocessing.active_children():
            time.sleep(0.05)
        [other] = multiprocessing.active_children()
        for i in range(12):
            raw = (f"From: bob@acme.test\r\nTo: {address}\r\nSubject: Re: hi\r\nMessage-ID: <p{i}@acme.test>\r\n\r\n"
                   f"Reply number {i}.\r\n").encode()
            for _ in range(100):
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                        client.sendmail("bob@acme.test", [address], raw)
                    break
                except (ConnectionError, smtplib.SMTPServerDisconnected):
                    time.sleep(0.1)  # not listening yet
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(60)
    assert not runner.is_alive() and not other.is_alive()
    texts = sorted(m.text for m in Message.select().where(Message.thread == thread.id))
    assert texts == sorted(f"Reply number {i}." for i in range(12))


def test_only_small_simple_mails_are_processed_on_the_event_loop() -> None:
    # A reply is light; as many nested multiparts as 64 KB holds (costly for the parsers to give up on) is
    # not, whatever the case of its boundary parameters, and neither is a mail over LOOP_MAX_BYTES.
    from gateway.smtp.threads import LOOP_MAX_BYTES, light

    assert light(eml("with_attachment.eml", to="reply+x@reply.test"))
    nested = b"".join(b'Content-Type: multipart/mixed; BOUNDARY="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(1000))
    assert len(nested) <= LOOP_MAX_BYTES and not light(nested)
    assert not light(b"x" * (LOOP_MAX_BYTES + 1))
