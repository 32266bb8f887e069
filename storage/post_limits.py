"""How fast one person may post: POSTS_PER_MINUTE, counted from the posts themselves, so that every process
(web, API, each gateway process) sees the same count; by email too (gateway/inbound/authenticate.py)."""
from __future__ import annotations

import datetime as dt

from storage.models import Message, User, utcnow

POST_WINDOW = dt.timedelta(minutes=1)
SLOW_DOWN = "You are posting very fast. Please wait a minute and try again."


def may_post_now(user: User, per_minute: int, now: dt.datetime | None = None) -> bool:
    """Whether user has posted fewer than per_minute messages in the last minute."""
    since = (now or utcnow()) - POST_WINDOW
    # The person's newest posts by id (their author index, read backwards): at most per_minute rows, however
    # many they ever wrote.
    newest = list(Message.select(Message.created_at).where(Message.author == user.id)
                  .order_by(Message.id.desc()).limit(per_minute))
    return len(newest) < per_minute or newest[-1].created_at <= since


__all__ = ["may_post_now", "POST_WINDOW", "SLOW_DOWN"]
