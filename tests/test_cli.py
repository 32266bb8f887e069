"""The `workrate` CLI contract: the forms and JSON shapes other tools rely on, and user errors that print
one sentence on stderr and exit 2, never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from storage import db, migrations

PG_URL = os.environ.get("WORKRATE_TEST_DATABASE_URL", "")

Run = Callable[..., Result]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {"WORKRATE_DATA_DIR": str(tmp_path / "var"), "WORKRATE_REPLY_DOMAIN": "reply.test",
           "WORKRATE_BASE_URL": "http://app.test", "WORKRATE_SECRET_KEY": "cli-test-secret-key-0123456789abcdef",
           "WORKRATE_LOG_LEVEL": "WARNING"}
    if PG_URL:
        env["WORKRATE_DATABASE_URL"] = PG_URL
        from config import Settings

        db.bind(Settings(data_dir=tmp_path, database_url=PG_URL))
        migrations.drop_everything()
    return env


@pytest.fixture
def run(env: dict[str, str]) -> Run:
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True, input: str | None = None) -> Result:
        result = runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output + result.stderr
        return result

    return invoke


@pytest.fixture
def acme(run: Run) -> str:
    slug = run("workspace", "create", "Acme Co").stdout.strip().splitlines()[-1]
    run("user", "add", "kim@agency.test", "--name", "Kim Lee", "--team")
    run("user", "add", "bob@acme.test", "--name", "Bob Stone", "--client", slug, "--messages-access")
    run("user", "add", "eve@acme.test", "--name", "Eve Park", "--client", slug)
    return slug


def test_workspace_create_prints_slug_last(run: Run) -> None:
    # `workspace create NAME [--slug]` prints the slug as its last line; `workspace list` shows it.
    assert run("workspace", "create", "Acme Co").stdout.strip().splitlines()[-1] == "acme-co"
    assert run("workspace", "create", "X", "--slug", "custom-1").stdout.strip().splitlines()[-1] == "custom-1"
    listed = run("workspace", "list").stdout
    assert "acme-co" in listed and "custom-1" in listed


def test_post_and_thread_json_shape(run: Run, acme: str, tmp_path: Path) -> None:
    # `post` then `thread --json` gives the documented shape, oldest first, attachments included.
    f = tmp_path / "brief.txt"
    f.write_bytes(b"hello file")
    run("post", acme, "--as", "kim@agency.test", "--attach", str(f), "First **bold** message")
    run("post", acme, "--as", "bob@acme.test", "Second")
    data = json.loads(run("thread", acme, "--json").stdout)
    assert data["workspace"] == acme
    first, second = data["messages"]
    assert set(first) >= {"id", "author", "visibility", "text", "html", "source", "created_at", "attachments",
                          "edited_at", "versions", "deleted", "deleted_at"}
    assert (first["edited_at"], first["versions"], first["deleted"], first["deleted_at"]) == (None, 0, False, None)
    assert first["author"] == {"email": "kim@agency.test", "name": "Kim Lee", "role": "team"}
    assert first["visibility"] == "client" and first["source"] == "cli"
    assert first["html"] == "<p>First <strong>bold</strong> message</p>\n"
    assert first["attachments"][0]["name"] == "brief.txt" and first["attachments"][0]["size"] == 10
    assert first["attachments"][0]["url"].startswith("http://app.test/attachments/")
    assert set(first["attachments"][0]) == {"name", "content_type", "size", "url"}
    assert second["text"] == "Second" and first["id"] < second["id"]


@pytest.mark.parametrize("name", ["report #2.pdf", "résumé 100%.txt", "a&b=c?.txt"])
def test_attachment_urls_in_thread_json_are_quoted(run: Run, acme: str, tmp_path: Path, name: str) -> None:
    # A name with #, %, ?, & or a space gives a URL whose last segment decodes back to that very name.
    f = tmp_path / name
    f.write_bytes(b"the report")
    run("post", acme, "--as", "kim@agency.test", "--attach", str(f), "The report")
    [attachment] = json.loads(run("thread", acme, "--json").stdout)["messages"][-1]["attachments"]
    parts = urlsplit(attachment["url"])
    assert (parts.query, parts.fragment) == ("", "") and " " not in attachment["url"]
    assert unquote(parts.path.rsplit("/", 1)[1]) == attachment["name"] == name.replace("?", "_")


def test_client_view_and_search_never_show_internal(run: Run, acme: str) -> None:
    # `thread --as CLIENT` and `search --as CLIENT` never include an internal note; the team sees it.
    run("post", acme, "--as", "kim@agency.test", "Homepage ready")
    run("post", acme, "--as", "kim@agency.test", "--internal", "Homepage budget is tight")
    team = json.loads(run("thread", acme, "--json").stdout)["messages"]
    client = json.loads(run("thread", acme, "--as", "bob@acme.test", "--json").stdout)["messages"]
    assert [m["visibility"] for m in team] == ["client", "internal"]
    assert [m["text"] for m in client] == ["Homepage ready"]
    found = json.loads(run("search", acme, "homepage", "--as", "bob@acme.test", "--json").stdout)["messages"]
    assert [m["text"] for m in found] == ["Homepage ready"]
    found_team = json.loads(run("search", acme, "homepage", "--json").stdout)["messages"]
    assert len(found_team) == 2
    no_access = json.loads(run("thread", acme, "--as", "eve@acme.test", "--json").stdout)["messages"]
    assert no_access == []


def test_thread_json_says_edited_and_deleted_through_the_rule(run: Run, acme: str, tmp_path: Path) -> None:
    # Edits and deletes show in `thread --json` and `search --json` (edited_at, versions, deleted): a deleted
    # message keeps its place with no text and no files; a client's view never counts or shows an internal note.
    from storage.db import database
    from storage.models import Message, User
    from storage.posting import delete_message, edit_message

    f = tmp_path / "brief.txt"
    f.write_bytes(b"hello file")
    run("post", acme, "--as", "kim@agency.test", "Homepage draft")
    run("post", acme, "--as", "kim@agency.test", "--internal", "Homepage budget")
    run("post", acme, "--as", "kim@agency.test", "--attach", str(f), "Homepage brief")
    with database.connection_context():
        kim = User.get(User.email == "kim@agency.test")
        draft, budget, brief = Message.select().order_by(Message.id)
        edit_message(draft, kim, "Homepage final")
        edit_message(budget, kim, "Homepage budget, revised")
        delete_message(brief, kim)
    team = json.loads(run("thread", acme, "--json").stdout)["messages"]
    assert [(m["versions"], m["deleted"], bool(m["edited_at"])) for m in team] == [
        (1, False, True), (1, False, True), (0, True, False)]
    assert (team[2]["text"], team[2]["html"], team[2]["attachments"]) == ("", "", [])
    assert team[2]["deleted_at"].endswith("Z")
    client = json.loads(run("thread", acme, "--as", "bob@acme.test", "--json").stdout)["messages"]
    assert [(m["text"], m["versions"], m["deleted"]) for m in client] == [("Homepage final", 1, False), ("", 0, True)]
    assert "budget" not in json.dumps(client).lower()
    found = json.loads(run("search", acme, "homepage", "--as", "bob@acme.test", "--json").stdout)["messages"]
    assert [m["text"] for m in found] == ["Homepage final"]
    shown = run("thread", acme, "--as", "bob@acme.test").stdout
    assert "[edited " in shown and "[deleted " in shown and "brief" not in shown


def test_workspace_list_dates_the_newest_message(run: Run, acme: str) -> None:
    # The operator's list dates a workspace by its newest message, an internal note included.
    run("post", acme, "--as", "kim@agency.test", "Homepage ready")
    run("post", acme, "--as", "kim@agency.test", "--internal", "Homepage budget is tight")
    newest = json.loads(run("thread", acme, "--json").stdout)["messages"][-1]["created_at"]
    [listed] = [w for w in json.loads(run("workspace", "list", "--json").stdout) if w["slug"] == acme]
    assert listed["last_activity_at"] == newest


def test_reply_address_is_stable_and_internal_for_team_only(run: Run, acme: str) -> None:
    # `reply-address` prints the person's live address; --internal only for the team; revoked access ends it.
    a = run("reply-address", acme, "--as", "bob@acme.test").stdout.strip()
    assert a.startswith("reply+") and a.endswith("@reply.test")
    assert run("reply-address", acme, "--as", "bob@acme.test").stdout.strip() == a
    internal = run("reply-address", acme, "--as", "kim@agency.test", "--internal").stdout.strip()
    assert internal != run("reply-address", acme, "--as", "kim@agency.test").stdout.strip()
    refused = run("reply-address", acme, "--as", "bob@acme.test", "--internal", ok=False)
    assert refused.exit_code == 2 and "never be internal" in refused.stderr
    run("user", "revoke", "bob@acme.test", acme)
    assert run("reply-address", acme, "--as", "bob@acme.test", ok=False).exit_code == 2
    run("user", "grant", "bob@acme.test", acme)
    assert run("reply-address", acme, "--as", "bob@acme.test").stdout.strip() != a


def test_login_link_prints_a_url(run: Run, acme: str) -> None:
    # `login-link EMAIL` prints a one-time sign-in URL on the base URL.
    url = run("login-link", "bob@acme.test").stdout.strip()
    assert url.startswith("http://app.test/login/") and len(url) > 40


def test_outbox_lists_queued_notifications(run: Run, acme: str) -> None:
    # `outbox --json` lists the notification the post queued for the client with access.
    run("post", acme, "--as", "kim@agency.test", "Hello")
    rows = json.loads(run("outbox", "--json").stdout)
    assert [(r["to"], r["status"], r["kind"]) for r in rows] == [("bob@acme.test", "pending", "notification")]


@pytest.mark.parametrize("args,needle", [
    (("post", "no-such", "--as", "kim@agency.test", "hi"), "no workspace"),
    (("post", "acme-co", "--as", "nobody@x.test", "hi"), "no user"),
    (("user", "add", "kim@agency.test", "--name", "Kim", "--team"), "already exists"),
    (("user", "add", "new@x.test", "--name", "N"), "exactly one of --team or --client"),
    (("user", "add", "new@x.test", "--name", "N", "--client", "nope"), "no workspace"),
    (("user", "grant", "kim@agency.test", "acme-co"), "team member"),
    (("post", "acme-co", "--as", "eve@acme.test", "hi"), "no Messages access"),
    (("post", "acme-co", "--as", "bob@acme.test", "--internal", "hi"), "Only team members"),
    (("post", "acme-co", "--as", "kim@agency.test", "--attach", "/no/such/file", "hi"), "No such file"),
    (("workspace", "create", "X", "--slug", "Bad Slug"), "not a valid slug"),
    (("thread", "acme-co", "--bogus-flag"), "No such option"),
])
def test_user_errors_exit_2_with_one_sentence(run: Run, acme: str, args: tuple[str, ...], needle: str) -> None:
    # A user error prints a clear sentence on stderr and exits 2, with no traceback.
    result = run(*args, ok=False)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_configuration_exits_2_naming_the_variable(run: Run, env: dict[str, str]) -> None:
    # A bad setting stops the command with a sentence naming the variable.
    env["WORKRATE_SMTP_PORT"] = "99999"
    result = run("workspace", "list", ok=False)
    assert result.exit_code == 2 and "WORKRATE_SMTP_PORT" in result.stderr and "Traceback" not in result.stderr


def test_every_command_has_help(run: Run) -> None:
    # Every subcommand answers --help.
    def walk(group, path):
        for name, cmd in group.commands.items():
            yield path + [name]
            if hasattr(cmd, "commands"):
                yield from walk(cmd, path + [name])

    for path in walk(cli, []):
        assert "Usage:" in run(*path, "--help").stdout


def test_installed_console_script_reports_errors_without_traceback(env: dict[str, str]) -> None:
    # The real `workrate` executable (as installed) exits 2 with a sentence for an unknown workspace.
    exe = Path(sys.executable).with_name("workrate")
    if not exe.exists():
        pytest.skip("the workrate console script is not installed next to this Python")
    proc = subprocess.run([str(exe), "thread", "nope"], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "Error: There is no workspace with the slug 'nope'."


@pytest.mark.slow
def test_smtp_with_two_processes_serves_one_port_and_stops_cleanly(env: dict[str, str], run: Run) -> None:
    # `workrate smtp --processes 2` answers on its port from two processes and all of them stop on SIGTERM.
    import signal
    import smtplib
    import time

    from procs import free_port

    port = free_port()
    run("init-db")
    exe = Path(sys.executable).with_name("workrate")
    proc = subprocess.Popen([str(exe), "smtp", "--processes", "2"], env={**os.environ, **env,
                            "WORKRATE_SMTP_PORT": str(port)}, start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                    assert client.ehlo()[0] == 250
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "the gateway did not start"
                time.sleep(0.2)
        def children() -> list[str]:  # processes started by any thread of the gateway
            return [c for t in Path(f"/proc/{proc.pid}/task").iterdir() for c in (t / "children").read_text().split()]

        while not children():  # the second gateway process
            assert time.time() < deadline, "no second gateway process"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
