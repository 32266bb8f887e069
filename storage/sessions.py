"""Signed-in sessions kept on the server, so that any of them can be ended at once.

The browser's cookie holds a random secret; only its SHA-256 is stored here, in a WebSession row with the
person, how they signed in, when it was last used and when it ends. Every request looks the row up
(web/auth.py load_viewer): a row that was ended, ran past its end, or sat unused longer than the idle
limit no longer signs anyone in. `cut_off` is the one function that takes every way in away from a
person: their sessions, their unused sign-in links and (when asked) their reply addresses.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField

from storage import changes
from storage.db import write_transaction
from storage.models import BaseModel, LoginToken, ReplyToken, Thread, User, utcnow
from storage.tokens import hash_secret

PASSWORD = "password"  # a team member typed their password
LINK = "link"  # a sign-in link from an email (a client's remembered device, or a team invitation)
SETUP = "setup"  # the first admin, signed in by the setup page
KINDS = (PASSWORD, LINK, SETUP)

TOUCH_EVERY = dt.timedelta(minutes=1)  # last_seen_at is written at most this often per session
USER_AGENT_MAX = 200


class WebSession(BaseModel):
    id = AutoField()
    token_hash = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="web_sessions", on_delete="CASCADE")
    kind = CharField(max_length=10)
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()  # absolute end: a team session asks for the password again after it
    ended_at = DateTimeField(null=True)
    user_agent = CharField(max_length=USER_AGENT_MAX, default="")
    remote = CharField(max_length=64, default="")


@dataclass(frozen=True)
class Lifetimes:
    """How long sessions last (from the settings): idle limit for all, absolute end per audience."""

    idle: dt.timedelta
    team: dt.timedelta
    client: dt.timedelta

    def absolute(self, user: User) -> dt.timedelta:
        return self.team if user.is_team else self.client


def start_session(user: User, kind: str, lifetime: dt.timedelta, *, user_agent: str = "",
                  remote: str = "") -> tuple[str, WebSession]:
    """A new session for user; returns (the secret for the cookie, its row). Only the hash is stored."""
    if kind not in KINDS:
        raise ValueError(f"unknown session kind {kind!r}")
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = WebSession.create(token_hash=hash_secret(secret), user=user, kind=kind, created_at=now,
                            last_seen_at=now, expires_at=now + lifetime,
                            user_agent=" ".join((user_agent or "").split())[:USER_AGENT_MAX],
                            remote=(remote or "")[:64])
    User.update(last_seen_at=now).where(User.id == user.id).execute()
    return secret, row


def live_session(secret: str, idle: dt.timedelta, now: dt.datetime | None = None) -> WebSession | None:
    """The session whose secret this is, with its active user loaded, if it still signs them in.

    Marks it (and the person) as seen, at most once per TOUCH_EVERY.
    """
    if not secret or len(secret) > 100:
        return None
    now = now or utcnow()
    row = (WebSession.select(WebSession, User).join(User)
           .where(WebSession.token_hash == hash_secret(secret)).first())
    if row is None or row.ended_at is not None or row.expires_at <= now or row.last_seen_at + idle <= now:
        return None
    if not row.user.active:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        WebSession.update(last_seen_at=now).where(WebSession.id == row.id).execute()
        User.update(last_seen_at=now).where(User.id == row.user_id).execute()
        row.last_seen_at = now
    return row


def active_sessions(user: User, idle: dt.timedelta, now: dt.datetime | None = None) -> list[WebSession]:
    """The person's sessions that still sign them in, most recently used first."""
    now = now or utcnow()
    return list(WebSession.select().where(
        (WebSession.user == user) & WebSession.ended_at.is_null() & (WebSession.expires_at > now)
        & (WebSession.last_seen_at > now - idle)).order_by(WebSession.last_seen_at.desc(), WebSession.id.desc()))


def end_session(user: User, session_id: int) -> bool:
    """Ends one of the person's own sessions; False when it is not theirs or already ended."""
    ended = bool(WebSession.update(ended_at=utcnow()).where(
        (WebSession.id == session_id) & (WebSession.user == user) & WebSession.ended_at.is_null()).execute())
    if ended:
        changes.access_changed(user.id)  # its open live-update streams end once this commits
    return ended


def end_sessions(user: User, *, keep: int | None = None) -> int:
    """Ends every session of the person (but `keep`, the one in use, when given); returns how many."""
    query = WebSession.update(ended_at=utcnow()).where((WebSession.user == user) & WebSession.ended_at.is_null())
    if keep is not None:
        query = query.where(WebSession.id != keep)
    ended = query.execute()
    changes.access_changed(user.id)  # their open live-update streams end once this commits
    return ended


def cut_off(user: User, *, workspace_id: int | None = None, reply_addresses: bool = True) -> None:
    """Takes every way in away from the person at once: their sessions and unused sign-in links, and
    (reply_addresses) their reply addresses, for one workspace (workspace_id) or everywhere.

    Used on sign-out everywhere and password change (reply_addresses=False), revoked access and
    deactivation. Sign-in links about another workspace stay dead too: they sign the person in.
    """
    now = utcnow()
    with write_transaction():
        end_sessions(user)
        LoginToken.update(expires_at=now).where(
            (LoginToken.user == user) & (LoginToken.expires_at > now)).execute()
        if reply_addresses:
            query = ReplyToken.update(revoked_at=now).where(
                (ReplyToken.user == user) & ReplyToken.revoked_at.is_null())
            if workspace_id is not None:
                query = query.where(ReplyToken.thread.in_(
                    Thread.select(Thread.id).where(Thread.workspace == workspace_id)))
            query.execute()
    changes.committed()  # from any process: that person's open live-update streams end


def forget_old_sessions(keep_for: dt.timedelta = dt.timedelta(days=30)) -> int:
    """Deletes rows of sessions that ended (or expired) longer ago than keep_for."""
    cutoff = utcnow() - keep_for
    return WebSession.delete().where(
        (WebSession.ended_at < cutoff) | (WebSession.expires_at < cutoff)).execute()


__all__ = ["WebSession", "Lifetimes", "start_session", "live_session", "active_sessions", "end_session",
           "end_sessions", "cut_off", "forget_old_sessions", "PASSWORD", "LINK", "SETUP"]
