"""Blueprint "members": a workspace's people. Every team member sees the client contacts with their status
(invited, active and last seen, no access, unsubscribed, bouncing) and follows or unfollows the workspace;
admins (storage/permissions.py) add contacts, grant or revoke access and resend invitations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from storage import changes
from storage.db import write_transaction
from storage.directory import EMAIL_RE, DirectoryError, add_client, normalize_email, set_access, set_following
from storage.models import CLIENT, TEAM, Membership, User, Workspace
from storage.notify_settings import no_email_reason
from storage.outbox import reenable_email
from storage.permissions import can_manage
from storage.tokens import EMAIL, create_login_token, set_messages_access
from web.auth import admin_required, team_required
from web.context import app_settings
from web.formguard import already_done, remember_done
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


@dataclass
class ContactRow:
    membership: Membership
    user: User
    status: str  # "invited", "active", "no access", "deactivated"
    no_email: str  # why they get no emails ("unsubscribed on Dec 3", "their address bounced"), or ""


def contact_status(m: Membership) -> str:
    if not m.user.active:
        return "deactivated"
    if not m.messages_access:
        return "no access"
    return "active" if m.user.last_seen_at else "invited"


@bp.app_template_global()
def no_email_contacts(workspace: Workspace) -> list[ContactRow]:
    """Client contacts with Messages access who get no notification emails (shown beside the composer)."""
    return [r for r in contact_rows(workspace) if r.no_email and r.membership.messages_access and r.user.active]


def contact_rows(workspace: Workspace) -> list[ContactRow]:
    return [ContactRow(m, m.user, contact_status(m), no_email_reason(m.user, m) if m.messages_access else "")
            for m in clients_of(workspace)]


@bp.route("/w/<slug>/members")
@team_required
def members(slug: str) -> Any:
    workspace = get_workspace_or_404(slug)
    return render_members(workspace)


def render_members(workspace: Workspace, error: str | dict[str, str] | None = None,
                   form: dict[str, str] | None = None,
                   status: int = 200) -> Any:
    people = followers(workspace)
    errors = {"form": error} if error and not isinstance(error, dict) else (error or {})
    return render_template("team/members.html", workspace=workspace, clients=contact_rows(workspace),
                           followers=people, following=any(p.id == g.user.id for p in people),
                           error=errors.get("form"), errors=errors, form=form or {},
                           may_manage=can_manage(g.user)), status


def send_client_invitation(user: User, workspace: Workspace) -> None:
    """Emails a client a link to the workspace's conversation that signs them in (EMAIL_LINK_DAYS, until
    their access is revoked); the first click on a new device asks for one confirmation."""
    from gateway.outbound.login_links import queue_login_link

    settings = app_settings()
    secret = create_login_token(user, settings.email_link_days * 24 * 60, purpose=EMAIL, reusable=True,
                                target=url_for("portal.thread", slug=workspace.slug), workspace_id=workspace.id)
    days = settings.email_link_days
    queue_login_link(settings, user, f"{settings.effective_base_url}/login/{secret}", invitation=True,
                     workspace_name=workspace.name, valid_for=f"for {days} day{'s' if days != 1 else ''}")


@bp.route("/w/<slug>/members/invite", methods=["POST"])
@admin_required
def invite(slug: str) -> Any:
    """Adds a client contact (or an existing client to this workspace) and, with access, emails them a link
    to the conversation."""
    workspace = get_workspace_or_404(slug)
    if (done := already_done()) is not None:
        return done
    email = normalize_email(request.form.get("email", ""))
    name = " ".join(request.form.get("name", "").split())
    access = request.form.get("messages_access") == "1"
    form = {"email": email, "name": name, "access": "1" if access else ""}
    if not EMAIL_RE.match(email):
        return render_members(workspace, {"email": "Please give a valid email address, such as bob@client.com."},
                              form, 400)
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
            if access:
                send_client_invitation(user, workspace)
        changes.committed()
    except DirectoryError as e:
        field = "email" if "email" in str(e) or "already" in str(e) else "form"
        return render_members(workspace, {field: str(e)}, form, 400)
    flash(f"Invited {user.email}: an invitation to the conversation is on its way to them." if access
          else f"Added {user.name}, without Messages access for now.")
    return remember_done(url_for("members.members", slug=workspace.slug))


def _contact(workspace: Workspace, user_id: int) -> User:
    user = User.get_or_none(User.id == user_id) if 0 < user_id <= MAX_ID else None
    if user is None or not Membership.select().where((Membership.user == user)
                                                     & (Membership.workspace == workspace)).exists():
        abort(404, "This person is no longer a contact of this workspace. Please reload the page.")
    return user


@bp.route("/w/<slug>/members/<int:user_id>/resend", methods=["POST"])
@admin_required
def resend(slug: str, user_id: int) -> Any:
    workspace = get_workspace_or_404(slug)
    if (done := already_done()) is not None:
        return done
    user = _contact(workspace, user_id)
    m = Membership.get((Membership.user == user) & (Membership.workspace == workspace))
    if not m.messages_access or not user.active:
        return render_members(workspace, f"{user.name} has no Messages access; grant it first.", None, 400)
    send_client_invitation(user, workspace)
    flash(f"A new invitation is on its way to {user.email}.")
    return remember_done(url_for("members.members", slug=workspace.slug))


@bp.route("/w/<slug>/members/<int:user_id>/email-again", methods=["POST"])
@admin_required
def email_again(slug: str, user_id: int) -> Any:
    """After bounces: the team says the address works again."""
    workspace = get_workspace_or_404(slug)
    user = _contact(workspace, user_id)
    reenable_email(user)
    flash(f"Emails to {user.email} will be tried again.")
    return redirect(url_for("members.members", slug=workspace.slug))


@bp.route("/w/<slug>/members/<int:user_id>/access", methods=["POST"])
@admin_required
def access(slug: str, user_id: int) -> Any:
    """Grants (granted=1) or revokes (granted=0) a client's Messages access; revoking kills their reply
    addresses at once."""
    workspace = get_workspace_or_404(slug)
    if (done := already_done()) is not None:
        return done
    user = _contact(workspace, user_id)
    granted = request.form.get("granted") == "1"
    try:
        set_access(user, workspace, granted)
    except DirectoryError as e:
        return render_members(workspace, str(e), None, 400)
    if granted and request.form.get("invite") == "1":
        send_client_invitation(user, workspace)
    flash(f"{user.name} now has Messages access to {workspace.name}." if granted else
          f"{user.name} no longer has Messages access to {workspace.name}: signed out, and their links and "
          "reply addresses no longer work.")
    return remember_done(url_for("members.members", slug=workspace.slug))


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
