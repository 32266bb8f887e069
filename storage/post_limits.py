"""How fast one person may post: POSTS_PER_MINUTE, counted from the posts themselves (every process sees
the same count). The gateway also counts per reply address (gateway/inbound/limits.py)."""
from __future__ import annotations

import datetime as dt

from storage.models import Message, User, utcnow

POST_WINDOW = dt.timedelta(minutes=1)
SLOW_DOWN = "You are posting very fast. Please wait a minute and try again."


def may_post_now(user: User, per_minute: int, now: dt.datetime | None = None) -> bool:
    """Whether user has posted fewer than per_minute messages in the last minute."""
    since = (now or utcnow()) - POST_WINDOW
    recent = (Message.select(Message.id).where((Message.author == user.id) & (Message.created_at > since))
              .limit(per_minute).count())
    return recent < per_minute


__all__ = ["may_post_now", "POST_WINDOW", "SLOW_DOWN"]
