"""Client contacts who are away: set by their out-of-office auto-replies (gateway/inbound/away.py), read by
the team's pages only.

One row per person, not per workspace: a contact who is away is away in every workspace they belong to.
Whether they are still away is decided when read, never stored: they are back once they post anything
(any message of theirs newer than the auto-reply, from the web or by email) or once their return date has
come in their own time zone. So nothing has to run on the return date, and the write path for posts
(storage/posting.py) knows nothing of this.

The team alone sees it: no client page, API answer, live update or email reads this table.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from peewee import BooleanField, DateField, DateTimeField, ForeignKeyField, fn

from storage.mail_log import InboundEmail
from storage.models import CLIENT, BaseModel, Membership, Message, User, utcnow
from storage.time_zones import zone_of


class ContactAway(BaseModel):
    user = ForeignKeyField(User, unique=True, on_delete="CASCADE")
    user_id: int
    since = DateTimeField()  # when the auto-reply arrived (UTC)
    back_on = DateField(null=True)  # the first day back, in the contact's time zone; None: the text gave no date
    said_until = BooleanField(default=False)  # the text said "until" the day before back_on
    inbound_email = ForeignKeyField(InboundEmail, null=True, on_delete="SET NULL")  # the auto-reply, in the log
    inbound_email_id: int | None


@dataclass(frozen=True)
class Away:
    """A contact who is away now, and what the team is told."""

    user_id: int
    name: str
    email: str
    since: dt.datetime
    back_on: dt.date | None
    said_until: bool

    @property
    def label(self) -> str:
        """"away until 12 Jan", "away, back on 12 Jan", or "away (auto-reply on Dec 3)"."""
        if self.back_on is None:
            return f"away (auto-reply on {self.since.strftime('%b')} {self.since.day})"
        if self.said_until:
            return f"away until {_day(self.back_on - dt.timedelta(days=1), self.since.date())}"
        return f"away, back on {_day(self.back_on, self.since.date())}"


def _day(day: dt.date, since: dt.date) -> str:
    text = f"{day.strftime('%a')} {day.day} {day.strftime('%b')}"
    return text if day.year == since.year else f"{text} {day.year}"


def record_away(user_id: int, *, since: dt.datetime, back_on: dt.date | None, said_until: bool,
                inbound_email_id: int | None) -> None:
    """Notes that user_id is away from `since` (their newest auto-reply wins), inside the caller's transaction."""
    (ContactAway.insert(user=user_id, since=since, back_on=back_on, said_until=said_until,
                        inbound_email=inbound_email_id)
     .on_conflict(conflict_target=[ContactAway.user],
                  update={ContactAway.since: since, ContactAway.back_on: back_on,
                          ContactAway.said_until: said_until, ContactAway.inbound_email: inbound_email_id})
     .execute())


def away_contacts(user_ids: Iterable[int], now: dt.datetime | None = None) -> dict[int, Away]:
    """Those of user_ids who are away at `now` (UTC; default: the clock), by user id."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    now = now or utcnow()
    rows = list(ContactAway.select(ContactAway, User).join(User)
                .where(ContactAway.user.in_(ids) & (User.role == CLIENT) & (User.active == True)))  # noqa: E712
    rows = [r for r in rows if r.back_on is None or _local_day(now, r.user.time_zone) < r.back_on]
    if not rows:
        return {}
    # Back once they wrote anything after the auto-reply (deleted messages count: they were there).
    newest = (Message.select(Message.author, fn.MAX(Message.created_at))
              .where(Message.author.in_([r.user_id for r in rows])).group_by(Message.author).tuples())
    last_post = dict(cast(Iterable[tuple[int, dt.datetime]], newest))
    return {r.user_id: Away(r.user_id, r.user.name, r.user.email, r.since, r.back_on, r.said_until)
            for r in rows if (last_post.get(r.user_id) or dt.datetime.min) <= r.since}


def away_in_workspaces(workspace_ids: Iterable[int], now: dt.datetime | None = None) -> dict[int, list[Away]]:
    """The away contacts with Messages access of each workspace (only workspaces that have some)."""
    ids = sorted(set(workspace_ids))
    if not ids:
        return {}
    members: list[tuple[int, int]] = [
        (m.workspace_id, m.user_id) for m in Membership.select(Membership.workspace, Membership.user)
        .join(ContactAway, on=(ContactAway.user == Membership.user))
        .where(Membership.workspace.in_(ids) & (Membership.messages_access == True))]  # noqa: E712
    away = away_contacts((user_id for _, user_id in members), now)
    found: dict[int, list[Away]] = {}
    for workspace_id, user_id in members:
        if user_id in away:
            found.setdefault(workspace_id, []).append(away[user_id])
    for contacts in found.values():
        contacts.sort(key=lambda a: (a.name.lower(), a.user_id))
    return found


def _local_day(now: dt.datetime, time_zone: str | None) -> dt.date:
    return now.replace(tzinfo=dt.UTC).astimezone(zone_of(time_zone)).date()
