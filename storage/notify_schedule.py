"""When a notification email may leave: each person's timing per workspace, their quiet hours, their digest hour.

A person chooses per workspace: at once (NOW), if still unread after N minutes (UNREAD, the default) or a
daily digest (DIGEST); "off" stays Membership.following (storage/notify_settings.py). N, the digest's time and
quiet hours are one choice per person (NotifyPreference). Every clock time is in the person's own time zone
(User.time_zone; UTC when unknown). The outbox worker asks send_at() at send time and holds the batch until
then; the operator's NOTIFY_DELAY, when set, bypasses all of this.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from peewee import AutoField, CharField, ForeignKeyField, IntegerField

from storage.models import TEAM, BaseModel, Thread, User, Workspace
from storage.time_zones import zone_of

NOW = "now"
UNREAD = "unread"
DIGEST = "digest"
MODES = (NOW, UNREAD, DIGEST)
QUIET = "quiet"  # not a mode: what holds an email inside its recipient's quiet hours (plan())
DEFAULT_MODE = UNREAD
DEFAULT_DIGEST_MINUTE = 8 * 60  # 08:00 local
MAX_UNREAD_MINUTES = 24 * 60
DAY = 24 * 60

_CLOCK = re.compile(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*")


class NotifyPreference(BaseModel):
    """One person's email timing, for every workspace (a missing row: the defaults)."""

    id = AutoField()
    user = ForeignKeyField(User, unique=True, on_delete="CASCADE")
    user_id: int
    unread_minutes = IntegerField(null=True)  # None: NOTIFY_UNREAD_MINUTES
    digest_minute = IntegerField(default=DEFAULT_DIGEST_MINUTE)  # minute of the day of the daily digest
    # "HH:MM-HH:MM", "" for none, None for the default of their role (team: TEAM_QUIET_HOURS; clients: none)
    quiet_hours = CharField(max_length=11, null=True)


class NotifyChoice(BaseModel):
    """How a person wants to be emailed about one workspace (a missing row: DEFAULT_MODE)."""

    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE")
    user_id: int
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
    workspace_id: int
    mode = CharField(max_length=10, default=DEFAULT_MODE)

    class Meta:
        indexes = ((("user", "workspace"), True),)


@dataclass(frozen=True)
class Defaults:
    """The operator's defaults (settings NOTIFY_UNREAD_MINUTES and TEAM_QUIET_HOURS)."""

    unread_minutes: int = 5
    team_quiet_hours: str = ""


@dataclass(frozen=True)
class Timing:
    """Everything that decides when one person's email about one workspace may leave."""

    mode: str
    unread_minutes: int
    digest_minute: int
    quiet: tuple[int, int] | None  # (from, until) minutes of the day; may wrap past midnight
    zone: dt.tzinfo


def parse_clock(text: str) -> int:
    """Minutes after midnight of "HH:MM" (24-hour clock); ValueError with a sentence otherwise."""
    found = _CLOCK.fullmatch(text or "")
    if not found:
        raise ValueError("Give a time such as 08:00 (24-hour clock).")
    return int(found.group(1)) * 60 + int(found.group(2))


def format_clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_quiet_hours(text: str | None) -> tuple[int, int] | None:
    """(from, until) of "HH:MM-HH:MM", None for "" or None; ValueError when it cannot be used."""
    if not text:
        return None
    start, _, end = text.partition("-")
    window = parse_clock(start), parse_clock(end)
    if window[0] == window[1]:
        raise ValueError("Quiet hours need two different times.")
    return window


def format_quiet_hours(window: tuple[int, int] | None) -> str:
    return f"{format_clock(window[0])}-{format_clock(window[1])}" if window else ""


def quiet_hours_of(user: User, pref: NotifyPreference | None, defaults: Defaults) -> tuple[int, int] | None:
    """The person's quiet hours: their own, or the team's default for a team member, or none."""
    own = pref.quiet_hours if pref is not None else None
    if own is None:
        own = defaults.team_quiet_hours if user.role == TEAM else ""
    try:
        return parse_quiet_hours(own)
    except ValueError:  # a stored value is always checked first; an operator's typo means none
        return None


def timing_for(user: User, thread_id: int, defaults: Defaults) -> Timing:
    """The person's timing for the workspace of this thread."""
    workspace_id = Thread.select(Thread.workspace).where(Thread.id == thread_id)
    mode = (NotifyChoice.select(NotifyChoice.mode)
            .where((NotifyChoice.user == user.id) & (NotifyChoice.workspace == workspace_id)).scalar())
    pref = NotifyPreference.get_or_none(NotifyPreference.user == user.id)
    return Timing(mode=mode if mode in MODES else DEFAULT_MODE,
                  unread_minutes=(pref.unread_minutes if pref and pref.unread_minutes else defaults.unread_minutes),
                  digest_minute=pref.digest_minute if pref else DEFAULT_DIGEST_MINUTE,
                  quiet=quiet_hours_of(user, pref, defaults), zone=zone_of(user.time_zone))


def send_at(timing: Timing, first_created_at: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When an email about messages whose oldest was posted at `first_created_at` may leave (naive UTC).

    UNREAD waits N minutes from the oldest message, so that a burst inside the window is one email; a
    digest leaves at the first digest time after the oldest message. Quiet hours then hold all but a digest,
    whose hour the person chose themselves.
    """
    return plan(timing, first_created_at, now)[0]


def plan(timing: Timing, first_created_at: dt.datetime, now: dt.datetime) -> tuple[dt.datetime, str]:
    """send_at(), and what holds the email until then: DIGEST, UNREAD, QUIET, or "" when it may leave now.
    The team's delivery line shows it (storage/outbox.py delivery_status)."""
    if timing.mode == DIGEST:
        at = max(now, next_local_time(first_created_at, timing.digest_minute, timing.zone))
        return at, DIGEST if at > now else ""
    at = now
    if timing.mode == UNREAD:
        at = max(now, first_created_at + dt.timedelta(minutes=timing.unread_minutes))
    held = after_quiet_hours(at, timing.quiet, timing.zone)
    if held > at:
        return held, QUIET
    return at, UNREAD if at > now else ""


def digest_since(timing: Timing, first_created_at: dt.datetime) -> dt.datetime | None:
    """For a digest: the digest time before the one this email leaves at (naive UTC), which its messages
    came after ("since Tuesday 08:00"); None when the person does not take a digest."""
    if timing.mode != DIGEST:
        return None
    due = next_local_time(first_created_at, timing.digest_minute, timing.zone)
    return _utc(_local(due, timing.zone).date() - dt.timedelta(days=1), timing.digest_minute, timing.zone)


def _local(at: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC).astimezone(zone)


def _utc(day: dt.date, minute: int, zone: dt.tzinfo) -> dt.datetime:
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def next_local_time(after: dt.datetime, minute: int, zone: dt.tzinfo) -> dt.datetime:
    """The first moment after `after` (naive UTC) when the clock in `zone` shows `minute` (naive UTC)."""
    day = _local(after, zone).date()
    for offset in range(3):  # today, or tomorrow (a day of a DST change may lack the time)
        candidate = _utc(day + dt.timedelta(days=offset), minute, zone)
        if candidate > after:
            return candidate
    return after + dt.timedelta(days=1)


def after_quiet_hours(at: dt.datetime, quiet: tuple[int, int] | None, zone: dt.tzinfo) -> dt.datetime:
    """`at`, or the end of the quiet hours it falls in (naive UTC)."""
    if quiet is None:
        return at
    start, end = quiet
    local = _local(at, zone)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return at
    return next_local_time(at, end, zone)


__all__ = ["NOW", "UNREAD", "DIGEST", "MODES", "DEFAULT_MODE", "NotifyPreference", "NotifyChoice", "Defaults",
           "Timing", "timing_for", "send_at", "plan", "QUIET", "digest_since", "parse_clock", "format_clock",
           "parse_quiet_hours", "format_quiet_hours", "zone_of", "quiet_hours_of", "next_local_time",
           "after_quiet_hours"]
