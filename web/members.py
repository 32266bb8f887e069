"""Blueprint "members": a workspace's people, for the team. Invite a client (they get a sign-in link by
email), grant or revoke their Messages access, see who follows the workspace, follow or unfollow it.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from storage.db import write_transaction
from storage.directory import DirectoryError, add_client, normalize_email, set_access, set_following
from storage.models import CLIENT, TEAM, Membership, User, Workspace
from storage.tokens import create_login_token, set_messages_access
from web.auth import team_required
from web.context import app_settings
from web.team import get_workspace_or_404
from web.threadview import MAX_ID

bp = Blueprint("members", __name__)


def followers(workspace: Workspace) -> list[User]:
    """Active team members who follow the workspace (no membership row means following)."""
    unfollowed = Membership.select(Membership.user).where(
        (Membership.workspace == workspace) & (Membership.following == False))  # noqa: E712
    return list(User.select().where((User.role == TEAM) & (User.active == True)  # noqa: E712
                                    & User.id.not_in(unfollowed)).order_by(User.name, User.id))


def clients_of(workspace: Workspace) -> list[Membership]:
    return list(Membership.select(Membership, User).join(User)
                .where((Membership.workspace == workspace) & (User.role == CLIENT))
                .order_by(User.name, User.id))


@bp.route("/w/<slug>/members")
@team_required
def members(slug: str) -> Any:
    workspace = get_workspace_or_404(slug)
    return render_members(workspace)


def render_members(workspace: Workspace, error: str | None = None, form: dict[str, str] | None = None,
                   status: int = 200) -> Any:
    people = followers(workspace)
    return render_template("team/members.html", workspace=workspace, clients=clients_of(workspace),
                           followers=people, following=any(p.id == g.user.id for p in people),
                           error=error, form=form or {}), status


def _send_invitation(user: User, workspace: Workspace) -> None:
    from gateway.outbound.login_links import queue_login_link

    settings = app_settings()
    secret = create_login_token(user, settings.login_link_minutes)
    queue_login_link(settings, user, f"{settings.effective_base_url}/login/{secret}", invitation=True,
                     workspace_name=workspace.name)


@bp.route("/w/<slug>/members/invite", methods=["POST"])
@team_required
def invite(slug: str) -> Any:
    """Adds a client contact (or an existing client to this workspace) and emails them a sign-in link."""
    workspace = get_workspace_or_404(slug)
    email = normalize_email(request.form.get("email", ""))
    name = request.form.get("name", "").strip()
    access = request.form.get("messages_access") == "1"
    form = {"email": email, "name": name}
    existing = User.get_or_none(User.email == email) if email else None
    try:
        with write_transaction():
            if existing is None:
                user = add_client(email, name or email.split("@")[0], workspace, access)
            elif existing.role != CLIENT:
                raise DirectoryError(f"{email} is a team member; team members see every workspace already.")
            elif Membership.select().where((Membership.user == existing)
                                           & (Membership.workspace == workspace)).exists():
                raise DirectoryError(f"{email} is already a client contact of {workspace.name}.")
            else:
                user = existing
                set_messages_access(user, workspace.id, access)
            _send_invitation(user, workspace)
    except DirectoryError as e:
        return render_members(workspace, str(e), form, 400)
    flash(f"Invited {user.email}; a sign-in link is on its way to them.")
    return redirect(url_for("members.members", slug=workspace.slug))


@bp.route("/w/<slug>/members/<int:user_id>/access", methods=["POST"])
@team_required
def access(slug: str, user_id: int) -> Any:
    """Grants (granted=1) or revokes (granted=0) a client's Messages access; revoking kills their reply
    addresses at once."""
    workspace = get_workspace_or_404(slug)
    user = User.get_or_none(User.id == user_id) if 0 < user_id <= MAX_ID else None
    if user is None:
        abort(404)
    granted = request.form.get("granted") == "1"
    try:
        set_access(user, workspace, granted)
    except DirectoryError as e:
        return render_members(workspace, str(e), None, 400)
    flash(f"{user.name} {'now has' if granted else 'no longer has'} Messages access to {workspace.name}.")
    return redirect(url_for("members.members", slug=workspace.slug))


@bp.route("/w/<slug>/follow", methods=["POST"])
@team_required
def follow(slug: str) -> Any:
    """The signed-in team member follows (following=1) or unfollows (following=0) the workspace."""
    workspace = get_workspace_or_404(slug)
    following = request.form.get("following") == "1"
    set_following(g.user, workspace, following)
    flash(f"You {'now follow' if following else 'no longer follow'} {workspace.name}; "
          f"{'you will' if following else 'you will not'} be emailed about its new messages.")
    return redirect(request.form.get("back") == "thread" and url_for("team.thread", slug=workspace.slug)
                    or url_for("members.members", slug=workspace.slug))
