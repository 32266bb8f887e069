"""Workspaces and people: creating them, finding them, granting access. Used by the CLI and the web."""
from __future__ import annotations

import re
import unicodedata

from peewee import ModelSelect

from storage import changes
from storage.db import write_transaction
from storage.models import ADMIN, CLIENT, MEMBER, ROLES, TEAM, TEAM_ROLES, Membership, Thread, User, Workspace, utcnow
from storage.tokens import set_messages_access

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
EMAIL_RE = re.compile(r"^[^@\s<>\"',;\x00-\x1f]+@[^@\s<>\"',;\x00-\x1f]+\.[^@\s<>\"',;\x00-\x1f]+$|^[^@\s]+@localhost$")


class DirectoryError(ValueError):
    """A user error (unknown workspace, duplicate email, …) with a sentence saying what is wrong."""


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-")
    return slug or "workspace"


def create_workspace(name: str, slug: str | None = None) -> Workspace:
    """Creates a workspace and its one thread. Without a slug, one is made from the name (kept unique)."""
    name = (name or "").strip()
    if not name:
        raise DirectoryError("A workspace needs a name.")
    if len(name) > 200:
        raise DirectoryError("A workspace name can be at most 200 characters long.")
    if slug is not None:
        slug = slug.strip().lower()
        if not SLUG_RE.match(slug):
            raise DirectoryError(
                f"{slug!r} is not a valid slug: use lower-case letters, digits and hyphens, "
                "starting with a letter or digit.")
        if Workspace.select().where(Workspace.slug == slug).exists():
            raise DirectoryError(f"A workspace with the slug {slug!r} already exists.")
    else:
        base = slugify(name)
        slug, n = base, 2
        while Workspace.select().where(Workspace.slug == slug).exists():
            slug, n = f"{base}-{n}", n + 1
    with write_transaction():
        workspace = Workspace.create(name=name, slug=slug)
        Thread.create(workspace=workspace)
    return workspace


def get_workspace(slug: str) -> Workspace:
    workspace = Workspace.get_or_none(Workspace.slug == (slug or "").strip().lower())
    if workspace is None:
        raise DirectoryError(f"There is no workspace with the slug {slug!r}.")
    return workspace


def thread_of(workspace: Workspace) -> Thread:
    return Thread.get(Thread.workspace == workspace)


def get_user(email: str) -> User:
    user = User.get_or_none(User.email == normalize_email(email))
    if user is None:
        raise DirectoryError(f"There is no user with the email address {email!r}.")
    return user


def add_user(email: str, name: str, role: str, *, password_hash: str | None = None,
             team_role: str | None = None) -> User:
    """Adds a person. A team member is an admin or a member (team_role); without one, the first team
    member is the admin and later ones are members."""
    email = normalize_email(email)
    if not EMAIL_RE.match(email) or len(email) > 320:
        raise DirectoryError(f"{email!r} is not a valid email address.")
    name = " ".join((name or "").split())
    if not name:
        raise DirectoryError("A user needs a name.")
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name) > 200:
        raise DirectoryError("A name can be at most 200 characters long, without control characters.")
    if role not in ROLES:
        raise DirectoryError(f"A role is 'team' or 'client', not {role!r}.")
    if User.select().where(User.email == email).exists():
        raise DirectoryError(f"A user with the email address {email} already exists.")
    if role == TEAM:
        if team_role is None:
            team_role = MEMBER if User.select().where(User.team_role == ADMIN).exists() else ADMIN
        elif team_role not in TEAM_ROLES:
            raise DirectoryError(f"A team member is an 'admin' or a 'member', not {team_role!r}.")
    else:
        team_role = None
    return User.create(email=email, name=name, role=role, password_hash=password_hash, team_role=team_role)


def add_client(email: str, name: str, workspace: Workspace, messages_access: bool) -> User:
    with write_transaction():
        user = add_user(email, name, CLIENT)
        Membership.create(user=user, workspace=workspace, messages_access=messages_access)
    return user


def client_membership(user: User, workspace: Workspace) -> Membership:
    if user.role != CLIENT:
        raise DirectoryError(f"{user.email} is a team member; Messages access applies to clients only.")
    membership = Membership.get_or_none((Membership.user == user) & (Membership.workspace == workspace))
    if membership is None:
        raise DirectoryError(f"{user.email} is not a client of the workspace {workspace.slug!r}.")
    return membership


def set_access(user: User, workspace: Workspace, granted: bool) -> Membership:
    """Grants or revokes a client's Messages access. Revoking ends, at once, their sessions, their sign-in
    links and their reply addresses of this workspace (storage.sessions.cut_off)."""
    from storage.sessions import cut_off

    client_membership(user, workspace)
    with write_transaction():
        membership = set_messages_access(user, workspace.id, granted)
        if not granted:
            cut_off(user, workspace_id=workspace.id)
    changes.committed()
    return membership


def set_active(user: User, active: bool) -> User:
    """Deactivates (ending every session, sign-in link and reply address at once) or reactivates a person."""
    from storage.sessions import cut_off

    if not active and user.is_admin and user.active and not other_active_admins(user).exists():
        raise DirectoryError(f"{user.name} is the only admin; make someone else an admin first.")
    with write_transaction():
        User.update(active=active).where(User.id == user.id).execute()
        user.active = active
        if not active:
            cut_off(user)
    changes.committed()  # from any process: a deactivated person's open live-update streams end
    return user


def set_team_role(user: User, team_role: str) -> User:
    """Makes a team member an admin or a member; the last active admin stays an admin."""
    if user.role != TEAM:
        raise DirectoryError(f"{user.email} is a client; only team members are admins or members.")
    if team_role not in TEAM_ROLES:
        raise DirectoryError(f"A team member is an 'admin' or a 'member', not {team_role!r}.")
    with write_transaction():
        if team_role == MEMBER and user.team_role == ADMIN and not other_active_admins(user).exists():
            raise DirectoryError(f"{user.name} is the only admin; make someone else an admin first.")
        User.update(team_role=team_role).where(User.id == user.id).execute()
        user.team_role = team_role
    return user


def other_active_admins(user: User) -> ModelSelect[User]:
    return User.select(User.id).where((User.team_role == ADMIN) & (User.active == True)  # noqa: E712
                                      & (User.id != user.id))


def rename_workspace(workspace: Workspace, name: str) -> Workspace:
    name = " ".join((name or "").split())
    if not name:
        raise DirectoryError("A workspace needs a name.")
    if len(name) > 200:
        raise DirectoryError("A workspace name can be at most 200 characters long.")
    Workspace.update(name=name).where(Workspace.id == workspace.id).execute()
    workspace.name = name
    return workspace


def set_archived(workspace: Workspace, archived: bool) -> Workspace:
    """Archives (read-only, hidden by default, reply addresses refused) or restores a workspace."""
    when = utcnow() if archived else None
    Workspace.update(archived_at=when).where(Workspace.id == workspace.id).execute()
    workspace.archived_at = when
    return workspace


def set_following(user: User, workspace: Workspace, following: bool) -> Membership:
    if user.role != TEAM:
        raise DirectoryError("Only team members follow workspaces.")
    membership, _ = Membership.get_or_create(user=user, workspace=workspace)
    membership.following = following
    membership.save()
    return membership
