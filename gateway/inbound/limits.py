"""How fast mail may come in: sliding-window counters per key (a sender, a network, a reply address).

The counts live in the gateway process (a restart forgets them): they bound what one stranger can make us
store or post in a burst, cheaply, before anything is written. With several gateway processes each keeps
its own, so a sender may get up to that many times the limit.
"""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Hashable

MAX_KEYS = 100_000  # distinct keys remembered; beyond it the least recently used are forgotten


class RateCounter:
    """`hit(key)` counts one event and says whether the key stayed within `limit` events in `window` s."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._events.get(key)
            if events is None:
                events = self._events[key] = collections.deque()
                if len(self._events) > MAX_KEYS:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(key)
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True


_counters: dict[tuple[str, Hashable, int, float], RateCounter] = {}
_counters_lock = threading.Lock()


def counter(name: str, owner: Hashable, limit: int, window: float) -> RateCounter:
    """The process's counter for `name` of `owner` (the gateway's Settings: one gateway, one set of counts)."""
    key = (name, owner, limit, window)
    with _counters_lock:
        found = _counters.get(key)
        if found is None:
            found = _counters[key] = RateCounter(limit, window)
        return found


__all__ = ["RateCounter", "counter"]
