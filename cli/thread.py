"""`workrate post | thread | search | login-link | reply-address`: the thread of a workspace from the
command line, seen as a person sees it (or whole, as the operator), with the same JSON as the API.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.context import App, UserError, handle_errors, pass_app, with_db
from config import Settings


def _viewer(email: str | None) -> Any:
    """The person named by --as, or the operator (the whole thread) without it."""
    from storage.directory import get_user
    from storage.visibility import Viewer

    return Viewer.operator() if email is None else Viewer.of(get_user(email))


@click.command("post")
@click.argument("slug")
@click.argument("text")
@click.option("--as", "as_email", required=True, metavar="EMAIL", help="Who posts.")
@click.option("--internal", is_flag=True, help="A team-only internal note, never shown to clients.")
@click.option("--attach", "attach", multiple=True, type=click.Path(dir_okay=False),
              help="A file to attach (repeatable).")
@pass_app
@handle_errors
def post(app: App, slug: str, text: str, as_email: str, internal: bool, attach: tuple[str, ...]) -> None:
    """Post TEXT (Markdown) to a workspace's thread as a person, with every effect of a web post."""
    import mimetypes

    from storage.db import database
    from storage.directory import get_user, get_workspace, thread_of
    from storage.files import FileStore
    from storage.posting import NewAttachment, post_message

    settings = app.open_db()
    store = FileStore(settings.effective_files_dir)
    with database.connection_context():
        ws, author = get_workspace(slug), get_user(as_email)
        files = []
        for path in attach:
            with open(path, "rb") as f:
                stored = store.put_stream(f, limit=settings.max_message_size)
            ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
            files.append(NewAttachment(name=Path(path).name, content_type=ctype, size=stored.size,
                                       sha256=stored.sha256, storage_key=stored.key))
        message = post_message(thread_of(ws), author, text, internal=internal, source="cli", attachments=files,
                               notify_delay=settings.notify_delay)
    click.echo(f"Posted message {message.id} to {ws.slug}" + (" (internal)." if internal else "."))


@click.command("thread")
@click.argument("slug")
@click.option("--as", "as_email", metavar="EMAIL",
              help="Show the thread as this person sees it (default: the whole thread).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_db
def thread_cmd(settings: Settings, slug: str, as_email: str | None, as_json: bool) -> None:
    """Show a workspace's thread, oldest first, as a person sees it."""
    from storage.directory import get_workspace, thread_of
    from storage.models import Message
    from storage.serialize import messages_json
    from storage.visibility import visible_messages

    ws = get_workspace(slug)
    thread = thread_of(ws)
    viewer = _viewer(as_email)
    messages = list(visible_messages(viewer, thread).order_by(Message.id))
    data = messages_json(messages, settings.effective_base_url, viewer)
    if as_json:
        click.echo(json.dumps({"workspace": ws.slug, "messages": data}, indent=2, ensure_ascii=False))
        return
    _print_messages(data)


def _print_messages(data: list[dict[str, Any]]) -> None:
    for m in data:
        mark = " [internal]" if m["visibility"] == "internal" else ""
        if m["deleted"]:
            mark += f" [deleted {m['deleted_at']}]"
        elif m["edited_at"]:
            mark += f" [edited {m['edited_at']}]"
        author = f"{m['author']['name']} <{m['author']['email']}>"
        click.echo(f"#{m['id']} {m['created_at']} {author} via {m['source']}{mark}")
        if m["deleted"]:
            continue
        for line in m["text"].splitlines() or [""]:
            click.echo(f"    {line}")
        for a in m["attachments"]:
            click.echo(f"    📎 {a['name']} ({a['size']} bytes) {a['url']}")


@click.command("search")
@click.argument("slug")
@click.argument("query")
@click.option("--as", "as_email", metavar="EMAIL", help="Search as this person (default: the whole thread).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_db
def search_cmd(settings: Settings, slug: str, query: str, as_email: str | None, as_json: bool) -> None:
    """Search a workspace's thread; a client's search never finds internal messages."""
    from storage.directory import get_workspace, thread_of
    from storage.search import search_messages
    from storage.serialize import messages_json

    ws = get_workspace(slug)
    thread = thread_of(ws)
    viewer = _viewer(as_email)
    messages = list(search_messages(viewer, thread, query).limit(200))
    messages.sort(key=lambda m: m.id)
    data = messages_json(messages, settings.effective_base_url, viewer)
    if as_json:
        click.echo(json.dumps({"workspace": ws.slug, "query": query, "messages": data}, indent=2, ensure_ascii=False))
        return
    if not data:
        click.echo("No messages match.")
    _print_messages(data)


@click.command("login-link")
@click.argument("email")
@with_db
def login_link(settings: Settings, email: str) -> None:
    """Print a one-time sign-in URL for a person (valid for LOGIN_LINK_MINUTES, single use)."""
    from storage.directory import get_user
    from storage.tokens import create_login_token

    u = get_user(email)
    if not u.active:
        raise UserError(f"{u.email} is deactivated.")
    secret = create_login_token(u, settings.login_link_minutes)
    click.echo(f"{settings.effective_base_url}/login/{secret}")


@click.command("reply-address")
@click.argument("slug")
@click.option("--as", "as_email", required=True, metavar="EMAIL", help="Whose reply address.")
@click.option("--internal", is_flag=True, help="A team member's internal-audience address.")
@with_db
def reply_address(settings: Settings, slug: str, as_email: str, internal: bool) -> None:
    """Print a person's live reply address for a thread, as their notifications carry it."""
    from gateway.addresses import format_reply_address
    from storage.directory import get_user, get_workspace, thread_of
    from storage.tokens import reply_token_for
    from storage.visibility import Viewer, can_open_thread

    ws, u = get_workspace(slug), get_user(as_email)
    if internal and not u.is_team:
        raise UserError("A client's reply address can never be internal.")
    thread = thread_of(ws)
    if not u.active or not can_open_thread(Viewer.of(u), thread):
        raise UserError(f"{u.email} has no Messages access to {ws.slug}, so has no reply address there.")
    token = reply_token_for(u, thread, internal=internal, secret_key=settings.secret_key)
    click.echo(format_reply_address(token.token, settings.reply_domain))


COMMANDS = [post, thread_cmd, search_cmd, login_link, reply_address]
