"""The refusal log (storage/refusals.py) stays bounded whatever a stranger does: networks are grouped the way
every other limit groups them, and once the log is full one overflow row per reason takes every network."""
from __future__ import annotations

from typing import Any

import pytest

from storage import refusals
from storage.models import utcnow
from storage.refusals import RcptRefusal, Refusal, network_of, record_refusals


def test_networks_are_grouped_like_every_other_limit() -> None:
    assert network_of("2001:db8::1") == network_of("2001:db8:0:0:ffff::2") == "2001:db8::/64"
    assert network_of("203.0.113.7") == "203.0.113.0/24" and network_of("") == "unknown"


def test_a_full_log_takes_many_networks_in_one_row(database: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refusals, "MAX_ROWS", 5)
    now = utcnow()
    tally: list[Any] = [(Refusal(network_of(f"2001:db8:{i:x}::1"), f"reply+t{i}@reply.test", "unknown", 550,
                                 "550 5.1.1 no such address"), 1, now, now) for i in range(50)]
    record_refusals(tally)
    assert RcptRefusal.select().count() == 6  # five rows, then one "(other)" row for the reason
    [other] = RcptRefusal.select().where(RcptRefusal.rcpt_to == refusals.OTHER)
    assert other.count == 45
