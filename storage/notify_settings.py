"""Email notification choices: on or off and how (at once, if unread after N minutes, a daily digest) per
workspace, and one person's minutes, digest time and quiet hours; and why someone gets no emails.

"Off" is Membership.following (a team member without a row follows). Turning it off (here or with an email's
one-click unsubscribe) records when, so the team can see "gets no emails: unsubscribed on Dec 3". The timing
choices are kept in storage/notify_schedule.py's tables, where the worker reads them at send time.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from storage.db import write_transaction
from storage.models import CLIENT, TEAM, Membership, User, Workspace, utcnow
from storage.notify_schedule import (
    DEFAULT_DIGEST_MINUTE,
    DEFAULT_MODE,
    MODES,
    Defaults,
    NotifyChoice,
    NotifyPreference,
    format_quiet_hours,
    quiet_hours_of,
)
from storage.outbox import reenable_email, reschedule


@dataclass
class NotificationRow:
    workspace_id: int
    workspace_name: str
    slug: str
    email_on: bool
    unsubscribed_at: dt.datetime | None
    mode: str = DEFAULT_MODE  # how, when on: notify_schedule.NOW, UNREAD or DIGEST


def notification_rows(user: User) -> list[NotificationRow]:
    """The workspaces the person can be emailed about, with their choice for each."""
    rows = _rows(user)
    modes = {c.workspace_id: c.mode for c in NotifyChoice.select().where(NotifyChoice.user == user.id)}
    for r in rows:
        r.mode = modes.get(r.workspace_id, DEFAULT_MODE)
    return rows


def _rows(user: User) -> list[NotificationRow]:
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


def set_modes(user: User, modes: dict[int, str]) -> int:
    """Applies {workspace id: how} for the person (workspaces they can be emailed about); returns how many
    changed. Their emails waiting for a time are decided again with the new choice."""
    allowed = {r.workspace_id: r for r in notification_rows(user)}
    changed = 0
    with write_transaction():
        for workspace_id, mode in modes.items():
            row = allowed.get(workspace_id)
            if row is None or mode not in MODES or row.mode == mode:
                continue
            if not NotifyChoice.update(mode=mode).where((NotifyChoice.user == user.id)
                                                        & (NotifyChoice.workspace == workspace_id)).execute():
                NotifyChoice.insert(user=user.id, workspace=workspace_id, mode=mode).on_conflict_ignore().execute()
            changed += 1
        if changed:
            reschedule(user)
    return changed


@dataclass
class PersonalTiming:
    """One person's timing as their settings page shows it: the values that apply, and whether each is
    the default."""

    unread_minutes: int
    unread_is_default: bool
    digest_minute: int
    quiet: tuple[int, int] | None
    quiet_is_default: bool
    default_quiet: tuple[int, int] | None  # what the default would be for them


def personal_timing(user: User, defaults: Defaults) -> PersonalTiming:
    pref = NotifyPreference.get_or_none(NotifyPreference.user == user.id)
    default_quiet = quiet_hours_of(user, None, defaults)
    return PersonalTiming(
        unread_minutes=pref.unread_minutes if pref and pref.unread_minutes else defaults.unread_minutes,
        unread_is_default=not (pref and pref.unread_minutes),
        digest_minute=pref.digest_minute if pref else DEFAULT_DIGEST_MINUTE,
        quiet=quiet_hours_of(user, pref, defaults), quiet_is_default=pref is None or pref.quiet_hours is None,
        default_quiet=default_quiet)


def set_timing(user: User, defaults: Defaults, *, unread_minutes: int, digest_minute: int,
               quiet: tuple[int, int] | None) -> bool:
    """Keeps the person's minutes, digest time and quiet hours; returns whether anything changed. A value
    equal to the default, while they had kept the default, stays "the default" (it follows the operator's)."""
    current = personal_timing(user, defaults)
    keep_minutes = current.unread_is_default and unread_minutes == defaults.unread_minutes
    keep_quiet = current.quiet_is_default and quiet == current.default_quiet
    values = {"unread_minutes": None if keep_minutes else unread_minutes, "digest_minute": digest_minute,
              "quiet_hours": None if keep_quiet else format_quiet_hours(quiet)}
    pref = NotifyPreference.get_or_none(NotifyPreference.user == user.id)
    before = ({"unread_minutes": pref.unread_minutes, "digest_minute": pref.digest_minute,
               "quiet_hours": pref.quiet_hours} if pref else
              {"unread_minutes": None, "digest_minute": DEFAULT_DIGEST_MINUTE, "quiet_hours": None})
    if values == before:
        return False
    with write_transaction():
        if not NotifyPreference.update(**values).where(NotifyPreference.user == user.id).execute():
            NotifyPreference.insert(user=user.id, **values).on_conflict_ignore().execute()
        reschedule(user)
    return True


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


__all__ = ["NotificationRow", "notification_rows", "set_notifications", "set_modes", "PersonalTiming",
           "personal_timing", "set_timing", "no_email_reason"]
