"""Rate counts shared by every process (several gateway processes, several machines on PostgreSQL): one row
per key and fixed window, incremented by a single atomic upsert (INSERT … ON CONFLICT DO UPDATE … RETURNING,
on SQLite and PostgreSQL alike), read with the window before it as a sliding estimate.

Used where the count cannot be read from rows written anyway: mail to reply@ per sender and per network
(gateway/inbound/authenticate.py). Posts per person are counted from the posts themselves
(storage/post_limits.py). Rows expire after two windows (purge_old_counts, from the worker's housekeeping).
"""
from __future__ import annotations

import datetime as dt
import time

from peewee import BigIntegerField, CharField, IntegerField

from storage.db import database, is_sqlite, tuples, write_transaction
from storage.models import BaseModel


class RateCount(BaseModel):
    key = CharField(max_length=200)
    bucket = BigIntegerField()  # floor(unix time / window)
    count = IntegerField(default=0)
    expires = BigIntegerField(index=True)  # unix time after which the row counts for nothing

    class Meta:
        primary_key = False
        indexes = ((("key", "bucket"), True),)


_UPSERT = ('INSERT INTO "rate_count" ("key", "bucket", "count", "expires") VALUES (%s, %s, 1, %s) '
           'ON CONFLICT ("key", "bucket") DO UPDATE SET "count" = "rate_count"."count" + 1 RETURNING "count"')


def hit(key: str, limit: int, window: float, now: float | None = None) -> bool:
    """Counts one event for key and says whether key stayed within `limit` events in the last `window`
    seconds (the current window's count plus the previous one's, weighted by how much of it is still inside)."""
    now = time.time() if now is None else now
    bucket = int(now // window)
    expires = int((bucket + 2) * window) + 1
    key = key[:200]
    param = "?" if is_sqlite() else "%s"
    with write_transaction():
        [(current,)] = database.execute_sql(_UPSERT.replace("%s", param), (key, bucket, expires)).fetchall()
        previous = next(tuples(RateCount.select(RateCount.count).where(
            (RateCount.key == key) & (RateCount.bucket == bucket - 1))), (0,))[0]
    inside = 1.0 - (now - bucket * window) / window  # the share of the previous window still in the last one
    return current + previous * inside <= limit


def purge_old_counts(now: dt.datetime | None = None) -> int:
    """Deletes counts that no longer matter; returns how many."""
    stamp = (now.replace(tzinfo=dt.UTC).timestamp() if now is not None else time.time())
    with write_transaction():
        return int(RateCount.delete().where(RateCount.expires < int(stamp)).execute())


__all__ = ["RateCount", "hit", "purge_old_counts"]
