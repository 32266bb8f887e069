"""Refusals at RCPT time, for the mail log, counted rather than stored one by one.

A stranger can send any number of RCPT commands, so each is not a row: one row per (network, recipient,
reason) counts the repeats with the first and last time, and beyond MAX_ROWS distinct rows further ones fold
into a single "(other)" row per reason. A refused reply address is kept redacted, its token cut to a hint as
in the logs (an archived workspace's addresses work again once it is restored), with the token's SHA-256 so
that the mail log can still tell which workspace it belonged to. The gateway tallies in memory and writes in
batches (gateway/inbound/refusal_tally.py).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

from storage import networks
from storage.db import write_transaction
from storage.models import BaseModel, utcnow
from storage.redaction import redact

MAX_ROWS = 10_000
OTHER = "(other)"


class RcptRefusal(BaseModel):
    id = AutoField()
    network = CharField(max_length=64)  # the peer's /24 (IPv4) or /64 (IPv6)
    rcpt_to = CharField(max_length=320)
    reason = CharField(max_length=40)
    smtp_code = IntegerField()
    smtp_text = TextField(default="")
    first_at = DateTimeField(default=utcnow)
    last_at = DateTimeField(default=utcnow, index=True)
    count = IntegerField(default=1)
    token_hash = CharField(max_length=64, null=True, index=True)  # SHA-256 of a reply address's token

    class Meta:
        indexes = ((("network", "rcpt_to", "reason"), True),)


@dataclass(frozen=True)
class Refusal:
    network: str
    rcpt_to: str
    reason: str
    smtp_code: int
    smtp_text: str
    token_hash: str = ""


def network_of(host: str) -> str:
    """The /24 or /64 of the peer's address (storage/networks.py), so one sender's neighbours count together."""
    return networks.network_of(host or "")[:64]


def record_refusals(tally: Iterable[tuple[Refusal, int, dt.datetime, dt.datetime]]) -> None:
    """Adds counted refusals (refusal, how many, first, last) to their rows, in one transaction."""
    with write_transaction():
        rows: int | None = None
        for refusal, count, first, last in tally:
            rcpt = redact(refusal.rcpt_to)[:320]
            for attempt in (rcpt, OTHER):
                # Once full, one overflow row per reason, whatever the network: a stranger with many networks
                # adds nothing more.
                network = refusal.network[:64] if attempt != OTHER else OTHER
                key = ((RcptRefusal.network == network) & (RcptRefusal.rcpt_to == attempt)
                       & (RcptRefusal.reason == refusal.reason[:40]))
                if RcptRefusal.update(count=RcptRefusal.count + count, last_at=last).where(key).execute():
                    break
                if rows is None:
                    rows = RcptRefusal.select().count()
                if rows >= MAX_ROWS and attempt != OTHER:
                    continue
                rows += 1
                RcptRefusal.create(network=network, rcpt_to=attempt, reason=refusal.reason[:40],
                                   smtp_code=refusal.smtp_code, smtp_text=refusal.smtp_text[:1000],
                                   first_at=first, last_at=last, count=count,
                                   token_hash=(refusal.token_hash or None) if attempt != OTHER else None)
                break


__all__ = ["RcptRefusal", "Refusal", "network_of", "record_refusals", "MAX_ROWS"]
