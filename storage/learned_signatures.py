"""Signatures learned per sender address: the blocks that ended a sender's accepted mails (keyed by a hash of
their words, gateway/inbound/learned_signatures.py), how often, and whether the team undid one.

A block seen in LEARN_AFTER accepted mails of one sender is learned: the gateway cuts it from that sender's
next mails. Only mail that was accepted and posted is remembered (the gateway's store step), at most
MAX_BLOCK_TEXT characters of a block and at most MAX_PER_SENDER blocks per sender (the oldest blocks seen
once make room), so a sender can make us keep only a bounded amount. A block the team undid is never cut
again, however often it repeats, until the team asks for it to be cut again.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from peewee import AutoField, Case, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField, fn

from storage.db import write_transaction
from storage.models import BaseModel, User, utcnow

LEARN_AFTER = 2  # mails of one sender a block ends before it is cut from the next
MAX_PER_SENDER = 40  # blocks remembered per sender address
MAX_BLOCK_TEXT = 1000  # characters of a block's text kept (to show the team what is cut)
MAX_ADDRESS = 320


class LearnedSignature(BaseModel):
    """A block of lines that ended one or more accepted mails of a sender."""

    id = AutoField()
    sender = CharField(max_length=MAX_ADDRESS)  # the From address, lower case
    key = CharField(max_length=64)  # SHA-256 of the block's words
    text = TextField()  # the block as first seen, for the team to read
    seen = IntegerField(default=1)  # accepted mails it ended
    first_seen_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    learned_at = DateTimeField(null=True)  # when it was seen the LEARN_AFTER-th time
    undone_at = DateTimeField(null=True)  # the team asked for it not to be cut
    undone_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    undone_by_id: int | None

    class Meta:
        table_name = "learned_signature"
        indexes = ((("sender", "key"), True),)

    @property
    def cut(self) -> bool:
        """Whether the gateway cuts it from the sender's mail."""
        return self.learned_at is not None and self.undone_at is None


def learned_keys(sender: str) -> frozenset[str]:
    """The keys of the blocks cut from this sender's mail."""
    if not sender:
        return frozenset()
    rows = (LearnedSignature.select(LearnedSignature.key)
            .where((LearnedSignature.sender == sender.lower()[:MAX_ADDRESS])
                   & LearnedSignature.learned_at.is_null(False) & LearnedSignature.undone_at.is_null(True)))
    return frozenset(row.key for row in rows)


def remember_blocks(sender: str, blocks: Iterable[tuple[str, str]], *, now: dt.datetime | None = None) -> None:
    """Counts (key, text) blocks that ended an accepted mail of sender, inside the caller's transaction (the
    gateway's, which also posts the mail). A block seen the LEARN_AFTER-th time is learned."""
    blocks = list(blocks)
    if not sender or not blocks:
        return
    sender = sender.lower()[:MAX_ADDRESS]
    now = now or utcnow()
    for key, text in blocks:
        (LearnedSignature
         .insert(sender=sender, key=key, text=text[:MAX_BLOCK_TEXT], seen=1, first_seen_at=now, last_seen_at=now,
                 learned_at=now if LEARN_AFTER <= 1 else None)
         .on_conflict(conflict_target=[LearnedSignature.sender, LearnedSignature.key],
                      update={LearnedSignature.seen: LearnedSignature.seen + 1, LearnedSignature.last_seen_at: now,
                              LearnedSignature.learned_at: fn.COALESCE(
                                  LearnedSignature.learned_at,
                                  Case(None, [(LearnedSignature.seen + 1 >= LEARN_AFTER, now)], None))})
         .execute())
    _keep_within_cap(sender)


def _keep_within_cap(sender: str) -> None:
    """Past MAX_PER_SENDER blocks, the least recently seen blocks that were seen once go."""
    count = LearnedSignature.select().where(LearnedSignature.sender == sender).count()
    if count <= MAX_PER_SENDER:
        return
    oldest = (LearnedSignature.select(LearnedSignature.id)
              .where((LearnedSignature.sender == sender) & (LearnedSignature.seen < LEARN_AFTER)
                     & LearnedSignature.undone_at.is_null(True))
              .order_by(LearnedSignature.last_seen_at, LearnedSignature.id).limit(count - MAX_PER_SENDER))
    ids = [row.id for row in oldest]
    if ids:
        LearnedSignature.delete().where(LearnedSignature.id.in_(ids)).execute()


def signatures_of(sender: str) -> list[LearnedSignature]:
    """The sender's learned blocks (cut or undone), newest first: what the team is shown."""
    return list(LearnedSignature.select()
                .where((LearnedSignature.sender == sender.lower()[:MAX_ADDRESS])
                       & LearnedSignature.learned_at.is_null(False))
                .order_by(LearnedSignature.learned_at.desc(), LearnedSignature.id.desc()))


def set_cut(signature: LearnedSignature, actor: User, cut: bool, *, now: dt.datetime | None = None) -> None:
    """Undo a learned signature (it is no longer cut, and not learned again however often it repeats), or
    cut it again."""
    now = now or utcnow()
    with write_transaction():
        (LearnedSignature.update(undone_at=None if cut else now, undone_by=None if cut else actor.id)
         .where(LearnedSignature.id == signature.id).execute())
    signature.undone_at = None if cut else now
    signature.undone_by_id = None if cut else actor.id


__all__ = ["LEARN_AFTER", "LearnedSignature", "learned_keys", "remember_blocks", "set_cut",
           "signatures_of"]
