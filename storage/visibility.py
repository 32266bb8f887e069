"""THE visibility rule. Every read of messages, their attachments, search results, live updates,
notification fan-out and email rendering starts from `visible_messages(viewer, thread)`.

- A team member sees every message.
- A client sees client-visible messages of workspaces where they have Messages access, and only while
  they and that access are active. Internal messages never reach a client.
"""
from __future__ import annotations

from dataclasses import dataclass

from peewee import ModelSelect

from storage.models import (
    CLIENT,
    TEAM,
    VISIBILITY_CLIENT,
    VISIBILITY_INTERNAL,
    Membership,
    Message,
    Thread,
    User,
    Workspace,
)


@dataclass(frozen=True)
class Viewer:
    """The person looking. Built from a User at the edge (web session, CLI --as, API token, email)."""

    user_id: int
    role: str
    email: str = ""
    name: str = ""

    @classmethod
    def of(cls, user: User) -> Viewer:
        return cls(user_id=user.id, role=user.role, email=user.email, name=user.name)

    @property
    def is_team(self) -> bool:
        return self.role == TEAM

    @property
    def is_client(self) -> bool:
        return self.role == CLIENT


def _client_has_access(viewer: Viewer, workspace_id: object) -> ModelSelect:
    return (Membership.select(Membership.id)
            .join(User)
            .where((Membership.user == viewer.user_id) & (Membership.workspace == workspace_id)
                   & (Membership.messages_access == True)  # noqa: E712
                   & (User.active == True)))  # noqa: E712


def visible_messages(viewer: Viewer, thread: Thread | int) -> ModelSelect:
    """The messages of `thread` that `viewer` may see, as a query to refine (order, limit, search)."""
    thread_id = thread.id if isinstance(thread, Thread) else thread
    query = Message.select().where(Message.thread == thread_id)
    if viewer.is_team:
        team_active = User.select(User.id).where((User.id == viewer.user_id) & (User.active == True))  # noqa: E712
        return query.where(team_active.exists())
    if viewer.is_client:
        workspace_id = Thread.select(Thread.workspace).where(Thread.id == thread_id)
        return query.where((Message.visibility == VISIBILITY_CLIENT)
                           & _client_has_access(viewer, workspace_id).exists())
    return query.where(Message.id.is_null(True) & Message.id.is_null(False))  # nobody else sees anything


def can_see(viewer: Viewer, message: Message) -> bool:
    """Whether viewer may see message: the same predicate as visible_messages, never a second one."""
    return visible_messages(viewer, message.thread_id).where(Message.id == message.id).exists()


def can_open_thread(viewer: Viewer, thread: Thread) -> bool:
    """Whether viewer may open the thread at all (a client needs Messages access to its workspace)."""
    if viewer.is_team:
        return User.select().where((User.id == viewer.user_id) & (User.active == True)).exists()  # noqa: E712
    if viewer.is_client:
        return _client_has_access(viewer, thread.workspace_id).exists()
    return False


def visible_threads(viewer: Viewer) -> ModelSelect:
    """Threads viewer may open, with their workspace joined."""
    query = Thread.select(Thread, Workspace).join(Workspace)
    if viewer.is_team:
        return query
    if not viewer.is_client:
        return query.where(Thread.id.is_null(True) & Thread.id.is_null(False))
    workspaces = (Membership.select(Membership.workspace).join(User)
                  .where((Membership.user == viewer.user_id) & (Membership.messages_access == True)  # noqa: E712
                         & (User.active == True)))  # noqa: E712
    return query.where(Thread.workspace.in_(workspaces))


def audience(message: Message) -> list[User]:
    """Who is told about a new message by email: the other side, for whom it is visible.

    - From the team, client-visible: every active client of the workspace with Messages access.
    - From a client: the active team members who follow the workspace.
    (A client who used a one-click unsubscribe has Membership.following = False and is not emailed.)
    - Internal: the active team members who follow the workspace, never a client.
    Never the author; never a muted person or an address disabled after hard bounces. Each candidate
    is then checked with can_see(), so the fan-out obeys the one rule.
    """
    thread = Thread.get_by_id(message.thread_id)
    author = User.get_by_id(message.author_id)
    mailable = ((User.active == True) & (User.email_muted == False)  # noqa: E712
                & (User.email_disabled == False) & (User.id != author.id))  # noqa: E712
    if author.is_team and message.visibility == VISIBILITY_CLIENT:
        candidates = (User.select().join(Membership)
                      .where(mailable & (User.role == CLIENT) & (Membership.workspace == thread.workspace_id)
                             & (Membership.messages_access == True) & (Membership.following == True)))  # noqa: E712
    else:
        unfollowed = Membership.select(Membership.user).where(
            (Membership.workspace == thread.workspace_id) & (Membership.following == False))  # noqa: E712
        candidates = User.select().where(mailable & (User.role == TEAM) & User.id.not_in(unfollowed))
    people = list(candidates.order_by(User.id))
    return [u for u in people if can_see(Viewer.of(u), message)]


__all__ = ["Viewer", "visible_messages", "can_see", "can_open_thread", "visible_threads", "audience",
           "VISIBILITY_CLIENT", "VISIBILITY_INTERNAL"]
