"""THE visibility rule. Every read of messages, their attachments, search results, live updates,
notification fan-out and email rendering starts from `visible_messages(viewer, thread)`.

- A team member sees every message.
- A client sees client-visible messages of workspaces where they have Messages access, and only while
  they and that access are active. Internal messages never reach a client.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from peewee import ModelSelect, fn

from storage.db import PreparedQuery, tuples
from storage.models import (
    CLIENT,
    TEAM,
    VISIBILITY_CLIENT,
    VISIBILITY_INTERNAL,
    Membership,
    Message,
    MessageVersion,
    Thread,
    User,
    Workspace,
)
from storage.permissions import can_manage

OPERATOR = "operator"  # Viewer.operator(): the CLI's own view, never a user's role


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

    @classmethod
    def operator(cls) -> Viewer:
        """Whoever runs the `workrate` CLI on the server, with the database in hand: sees every message of a
        thread. No user has this role (directory.add_user allows only team and client), so no web page,
        API token or email can act as the operator."""
        return cls(user_id=0, role=OPERATOR, email="", name="operator")

    @property
    def is_team(self) -> bool:
        return self.role == TEAM

    @property
    def is_client(self) -> bool:
        return self.role == CLIENT


def _active_team_member(user_id: object) -> ModelSelect[User]:
    return User.select(User.id).where((User.id == user_id) & (User.active == True))  # noqa: E712


def _client_has_access(user_id: object, workspace_id: object) -> ModelSelect[Membership]:
    return (Membership.select(Membership.id)
            .join(User)
            .where((Membership.user == user_id) & (Membership.workspace == workspace_id)
                   & (Membership.messages_access == True)  # noqa: E712
                   & (User.active == True)))  # noqa: E712


def _visible_messages(role: str, user_id: object, thread_id: object) -> ModelSelect[Message]:
    """THE rule, as a query: the messages of thread_id that a viewer with this role and id may see.

    user_id is a value, or a column of an outer query (audience() asks for many candidates at once); the
    conditions are SQL, evaluated when the query runs.
    """
    query = Message.select().where(Message.thread == thread_id)
    if role == OPERATOR:
        return query
    if role == TEAM:
        return query.where(fn.EXISTS(_active_team_member(user_id)))
    if role == CLIENT:
        workspace_id = Thread.select(Thread.workspace).where(Thread.id == thread_id)
        return query.where((Message.visibility == VISIBILITY_CLIENT)
                           & fn.EXISTS(_client_has_access(user_id, workspace_id)))
    return query.where(Message.id.is_null(True) & Message.id.is_null(False))  # nobody else sees anything


def visible_messages(viewer: Viewer, thread: Thread | int) -> ModelSelect[Message]:
    """The messages of `thread` that `viewer` may see, as a query to refine (order, limit, search)."""
    return _visible_messages(viewer.role, viewer.user_id, thread.id if isinstance(thread, Thread) else thread)


def can_see(viewer: Viewer, message: Message) -> bool:
    """Whether viewer may see message: the same predicate as visible_messages, never a second one."""
    return visible_messages(viewer, message.thread_id).where(Message.id == message.id).exists()


def visible_versions(viewer: Viewer, message_ids: Iterable[int]) -> ModelSelect[MessageVersion]:
    """Earlier texts of edited messages, for those of message_ids that viewer may see (through the rule:
    a version is visible exactly when its message is), oldest first."""
    ids = list(message_ids)
    if not ids:
        return MessageVersion.select().where(MessageVersion.id.is_null(True) & MessageVersion.id.is_null(False))
    threads = Message.select(Message.thread).where(Message.id.in_(ids)).distinct()
    allowed: list[int] = []
    thread_ids: list[int] = [row[0] for row in tuples(threads)]
    for thread_id in thread_ids:
        visible = visible_messages(viewer, thread_id).where(Message.id.in_(ids)).select(Message.id)
        allowed.extend(row[0] for row in tuples(visible))
    return (MessageVersion.select().where(MessageVersion.message.in_(allowed))
            .order_by(MessageVersion.message, MessageVersion.id))


# Who may change a message after posting (management rights, such as an admin's, are storage/permissions.py's
# can_manage). Visibility itself never changes: an internal note stays internal and a client-visible message
# stays client-visible (re-posting is the way).

def may_edit(user: User, message: Message) -> bool:
    """can_edit for a message already read through visible_messages for this user (no query)."""
    return user.active and message.author_id == user.id and not message.is_deleted


def may_delete(user: User, message: Message) -> bool:
    """can_delete for a message already read through visible_messages for this user (no query)."""
    return user.active and not message.is_deleted and (message.author_id == user.id or can_manage(user))


def can_edit(user: User, message: Message) -> bool:
    """Authors edit their own messages (not deleted ones) while they may still see them."""
    return may_edit(user, message) and can_see(Viewer.of(user), message)


def can_delete(user: User, message: Message) -> bool:
    """Authors delete their own messages; team admins delete any message they may see."""
    return may_delete(user, message) and can_see(Viewer.of(user), message)


# The people a message is for, as one query: a candidate is kept when the message is among
# _visible_messages(candidate's role, candidate.id, thread), the very query can_see() runs for one viewer.
_Candidate = User.alias("candidate")


def _sees(role: str, message_id: object, thread_id: object) -> object:
    return fn.EXISTS(_visible_messages(role, _Candidate.id, thread_id).where(Message.id == message_id))


def visible_threads(viewer: Viewer) -> ModelSelect[Thread]:
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


def visible_messages_anywhere(viewer: Viewer) -> ModelSelect[Message]:
    """The messages of every thread viewer may open that viewer may see (search across workspaces): the
    same rule as visible_messages, applied to all of visible_threads(viewer) at once."""
    if viewer.role == OPERATOR:
        return Message.select()
    threads = visible_threads(viewer).select(Thread.id)
    query = Message.select().where(Message.thread.in_(threads))
    if viewer.is_team:
        return query.where(fn.EXISTS(_active_team_member(viewer.user_id)))
    if viewer.is_client:
        return query.where(Message.visibility == VISIBILITY_CLIENT)
    return query.where(Message.id.is_null(True) & Message.id.is_null(False))


def last_activity(viewer: Viewer, thread: Thread) -> dt.datetime:
    """When the newest message of thread that viewer may see was posted (the thread's creation when there is
    none): a client's list never dates an internal note. One index lookup, newest first."""
    newest = (visible_messages(viewer, thread).select(Message.created_at)
              .order_by(Message.id.desc()).limit(1).scalar())
    if isinstance(newest, str):  # a raw value read back by SQLite
        newest = dt.datetime.fromisoformat(newest)
    return newest or thread.created_at


def _audience_query(to_clients: bool, message_id: int, thread_id: int, workspace_id: int,
                   author_id: int) -> ModelSelect[User]:
    mailable = ((_Candidate.active == True) & (_Candidate.email_muted == False)  # noqa: E712
                & (_Candidate.email_disabled == False) & (_Candidate.id != author_id))  # noqa: E712
    if to_clients:
        role = CLIENT
        candidates = (_Candidate.select(_Candidate).join(Membership, on=(Membership.user == _Candidate.id))
                      .where(mailable & (_Candidate.role == CLIENT) & (Membership.workspace == workspace_id)
                             & (Membership.messages_access == True) & (Membership.following == True)))  # noqa: E712
    else:
        role = TEAM
        unfollowed = Membership.select(Membership.user).where(
            (Membership.workspace == workspace_id) & (Membership.following == False))  # noqa: E712
        candidates = _Candidate.select().where(mailable & (_Candidate.role == TEAM) & _Candidate.id.not_in(unfollowed))
    return candidates.where(_sees(role, message_id, thread_id)).order_by(_Candidate.id)


# Run for every posted message: compiled once (storage/db.py PreparedQuery), one statement.
_AUDIENCE = {to_clients: PreparedQuery(lambda *p, to_clients=to_clients: _audience_query(to_clients, *p),
                                       "message_id", "thread_id", "workspace_id", "author_id")
             for to_clients in (False, True)}


def audience(message: Message, *, thread: Thread | None = None, author: User | None = None) -> list[User]:
    """Who is told about a new message by email: the other side, for whom it is visible.

    - From the team, client-visible: every active client of the workspace with Messages access.
    - From a client: the active team members who follow the workspace.
    (A client who used a one-click unsubscribe has Membership.following = False and is not emailed.)
    - Internal: the active team members who follow the workspace, never a client.
    Never the author; never a muted person or an address disabled after hard bounces. Each candidate
    must also pass the one rule: the query keeps only those for whom the message is in
    _visible_messages(), as can_see() would say.
    thread and author may be given when the caller has them loaded (they must be the message's own).
    """
    if thread is None or thread.id != message.thread_id:
        thread = Thread.get_by_id(message.thread_id)
    if author is None or author.id != message.author_id:
        author = User.get_by_id(message.author_id)
    to_clients = author.role == TEAM and message.visibility == VISIBILITY_CLIENT
    return _AUDIENCE[to_clients].rows(_Candidate, message_id=message.id, thread_id=thread.id,
                                      workspace_id=thread.workspace_id, author_id=author.id)


def can_open_thread(viewer: Viewer, thread: Thread) -> bool:
    """Whether viewer may open the thread at all (a client needs Messages access to its workspace)."""
    if viewer.is_team:
        return _CAN_OPEN[TEAM].scalar(user_id=viewer.user_id, workspace_id=thread.workspace_id) is not None
    if viewer.is_client:
        return _CAN_OPEN[CLIENT].scalar(user_id=viewer.user_id, workspace_id=thread.workspace_id) is not None
    return False


_CAN_OPEN = {
    TEAM: PreparedQuery(lambda user_id, workspace_id: _active_team_member(user_id).limit(1), "user_id", "workspace_id"),
    CLIENT: PreparedQuery(lambda user_id, workspace_id: _client_has_access(user_id, workspace_id).limit(1),
                          "user_id", "workspace_id"),
}


__all__ = ["Viewer", "visible_messages", "can_see", "visible_versions", "visible_messages_anywhere",
           "can_edit", "can_delete", "may_edit", "may_delete", "can_open_thread",
           "visible_threads", "audience", "last_activity",
           "VISIBILITY_CLIENT", "VISIBILITY_INTERNAL"]
