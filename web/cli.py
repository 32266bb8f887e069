"""`workrate`: the command line of WorkRate Messages (click, Flask's own CLI library).

Every user error prints one sentence on stderr and exits 2; no traceback ever reaches the user.
The forms and JSON shapes here are a contract other tools rely on: extend them, never change them.
"""
from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from config import ConfigError, Settings, load_settings

log = logging.getLogger("workrate")

USER_ERROR = 2


class UserError(click.ClickException):
    exit_code = USER_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class App:
    """What every command shares: the settings, loaded once, and the database, bound on demand."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._db_ready = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            logging.basicConfig(level=self._settings.log_level,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return self._settings

    def open_db(self) -> Settings:
        """Binds the database, creating or upgrading the schema when needed."""
        from storage import db, migrations

        settings = self.settings
        if not self._db_ready:
            db.bind(settings)
            db.check_connection()
            with db.database.connection_context():
                behind = migrations.current_version() < migrations.LATEST_VERSION
            if behind:
                migrations.migrate()
            self._db_ready = True
        return settings


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns the errors a user can cause into one clear sentence and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from storage.db import DatabaseUnavailable
        from storage.directory import DirectoryError
        from storage.posting import PostingError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, DirectoryError, PostingError, DatabaseUnavailable) as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"{e.strerror or e}{': ' + str(e.filename) if e.filename else ''}.") from None

    return wrapper


pass_app = click.make_pass_decorator(App, ensure=True)


def db_command(group: click.Group, *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """A command that runs with the database bound, inside one connection."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        @pass_app
        @handle_errors
        def wrapper(app: App, *a: Any, **kw: Any) -> Any:
            from storage.db import database

            settings = app.open_db()
            with database.connection_context():
                return fn(settings, *a, **kw)

        return group.command(*args, **kwargs)(wrapper)

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """WorkRate Messages: one conversation thread per client workspace, with replies by email.

    Settings come from WORKRATE_* environment variables over config/defaults.toml (see README.md).
    """


def main() -> None:
    try:
        cli.main(prog_name="workrate")
    except KeyboardInterrupt:
        sys.exit(130)


# ---------------------------------------------------------------------------------------------------
# Running the product


@cli.command("init-db")
@pass_app
@handle_errors
def init_db(app: App) -> None:
    """Create or upgrade the database schema (other commands do this too when needed)."""
    from storage import db, migrations

    db.bind(app.settings)
    db.check_connection()
    applied = migrations.migrate()
    click.echo(f"Schema at version {migrations.LATEST_VERSION}" + (f" (applied {applied})." if applied else "."))


@cli.command("run")
@click.option("--demo", is_flag=True, help="Add a sample workspace and people, and print sign-in links.")
@pass_app
@handle_errors
def run_all(app: App, demo: bool) -> None:
    """Run everything in one process: SMTP gateway, web app and outgoing-mail worker."""
    settings = app.open_db()
    if demo:
        from web.demo import create_demo

        create_demo(settings, echo=click.echo)
    else:
        from web.setup import announce_setup

        announce_setup(settings, echo=click.echo)  # on a database without a team: the setup URL
    from web.processes import run_roles

    run_roles(settings, smtp=True, web=True, worker=True)


@cli.command("smtp")
@click.option("--processes", type=click.IntRange(min=0), default=None,
              help="Gateway processes sharing the port (SO_REUSEPORT); 0: one per CPU core. "
                   "Default: WORKRATE_SMTP_PROCESSES.")
@pass_app
@handle_errors
def run_smtp(app: App, processes: int | None) -> None:
    """Run the SMTP gateway alone (any number of them against PostgreSQL)."""
    from web.processes import run_roles

    settings = app.open_db()
    if processes is not None:
        settings = settings.replace(smtp_processes=processes)
    run_roles(settings, smtp=True)


@cli.command("web")
@pass_app
@handle_errors
def run_web(app: App) -> None:
    """Run the web app alone, on the production WSGI server."""
    from web.processes import run_roles

    run_roles(app.open_db(), web=True)


@cli.command("worker")
@pass_app
@handle_errors
def run_worker(app: App) -> None:
    """Run the outgoing-mail worker alone (several may run at once)."""
    from web.processes import run_roles

    run_roles(app.open_db(), worker=True)


# ---------------------------------------------------------------------------------------------------
# Workspaces and people


@cli.group()
def workspace() -> None:
    """Create and list workspaces."""


@db_command(workspace, "create")
@click.argument("name")
@click.option("--slug", help="Short name used in URLs and the CLI (default: made from NAME).")
def workspace_create(settings: Settings, name: str, slug: str | None) -> None:
    """Create a workspace and its thread; prints the slug as the last line."""
    from storage.directory import create_workspace

    ws = create_workspace(name, slug)
    click.echo(f"Created workspace {ws.name!r}.")
    click.echo(ws.slug)


@db_command(workspace, "list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspace_list(settings: Settings, as_json: bool) -> None:
    """List workspaces with their last activity."""
    from storage.models import Thread, Workspace
    from storage.visibility import Viewer, last_activity

    operator = Viewer.operator()
    rows = list(Workspace.select(Workspace, Thread).join(Thread).order_by(Workspace.slug))
    data = [{"slug": w.slug, "name": w.name,
             "last_activity_at": last_activity(operator, w.thread).isoformat() + "Z"} for w in rows]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        click.echo(f"{d['slug']}\t{d['name']}\t{d['last_activity_at']}")


@db_command(workspace, "rename")
@click.argument("slug")
@click.argument("name")
def workspace_rename(settings: Settings, slug: str, name: str) -> None:
    """Give a workspace a new name (its slug stays)."""
    from storage.directory import get_workspace, rename_workspace

    ws = rename_workspace(get_workspace(slug), name)
    click.echo(f"{ws.slug} is now called {ws.name!r}.")


@db_command(workspace, "archive")
@click.argument("slug")
@click.option("--restore", is_flag=True, help="Restore an archived workspace instead.")
def workspace_archive(settings: Settings, slug: str, restore: bool) -> None:
    """Archive a workspace (read-only, hidden, reply addresses refused), or --restore it."""
    from storage.directory import get_workspace, set_archived

    ws = set_archived(get_workspace(slug), not restore)
    click.echo(f"{ws.slug} is {'restored' if restore else 'archived'}.")


@cli.group()
def user() -> None:
    """Add people and manage their Messages access."""


@db_command(user, "add")
@click.argument("email")
@click.option("--name", required=True, help="Full name, as shown in the thread and in emails.")
@click.option("--team", "is_team", is_flag=True, help="An agency team member.")
@click.option("--client", "client_slug", metavar="SLUG", help="A client contact of this workspace.")
@click.option("--messages-access", is_flag=True, help="Give the client access to the workspace's thread.")
@click.option("--password", help="Password for signing in (team members). Prompted for nowhere; optional.")
@click.option("--admin/--member", "admin", default=None,
              help="A team member's role (default: the first team member is an admin, later ones members).")
def user_add(settings: Settings, email: str, name: str, is_team: bool, client_slug: str | None,
             messages_access: bool, password: str | None, admin: bool | None) -> None:
    """Add a team member (--team) or a client of a workspace (--client SLUG)."""
    from storage.directory import DirectoryError, add_client, add_user, get_workspace
    from storage.models import TEAM
    from web.passwords import hash_password

    if is_team == bool(client_slug):
        raise UserError("Give exactly one of --team or --client SLUG.")
    if is_team and messages_access:
        raise UserError("--messages-access applies to clients only; team members see every thread.")
    if admin is not None and not is_team:
        raise UserError("--admin and --member apply to team members only.")
    if is_team:
        u = add_user(email, name, TEAM, password_hash=hash_password(password) if password else None,
                     team_role=None if admin is None else "admin" if admin else "member")
        click.echo(f"Added team member {u.email}" + (" as an admin." if u.team_role == "admin" else "."))
    else:
        if password:
            raise DirectoryError("Clients sign in with a link sent by email, not a password.")
        ws = get_workspace(client_slug or "")
        u = add_client(email, name, ws, messages_access)
        click.echo(f"Added client {u.email} to {ws.slug}" + (" with Messages access." if messages_access else "."))


@db_command(user, "grant")
@click.argument("email")
@click.argument("slug")
def user_grant(settings: Settings, email: str, slug: str) -> None:
    """Give a client Messages access to a workspace."""
    from storage.directory import get_user, get_workspace, set_access

    u, ws = get_user(email), get_workspace(slug)
    set_access(u, ws, True)
    click.echo(f"{u.email} now has Messages access to {ws.slug}.")


@db_command(user, "revoke")
@click.argument("email")
@click.argument("slug")
def user_revoke(settings: Settings, email: str, slug: str) -> None:
    """Take a client's Messages access away; their reply addresses stop working at once."""
    from storage.directory import get_user, get_workspace, set_access

    u, ws = get_user(email), get_workspace(slug)
    set_access(u, ws, False)
    click.echo(f"{u.email} no longer has Messages access to {ws.slug}.")


@db_command(user, "list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def user_list(settings: Settings, as_json: bool) -> None:
    """List people."""
    from storage.models import User

    data = [{"email": u.email, "name": u.name, "role": u.role, "active": u.active,
             **({"team_role": u.team_role} if u.is_team else {})}
            for u in User.select().order_by(User.email)]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        click.echo(f"{d['email']}\t{d['name']}\t{d['role']}" + ("" if d["active"] else "\tdeactivated"))


@db_command(user, "set-password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="The new password.")
def user_set_password(settings: Settings, email: str, password: str) -> None:
    """Set a team member's password."""
    from storage.directory import get_user
    from web.passwords import PASSWORD_MIN, hash_password

    u = get_user(email)
    if not u.is_team:
        raise UserError("Clients sign in with a link sent by email, not a password.")
    if len(password) < PASSWORD_MIN:
        raise UserError(f"A password needs at least {PASSWORD_MIN} characters.")
    from storage.sessions import end_sessions

    u.password_hash = hash_password(password)
    u.save()
    end_sessions(u)
    click.echo(f"Password set for {u.email}; their sessions are ended.")


@db_command(user, "deactivate")
@click.argument("email")
def user_deactivate(settings: Settings, email: str) -> None:
    """Deactivate a person: they can no longer sign in, post or reply by email."""
    from storage.directory import get_user, set_active

    u = set_active(get_user(email), False)
    click.echo(f"{u.email} is deactivated: signed out everywhere, sign-in links and reply addresses dead.")


@db_command(user, "role")
@click.argument("email")
@click.argument("role", type=click.Choice(["admin", "member"]))
def user_role(settings: Settings, email: str, role: str) -> None:
    """Make a team member an admin (manages workspaces and people) or a member (reads and posts)."""
    from storage.directory import get_user, set_team_role

    u = set_team_role(get_user(email), role)
    click.echo(f"{u.email} is now {'an admin' if role == 'admin' else 'a member'}.")


@db_command(user, "sign-out")
@click.argument("email")
def user_sign_out(settings: Settings, email: str) -> None:
    """End every session and unused sign-in link of a person at once."""
    from storage.directory import get_user
    from storage.sessions import cut_off

    u = get_user(email)
    cut_off(u, reply_addresses=False)
    click.echo(f"{u.email} is signed out everywhere.")


@db_command(user, "api-token")
@click.argument("email")
@click.option("--name", default="", help="A label for the token.")
def user_api_token(settings: Settings, email: str, name: str) -> None:
    """Create a personal token for the team's JSON API (printed once)."""
    from storage.directory import get_user
    from storage.tokens import create_api_token

    u = get_user(email)
    if not u.is_team:
        raise UserError("The JSON API is for team members.")
    click.echo(create_api_token(u, name))


# ---------------------------------------------------------------------------------------------------
# The thread


def _viewer(email: str | None) -> Any:
    """The person named by --as, or the operator (the whole thread) without it."""
    from storage.directory import get_user
    from storage.visibility import Viewer

    return Viewer.operator() if email is None else Viewer.of(get_user(email))


@cli.command("post")
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


@db_command(cli, "thread")
@click.argument("slug")
@click.option("--as", "as_email", metavar="EMAIL",
              help="Show the thread as this person sees it (default: the whole thread).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def thread_cmd(settings: Settings, slug: str, as_email: str | None, as_json: bool) -> None:
    """Show a workspace's thread, oldest first, as a person sees it."""
    from storage.directory import get_workspace, thread_of
    from storage.models import Message
    from storage.serialize import messages_json
    from storage.visibility import visible_messages

    ws = get_workspace(slug)
    thread = thread_of(ws)
    messages = list(visible_messages(_viewer(as_email), thread).order_by(Message.id))
    data = messages_json(messages, settings.effective_base_url)
    if as_json:
        click.echo(json.dumps({"workspace": ws.slug, "messages": data}, indent=2, ensure_ascii=False))
        return
    _print_messages(data)


def _print_messages(data: list[dict[str, Any]]) -> None:
    for m in data:
        mark = " [internal]" if m["visibility"] == "internal" else ""
        author = f"{m['author']['name']} <{m['author']['email']}>"
        click.echo(f"#{m['id']} {m['created_at']} {author} via {m['source']}{mark}")
        for line in m["text"].splitlines() or [""]:
            click.echo(f"    {line}")
        for a in m["attachments"]:
            click.echo(f"    📎 {a['name']} ({a['size']} bytes) {a['url']}")


@db_command(cli, "search")
@click.argument("slug")
@click.argument("query")
@click.option("--as", "as_email", metavar="EMAIL", help="Search as this person (default: the whole thread).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search_cmd(settings: Settings, slug: str, query: str, as_email: str | None, as_json: bool) -> None:
    """Search a workspace's thread; a client's search never finds internal messages."""
    from storage.directory import get_workspace, thread_of
    from storage.search import search_messages
    from storage.serialize import messages_json

    ws = get_workspace(slug)
    thread = thread_of(ws)
    messages = list(search_messages(_viewer(as_email), thread, query).limit(200))
    messages.sort(key=lambda m: m.id)
    data = messages_json(messages, settings.effective_base_url)
    if as_json:
        click.echo(json.dumps({"workspace": ws.slug, "query": query, "messages": data}, indent=2, ensure_ascii=False))
        return
    if not data:
        click.echo("No messages match.")
    _print_messages(data)


@db_command(cli, "login-link")
@click.argument("email")
def login_link(settings: Settings, email: str) -> None:
    """Print a one-time sign-in URL for a person (valid for LOGIN_LINK_MINUTES, single use)."""
    from storage.directory import get_user
    from storage.tokens import create_login_token

    u = get_user(email)
    if not u.active:
        raise UserError(f"{u.email} is deactivated.")
    secret = create_login_token(u, settings.login_link_minutes)
    click.echo(f"{settings.effective_base_url}/login/{secret}")


@db_command(cli, "reply-address")
@click.argument("slug")
@click.option("--as", "as_email", required=True, metavar="EMAIL", help="Whose reply address.")
@click.option("--internal", is_flag=True, help="A team member's internal-audience address.")
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
    token = reply_token_for(u, thread, internal=internal)
    click.echo(format_reply_address(token.token, settings.reply_domain))


@cli.command("trim")
@click.argument("file", type=click.File("rb"), default="-")
@handle_errors
def trim(file: Any) -> None:
    """Print the reply text the gateway would post for a raw email or plain text (FILE or stdin)."""
    from gateway.inbound.pipeline import preview_reply as trim_input

    click.echo(trim_input(file.read()))


@db_command(cli, "outbox")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=100, show_default=True, help="How many of the newest emails.")
def outbox(settings: Settings, as_json: bool, limit: int) -> None:
    """Show queued, sent and failed emails with attempts and last error."""
    from storage.mail_log import OutboxEmail

    rows = list(OutboxEmail.select().order_by(OutboxEmail.id.desc()).limit(limit))
    data = [{"id": r.id, "kind": r.kind, "to": r.to_address, "status": r.status, "attempts": r.attempts,
             "internal": r.internal, "message_id": r.message_id, "batch": r.batch_id,
             "next_attempt_at": r.next_attempt_at.isoformat() + "Z" if r.next_attempt_at else None,
             "sent_at": r.sent_at.isoformat() + "Z" if r.sent_at else None,
             "subject": r.subject, "last_error": r.last_error} for r in reversed(rows)]
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for d in data:
        click.echo(f"#{d['id']} {d['status']:8} {d['kind']:13} to {d['to']} attempts={d['attempts']}"
                   + (f" error={d['last_error']!r}" if d["last_error"] else ""))


@db_command(cli, "inbound")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=100, show_default=True, help="How many of the newest emails.")
def inbound(settings: Settings, as_json: bool, limit: int) -> None:
    """Show recently received emails with their outcome (posted, auto-reply, bounce, duplicate, refused)."""
    from storage.mail_log import InboundEmail

    rows = list(InboundEmail.select().order_by(InboundEmail.id.desc()).limit(limit))
    data = [{"id": r.id, "received_at": r.received_at.isoformat() + "Z", "mail_from": r.mail_from,
             "rcpt_to": r.rcpt_to, "subject": r.subject, "mail_message_id": r.mail_message_id, "size": r.size,
             "outcome": r.outcome, "reason": r.reason, "smtp_code": r.smtp_code, "smtp_text": r.smtp_text,
             "posted_message_id": r.message_id}
            for r in reversed(rows)]
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for d in data:
        click.echo(f"#{d['id']} {d['received_at']} {d['outcome']:8} {d['reason']:12} {d['smtp_code']} "
                   f"from {d['mail_from']} to {d['rcpt_to']}")


if __name__ == "__main__":
    main()
