"""The fast paths of the ingest pipeline give the same answers as the straightforward code they replace.

- who_can_see() and audience() (one query each) agree with can_see() for every kind of viewer and message.
- Statements compiled once (storage/db.py) write what peewee's Model.insert() writes, defaults included.
- Markdown rendering with the quick link pretest gives the same HTML as linkify-it's own pretest.
- The file store writes durable, content-addressed files, finds files of the older two-level layout,
  and never leaves a partial file under a key's name.
"""
from __future__ import annotations

import itertools
import os

import pytest
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt

from storage.db import PreparedInsert, PreparedQuery, insert_rows
from storage.directory import set_access, set_following
from storage.files import FileStore, TooLarge
from storage.mail_log import NOTIFICATION, OutboxEmail, ThreadEvent
from storage.models import CLIENT, TEAM, Membership, Message, Thread, User
from storage.posting import post_message
from storage.rendering import render_markdown, sanitize_html
from storage.visibility import Viewer, audience, can_open_thread, can_see, who_can_see


@pytest.fixture
def people(make):
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


def test_who_can_see_agrees_with_can_see_for_every_viewer(people) -> None:
    # who_can_see answers, in one query per role, exactly what can_see answers viewer by viewer.
    ws, thread, other_thread, p = people
    everyone = list(p.values())
    for message in _messages(thread, p) + _messages(other_thread, p):
        expected = [u.id for u in everyone if can_see(Viewer.of(u), message)]
        assert [u.id for u in who_can_see(message, everyone)] == sorted(expected)


def test_who_can_see_follows_access_changes(people) -> None:
    # The rule is evaluated when asked: revoking access hides client messages from that client at once.
    ws, thread, _, p = people
    message = Message.create(thread=thread, author=p["team"], visibility="client", text="x", html="x",
                             source="web")
    assert p["client"].id in [u.id for u in who_can_see(message, [p["client"]])]
    set_access(p["client"], ws, False)
    assert who_can_see(message, [p["client"]]) == []
    assert not can_see(Viewer.of(p["client"]), message)


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


def test_audience_is_the_candidates_that_can_see(people) -> None:
    # One query gives the same people, in the same order, as candidates filtered through can_see().
    ws, thread, other_thread, p = people
    for message in _messages(thread, p) + _messages(other_thread, p):
        expected = _audience_reference(message)
        assert [u.id for u in audience(message)] == expected
        assert [u.id for u in audience(message, thread=Thread.get_by_id(message.thread_id),
                                       author=User.get_by_id(message.author_id))] == expected
    internal = Message.create(thread=thread, author=p["team"], visibility="internal", text="x", html="x",
                              source="web")
    assert not any(u.role == CLIENT for u in audience(internal))


def test_can_open_thread_for_every_viewer(people) -> None:
    # The compiled statements of can_open_thread answer as the rule says.
    ws, thread, other_thread, p = people
    opens = {name for name, u in p.items() if can_open_thread(Viewer.of(u), thread)}
    assert opens == {"team", "team2", "team_unfollowed", "team_muted", "client", "client2", "client_muted",
                     "client_unfollowed"}
    assert not can_open_thread(Viewer(user_id=p["team"].id, role="nobody"), thread)


def test_post_message_writes_every_row_with_defaults(people) -> None:
    # A post through the compiled statements leaves the rows peewee's create() would: defaults filled in.
    ws, thread, _, p = people
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
    assert Thread.get_by_id(thread.id).last_activity_at == message.created_at


def test_insert_rows_in_batches(people) -> None:
    # Many rows go in statements of at most `batch` rows, all of them written.
    ws, thread, _, p = people
    message = post_message(thread, p["client"], "Hi")
    before = OutboxEmail.select().count()
    insert_rows(OutboxEmail, ("kind", "recipient", "to_address", "thread", "message"),
                [(NOTIFICATION, p["team"].id, f"a{i}@x.test", thread.id, message.id) for i in range(37)], batch=16)
    assert OutboxEmail.select().count() == before + 37


def test_prepared_insert_ignores_conflicts(people) -> None:
    # ON CONFLICT DO NOTHING: a row the unique index refuses is not written, and no id comes back.
    ws, thread, _, p = people
    insert = PreparedInsert(User, ("email", "name", "role"), ignore_conflicts=True)
    first = insert.execute(("same@x.test", "A", TEAM))
    assert first is not None and User.get_by_id(first).name == "A"
    assert insert.execute(("same@x.test", "B", TEAM)) is None
    assert User.select().where(User.email == "same@x.test").count() == 1


def test_prepared_query_placeholders_and_constants(people) -> None:
    # Placeholders take new values on every run; constants compiled into the statement stay.
    ws, thread, _, p = people
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


@pytest.mark.parametrize("text", MARKDOWN_SAMPLES)
def test_markdown_quick_link_pretest_changes_nothing(text: str) -> None:
    # The quick pretest only skips linkify-it's slow one where it could not match: same HTML either way.
    reference = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True}).enable("linkify")
    reference.linkify = LinkifyIt()
    assert render_markdown(text) == sanitize_html(reference.render(text))


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
