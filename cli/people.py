"""`workrate workspace ...` and `workrate user ...`: create workspaces, add people, manage their access."""
from __future__ import annotations

import json

import click

from cli.context import UserError, with_db
from config import Settings


@click.group()
def workspace() -> None:
    """Create and list workspaces."""


@workspace.command("create")
@click.argument("name")
@click.option("--slug", help="Short name used in URLs and the CLI (default: made from NAME).")
@with_db
def workspace_create(settings: Settings, name: str, slug: str | None) -> None:
    """Create a workspace and its thread; prints the slug as the last line."""
    from storage.directory import create_workspace

    ws = create_workspace(name, slug)
    click.echo(f"Created workspace {ws.name!r}.")
    click.echo(ws.slug)


@workspace.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_db
def workspace_list(settings: Settings, as_json: bool) -> None:
    """List workspaces with their last activity."""
    from storage.models import Thread, Workspace
    from storage.visibility import Viewer, last_activity

    operator = Viewer.operator()
    threads = list(Thread.select(Thread, Workspace).join(Workspace).order_by(Workspace.slug))
    data = [{"slug": t.workspace.slug, "name": t.workspace.name,
             "last_activity_at": last_activity(operator, t).isoformat() + "Z"} for t in threads]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        click.echo(f"{d['slug']}\t{d['name']}\t{d['last_activity_at']}")


@workspace.command("rename")
@click.argument("slug")
@click.argument("name")
@with_db
def workspace_rename(settings: Settings, slug: str, name: str) -> None:
    """Give a workspace a new name (its slug stays)."""
    from storage.directory import get_workspace, rename_workspace

    ws = rename_workspace(get_workspace(slug), name)
    click.echo(f"{ws.slug} is now called {ws.name!r}.")


@workspace.command("archive")
@click.argument("slug")
@click.option("--restore", is_flag=True, help="Restore an archived workspace instead.")
@with_db
def workspace_archive(settings: Settings, slug: str, restore: bool) -> None:
    """Archive a workspace (read-only, hidden, reply addresses refused), or --restore it."""
    from storage.directory import get_workspace, set_archived

    ws = set_archived(get_workspace(slug), not restore)
    click.echo(f"{ws.slug} is {'restored' if restore else 'archived'}.")


@click.group()
def user() -> None:
    """Add people and manage their Messages access."""


@user.command("add")
@click.argument("email")
@click.option("--name", required=True, help="Full name, as shown in the thread and in emails.")
@click.option("--team", "is_team", is_flag=True, help="An agency team member.")
@click.option("--client", "client_slug", metavar="SLUG", help="A client contact of this workspace.")
@click.option("--messages-access", is_flag=True, help="Give the client access to the workspace's thread.")
@click.option("--password", help="Password for signing in (team members). Prompted for nowhere; optional.")
@click.option("--admin/--member", "admin", default=None,
              help="A team member's role (default: the first team member is an admin, later ones members).")
@with_db
def user_add(settings: Settings, email: str, name: str, is_team: bool, client_slug: str | None,
             messages_access: bool, password: str | None, admin: bool | None) -> None:
    """Add a team member (--team) or a client of a workspace (--client SLUG)."""
    from storage.directory import DirectoryError, add_client, add_user, get_workspace
    from storage.models import TEAM
    from web.passwords import hash_password, password_problem

    if is_team == bool(client_slug):
        raise UserError("Give exactly one of --team or --client SLUG.")
    if is_team and messages_access:
        raise UserError("--messages-access applies to clients only; team members see every thread.")
    if is_team and password is not None and password_problem(password):
        raise UserError(str(password_problem(password)))
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


def _access_command(name: str, access: bool, help_text: str, done: str) -> None:
    """`workrate user grant|revoke EMAIL SLUG`: one shape, the access it sets and its sentences differ."""

    @user.command(name, help=help_text)
    @click.argument("email")
    @click.argument("slug")
    @with_db
    def command(settings: Settings, email: str, slug: str) -> None:
        from storage.directory import get_user, get_workspace, set_access

        u, ws = get_user(email), get_workspace(slug)
        set_access(u, ws, access)
        click.echo(done.format(email=u.email, slug=ws.slug))


_access_command("grant", True, "Give a client Messages access to a workspace.",
                "{email} now has Messages access to {slug}.")
_access_command("revoke", False,
                "Take a client's Messages access away; their reply addresses stop working at once.",
                "{email} no longer has Messages access to {slug}.")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_db
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


@user.command("set-password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="The new password.")
@with_db
def user_set_password(settings: Settings, email: str, password: str) -> None:
    """Set a team member's password."""
    from storage.directory import get_user
    from web.passwords import hash_password, password_problem

    u = get_user(email)
    if not u.is_team:
        raise UserError("Clients sign in with a link sent by email, not a password.")
    if password_problem(password):
        raise UserError(str(password_problem(password)))
    from storage.sessions import end_sessions

    u.password_hash = hash_password(password)
    u.save()
    end_sessions(u)
    click.echo(f"Password set for {u.email}; their sessions are ended.")


@user.command("deactivate")
@click.argument("email")
@with_db
def user_deactivate(settings: Settings, email: str) -> None:
    """Deactivate a person: they can no longer sign in, post or reply by email."""
    from storage.directory import get_user, set_active

    u = set_active(get_user(email), False)
    click.echo(f"{u.email} is deactivated: signed out everywhere, sign-in links and reply addresses dead.")


@user.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice(["admin", "member"]))
@with_db
def user_role(settings: Settings, email: str, role: str) -> None:
    """Make a team member an admin (manages workspaces and people) or a member (reads and posts)."""
    from storage.directory import get_user, set_team_role

    u = set_team_role(get_user(email), role)
    click.echo(f"{u.email} is now {'an admin' if role == 'admin' else 'a member'}.")


@user.command("sign-out")
@click.argument("email")
@with_db
def user_sign_out(settings: Settings, email: str) -> None:
    """End every session and unused sign-in link of a person at once."""
    from storage.directory import get_user
    from storage.sessions import cut_off

    u = get_user(email)
    cut_off(u, reply_addresses=False)
    click.echo(f"{u.email} is signed out everywhere.")


@user.command("api-token")
@click.argument("email")
@click.option("--name", default="", help="A label for the token.")
@with_db
def user_api_token(settings: Settings, email: str, name: str) -> None:
    """Create a personal token for the team's JSON API (printed once)."""
    from storage.directory import get_user
    from storage.tokens import create_api_token

    u = get_user(email)
    if not u.is_team:
        raise UserError("The JSON API is for team members.")
    click.echo(create_api_token(u, name))


COMMANDS = [workspace, user]
