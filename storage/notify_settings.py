"""Email notifications on or off, per person and workspace, and why someone gets no emails.

A person's choice per workspace is Membership.following (a team member without a row follows). Turning
it off (here or with an email's one-click unsubscribe) records when, so the team can see "gets no emails:
unsubscribed on Dec 3". Rows are a list of fields per workspace so that later choices (timing, quiet
hours) are more fields of the same row.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from storage.db import write_transaction
from storage.models import CLIENT, TEAM, Membership, User, Workspace, utcnow
from storage.outbox import reenable_email


@dataclass
class NotificationRow:
    workspace_id: int
    workspace_name: str
    slug: str
    email_on: bool
    unsubscribed_at: dt.datetime | None


def notification_rows(user: User) -> list[NotificationRow]:
    """The workspaces the person can be emailed about, with their choice for each."""
    if user.role == CLIENT:
        rows = (Membership.select(Membership, Workspace).join(Workspace)
                .where((Membership.user == user) & (Membership.messages_access == True)  # noqa: E712
                       & Workspace.archived_at.is_null())
                .order_by(Workspace.name, Workspace.id))
        return [NotificationRow(m.workspace.id, m.workspace.name, m.workspace.slug, m.following, m.unsubscribed_at)
                for m in rows]
    mine = {m.workspace.id: m
            for m in Membership.select(Membership, Workspace).join(Workspace).where(Membership.user == user)}
    found = []
    for w in Workspace.select().where(Workspace.archived_at.is_null()).order_by(Workspace.name, Workspace.id):
        m = mine.get(w.id)
        found.append(NotificationRow(w.id, w.name, w.slug, m.following if m else True,
                                     m.unsubscribed_at if m else None))
    return found


def set_notifications(user: User, choices: dict[int, bool]) -> int:
    """Applies {workspace id: emails on} for the person; returns how many changed.

    Turning emails on also lifts a mute and, after bounces, lets the address be tried again
    (reenable_email): the person says it works.
    """
    allowed = {r.workspace_id: r for r in notification_rows(user)}
    changed = 0
    now = utcnow()
    with write_transaction():
        for workspace_id, on in choices.items():
            row = allowed.get(workspace_id)
            if row is None or row.email_on == on:
                continue
            updated = (Membership.update(following=on, unsubscribed_at=None if on else now)
                       .where((Membership.user == user) & (Membership.workspace == workspace_id)).execute())
            if not updated and user.role == TEAM:
                Membership.create(user=user, workspace=workspace_id, following=on,
                                  unsubscribed_at=None if on else now)
            changed += 1
        if any(choices.get(w) for w in allowed) and (user.email_disabled or user.email_muted):
            reenable_email(user)
            User.update(email_muted=False).where(User.id == user.id).execute()
    return changed


def no_email_reason(user: User, membership: Membership | None) -> str:
    """Why the person gets no notification emails about a workspace, as a phrase, or '' when they do."""
    if not user.active:
        return "deactivated"
    if user.email_disabled:
        return "their address bounced"
    if user.email_muted:
        return "emails muted"
    if membership is not None and not membership.following:
        when = membership.unsubscribed_at
        return f"unsubscribed on {when.strftime('%b')} {when.day}" if when else "unsubscribed"
    return ""


__all__ = ["NotificationRow", "notification_rows", "set_notifications", "no_email_reason"]
