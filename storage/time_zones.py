"""A person's time zone (User.time_zone, an IANA name taken from their browser) as a tzinfo: for the times in
their emails, their quiet hours and digest hour, and the day their return date comes."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone_of(name: str | None) -> dt.tzinfo:
    """The IANA zone of that name, UTC for none or an unknown one."""
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


__all__ = ["zone_of"]
