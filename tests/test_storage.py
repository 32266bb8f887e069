"""Storage: migrations from an empty database, models and their constraints, posting side effects,
search, and the file store."""
from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from config import Settings
from storage import db, migrations
from storage.directory import DirectoryError, add_user, create_workspace, get_user, set_access, thread_of
from storage.files import FileStore, TooLarge, safe_filename
from storage.mail_log import InboundEmail, OutboxEmail, ThreadEvent
from storage.models import Message, ReplyToken, Thread, User, utcnow
from storage.posting import PostingError, post_message
from storage.search import search_messages
from storage.tokens import (
    create_login_token,
    find_live_reply_token,
    hash_secret,
    redeem_login_token,
    reply_token_for,
)
from storage.visibility import Viewer

KEY = "test-secret-key"


def test_migrate_from_empty_database_is_idempotent(database: object) -> None:
    # The fixture migrated an empty database; migrating again applies nothing and the version is the latest.
    assert migrations.current_version() == migrations.LATEST_VERSION
    assert migrations.migrate() == []


def test_concurrent_migrations_apply_once(tmp_path: Path) -> None:
    # Several processes starting at once upgrade the schema exactly once (threads with their own connections).
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'race.db'}")
    db.bind(settings)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(migrations.migrate())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrations.MIGRATIONS)]


def test_a_new_sqlite_file_locked_by_another_process_is_waited_for(tmp_path: Path) -> None:
    # Processes started together on a new SQLite file: one writes before the file is in WAL mode; the
    # others' connection check waits for it instead of failing with "database is locked".
    import sqlite3

    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    db.bind(Settings(data_dir=tmp_path, database_url=f"sqlite:///{path}"))
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        db.check_connection(wait=30)
    finally:
        release.join()
        other.close()
    assert db.database.is_closed()
    (tmp_path / "a-file").write_text("not a folder")  # (a missing folder would be created, mode 0700)
    with pytest.raises(db.DatabaseUnavailable, match="cannot open the database"):
        db.bind(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a-file' / 'x.db'}"))
        db.check_connection()


def test_workspace_gets_one_thread_and_unique_slug(make: object) -> None:
    # A workspace is created with its one thread; slugs are unique, made from the name when not given.
    a = create_workspace("Acme Co")
    b = create_workspace("Acme Co")
    assert (a.slug, b.slug) == ("acme-co", "acme-co-2")
    assert Thread.select().where(Thread.workspace == a).count() == 1
    with pytest.raises(DirectoryError, match="already exists"):
        create_workspace("Other", slug="acme-co")
    with pytest.raises(DirectoryError, match="not a valid slug"):
        create_workspace("Other", slug="Bad Slug!")


def test_emails_are_unique_whatever_the_case(make: object) -> None:
    # Email addresses are stored lower-cased, so "Kim@X" and "kim@x" are the same person.
    add_user("Kim@Agency.test", "Kim", "team")
    assert get_user("KIM@agency.TEST").email == "kim@agency.test"
    with pytest.raises(DirectoryError, match="already exists"):
        add_user("kim@agency.test", "Kim again", "team")
    with pytest.raises(DirectoryError, match="not a valid email"):
        add_user("nobody", "No One", "team")


def test_post_writes_message_outbox_and_event_together(make) -> None:
    # One post writes the message, one outbox row per person to notify, and one thread event.
    ws = make.workspace()
    kim, bob = make.team(), make.client(ws)
    make.client(ws, access=False)
    message = post_message(make.thread(ws), kim, "Hello **Bob**")
    assert message.html == "<p>Hello <strong>Bob</strong></p>\n"
    assert [r.to_address for r in OutboxEmail.select().where(OutboxEmail.message == message)] == [bob.email]
    assert ThreadEvent.select().where(ThreadEvent.message == message).count() == 1


def test_post_refuses_what_cannot_be_posted(make) -> None:
    # Empty posts, internal notes by clients and posts without access are refused with a sentence.
    ws = make.workspace()
    thread = make.thread(ws)
    bob, eve = make.client(ws), make.client(ws, access=False)
    with pytest.raises(PostingError, match="needs some text"):
        post_message(thread, bob, "   ")
    with pytest.raises(PostingError, match="Only team members"):
        post_message(thread, bob, "x", internal=True)
    with pytest.raises(PostingError, match="no Messages access"):
        post_message(thread, eve, "x")
    assert Message.select().count() == 0


def test_markdown_is_sanitized(make) -> None:
    # Script tags, event handlers and javascript: links never survive rendering.
    ws = make.workspace()
    m = post_message(make.thread(ws), make.team(),
                     "<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)> <svg onload=x>")
    assert "<script" not in m.html and 'href="javascript' not in m.html and "<img" not in m.html
    assert "<svg" not in m.html
    # The same with the payload in a real link: the href is dropped, the text stays.
    link = post_message(make.thread(ws), make.team(), "[click](javascript:alert(1)) <b onmouseover=x>hi</b>")
    assert "href" not in link.html and "<b " not in link.html


def test_search_finds_words_and_respects_visibility(make) -> None:
    # Search finds messages by word prefix; a client's search never finds an internal note.
    ws = make.workspace()
    thread = make.thread(ws)
    kim, bob = make.team(), make.client(ws)
    post_message(thread, kim, "The budget for the homepage is approved")
    post_message(thread, kim, "Internal: budget is tight", internal=True)
    post_message(thread, kim, "Unrelated news")
    team_hits = [m.text for m in search_messages(Viewer.of(kim), thread, "budg")]
    client_hits = [m.text for m in search_messages(Viewer.of(bob), thread, "budget")]
    assert len(team_hits) == 2
    assert client_hits == ["The budget for the homepage is approved"]
    assert list(search_messages(Viewer.of(kim), thread, '"; DROP TABLE message; --')) == []


def test_reply_tokens_are_random_stable_and_revocable(make) -> None:
    # A person's reply token is 128-bit hex, reused while live, looked up case-insensitively, revoked with access.
    ws = make.workspace()
    thread = make.thread(ws)
    bob = make.client(ws)
    token = reply_token_for(bob, thread, secret_key=KEY)
    assert len(token.token) == 32 and token.token == token.token.lower()
    assert reply_token_for(bob, thread, secret_key=KEY).id == token.id
    assert find_live_reply_token(token.token.upper()).id == token.id
    with pytest.raises(ValueError):
        reply_token_for(bob, thread, internal=True, secret_key=KEY)
    set_access(bob, ws, False)
    assert find_live_reply_token(token.token) is None
    assert ReplyToken.get_by_id(token.id).revoked_at is not None


def test_login_token_is_single_use(make) -> None:
    # A sign-in link works once.
    bob = make.client(make.workspace())
    secret = create_login_token(bob, 15)
    assert redeem_login_token(secret).id == bob.id
    assert redeem_login_token(secret) is None
    assert redeem_login_token("nonsense") is None


def test_file_store_is_content_addressed_and_limited(tmp_path: Path) -> None:
    # Bytes are stored under their SHA-256, once; a stream over the limit is refused and leaves nothing behind.
    store = FileStore(tmp_path / "files")
    a = store.put_stream(io.BytesIO(b"hello" * 1000))
    b = store.put_bytes(b"hello" * 1000)
    assert a == b and store.read(a.key) == b"hello" * 1000 and a.size == 5000
    with pytest.raises(TooLarge):
        store.put_stream(io.BytesIO(b"x" * 100), limit=10)
    leftovers = [p for p in (tmp_path / "files").rglob("*") if p.is_file() and p.name.startswith(".incoming")]
    assert leftovers == []
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


@pytest.mark.parametrize("name,expected", [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("a\x00b.txt", "a_b.txt"),
    ("", "attachment"),
    ("...", "attachment"),
    ("report 2026.pdf", "report 2026.pdf"),
    ("invoice\u202egnp.exe", "invoicegnp.exe"),
    ("zero\u200bwidth.txt", "zerowidth.txt"),
    ("x" * 300 + ".pdf", "x" * 140 + ".pdf"),
])
def test_safe_filename(name: str, expected: str) -> None:
    # Client file names never become paths: directories, NUL and control characters are removed.
    assert safe_filename(name) == expected


def test_thread_of_workspace(make) -> None:
    ws = make.workspace("Thread Test")
    assert thread_of(ws).workspace_id == ws.id


def test_bare_web_addresses_become_safe_links(make) -> None:
    # A pasted https:// address is clickable; a javascript: "address" never becomes a link.
    ws = make.workspace()
    m = post_message(make.thread(ws), make.team(), "See https://example.com/brief?v=2 and javascript:alert(1)")
    assert '<a href="https://example.com/brief?v=2" rel="noopener noreferrer nofollow">' in m.html
    assert 'href="javascript' not in m.html


def test_migration_3_upgrades_a_version_2_database(make) -> None:
    # A database made by version 2 (a thread's last activity stored on its row, two more indexes, no
    # raw_mail table) is brought to version 3 with its data kept.
    database = db.database
    thread = make.thread(make.workspace("Old Co"))
    database.execute_sql('ALTER TABLE "thread" ADD COLUMN "last_activity_at" TIMESTAMP')
    database.execute_sql('CREATE INDEX "thread_event_thread_id" ON "thread_event" ("thread_id")')
    database.execute_sql('CREATE INDEX "inbound_email_received_at" ON "inbound_email" ("received_at")')
    database.execute_sql('DROP TABLE "raw_mail"')
    migrations.SchemaVersion.delete().where(migrations.SchemaVersion.version >= 3).execute()
    assert migrations.current_version() == 2

    assert migrations.migrate() == [v for v, _ in migrations.MIGRATIONS if v >= 3]
    assert "last_activity_at" not in {c.name for c in database.get_columns("thread")}
    indexes = {i.name for table in ("message", "thread_event", "inbound_email") for i in database.get_indexes(table)}
    assert not indexes & {"thread_event_thread_id", "inbound_email_received_at"} and "message_thread_id" in indexes
    assert database.table_exists("raw_mail") and Thread.get_by_id(thread.id).workspace.name == "Old Co"


def test_migration_4_drops_the_never_written_last_used_at(make) -> None:
    # A database made by version 3 has reply_token.last_used_at; version 4 drops it and keeps the tokens.
    database = db.database
    ws = make.workspace("Old Co")
    token = reply_token_for(make.client(ws), make.thread(ws), secret_key=KEY)
    database.execute_sql('ALTER TABLE "reply_token" ADD COLUMN "last_used_at" TIMESTAMP')
    migrations.SchemaVersion.delete().where(migrations.SchemaVersion.version >= 4).execute()

    assert migrations.migrate()[0] == 4
    assert "last_used_at" not in {c.name for c in database.get_columns("reply_token")}
    assert ReplyToken.get_by_id(token.id).token_hash == hash_secret(token.token)
    assert migrations.migrate() == []


def test_migration_5_adds_roles_and_keeps_old_team_members_admins(make) -> None:
    # A version 3 database (no team roles, sessions or agency): its team members all become admins.
    database = db.database
    kim = make.team(email="kim@old.test")
    database.execute_sql('DROP TABLE "web_session"')
    database.execute_sql('DROP TABLE "agency"')
    database.execute_sql('ALTER TABLE "user" DROP COLUMN "team_role"')
    database.execute_sql('ALTER TABLE "workspace" DROP COLUMN "archived_at"')
    migrations.SchemaVersion.delete().where(migrations.SchemaVersion.version >= 4).execute()

    assert migrations.migrate()[0] == 4
    assert User.get_by_id(kim.id).team_role == "admin"
    assert {"archived_at"} <= {c.name for c in database.get_columns("workspace")}
    assert database.table_exists("web_session") and database.table_exists("agency")


def test_migration_8_hashes_stored_reply_tokens_and_old_addresses_keep_working(make) -> None:
    # A version-3 database (with reply_token.last_used_at, which version 4 drops) kept reply tokens and the
    # inbound log's reply_token in plain text: after the upgrade only hashes are stored, addresses already
    # handed out still resolve, the log's rcpt_to keeps a hint only, and new mail gets a token derived from
    # the secret key.
    database = db.database
    ws = make.workspace("Old Co")
    bob = make.client(ws)
    database.execute_sql('DROP INDEX IF EXISTS "reply_token_token_hash"')
    database.execute_sql('ALTER TABLE "reply_token" RENAME COLUMN "token_hash" TO "token"')
    database.execute_sql('ALTER TABLE "reply_token" DROP COLUMN "salt"')
    database.execute_sql('ALTER TABLE "reply_token" ADD COLUMN "last_used_at" TIMESTAMP')
    old = "0123456789abcdef0123456789abcdef"
    param = "?" if db.is_sqlite() else "%s"
    database.execute_sql(
        f'INSERT INTO "reply_token" ("token", "user_id", "thread_id", "internal", "created_at") '
        f"VALUES ({param}, {param}, {param}, {param}, {param})", (old, bob.id, make.thread(ws).id, False, utcnow()))
    InboundEmail.create(outcome="accepted", reply_token=old, rcpt_to=f"reply+{old}@reply.test")
    migrations.SchemaVersion.delete().where(migrations.SchemaVersion.version >= 4).execute()

    assert migrations.migrate() == [v for v, _ in migrations.MIGRATIONS if v >= 4]
    dump = [str(v) for row in database.execute_sql('SELECT * FROM "reply_token"').fetchall() for v in row]
    dump += [str(v) for row in database.execute_sql('SELECT * FROM "inbound_email"').fetchall() for v in row]
    assert not any(old in value for value in dump)
    assert find_live_reply_token(old).user_id == bob.id
    assert InboundEmail.get().rcpt_to == "reply+0123\u2026@reply.test"
    assert InboundEmail.get().reply_token == hash_secret(old)
    fresh = reply_token_for(bob, make.thread(ws), secret_key=KEY)
    assert fresh.token != old and find_live_reply_token(fresh.token).id == fresh.id


def test_reply_tokens_are_rebuilt_from_the_key_never_read_from_the_database(make) -> None:
    # The database holds a salt and a hash; the same key rebuilds the same token, another key cannot (and a
    # new token is issued under it while the old address keeps working).
    ws = make.workspace()
    bob = make.client(ws)
    first = reply_token_for(bob, make.thread(ws), secret_key=KEY)
    row = ReplyToken.get_by_id(first.id)
    assert first.token not in (row.token_hash, row.salt) and row.token_hash == hash_secret(first.token)
    assert reply_token_for(bob, make.thread(ws), secret_key=KEY).token == first.token
    other = reply_token_for(bob, make.thread(ws), secret_key="another key")
    assert other.id != first.id and find_live_reply_token(first.token).id == first.id
