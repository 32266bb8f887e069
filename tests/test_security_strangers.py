"""Issue 16, nothing stored for strangers: refused mail keeps its head only, its raw mail expires, and
reply@ takes only so many mails per sender and network. Each test replays the audit's attack, bounded."""
from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any

from gateway_support import People, eml, inbound_rows, posts, send, start_gateway

from config import Settings
from gateway import errors
from gateway.inbound.strangers import STRANGER_RAW_MAX
from storage.files import FileStore
from storage.mail_log import ACCEPTED, REJECTED, InboundEmail, RawMail, read_raw_mail
from storage.models import utcnow
from storage.retention import purge_refused_raw_mail


def _big_mail(to: str, sender: str, size: int) -> bytes:
    blob = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    head = eml("plain_reply.eml", to=to, sender=sender).split(b"\r\n\r\n", 1)[0]
    head = head.replace(b"Content-Type: text/plain; charset=utf-8", b"Content-Type: application/octet-stream")
    return head.replace(b"Content-Transfer-Encoding: 8bit", b"Content-Transfer-Encoding: base64") + \
        b"\r\n\r\n" + blob


def _stored_bytes(settings: Settings) -> int:
    root = Path(settings.effective_files_dir)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def test_a_strangers_big_mails_do_not_fill_the_disk(gateway: Any, people: People, settings: Settings) -> None:
    # The audit: five 4.7 MB mails from a stranger, all refused 550, still added 24 MB to the file store. Now
    # a mail refused before its sender is known keeps its first 64 KB (its headers) in the database, nothing
    # in the file store (and 240 KB refusals no longer grow raw_mail by their size). Mails of 0.24, 0.5 and
    # 4.5 MB take each of the gateway's ways of keeping raw mail.
    before = _stored_bytes(settings)
    for size, rcpt in ((4_500_000, "reply@reply.test"), (500_000, "reply@reply.test"),
                       (500_000, people.bob_address), (240_000, "reply@reply.test")):
        raw = _big_mail(rcpt, "mallory@evil.test", size)
        code, _ = send(gateway.port, raw, rcpt, sender="mallory@evil.test")
        assert code == 550
    assert _stored_bytes(settings) == before
    rows = inbound_rows()
    assert [r.outcome for r in rows] == [REJECTED] * 4 and all(r.size > STRANGER_RAW_MAX for r in rows)
    for row in rows:
        kept = read_raw_mail(row.raw_key, FileStore(settings.effective_files_dir))
        assert kept is not None and len(kept) <= STRANGER_RAW_MAX and kept.startswith(b"From: Bob Stone")
    assert sum(len(bytes(r.data)) for r in RawMail.select()) <= 4 * STRANGER_RAW_MAX


def test_an_accepted_reply_keeps_its_whole_raw_mail(gateway: Any, people: People, settings: Settings) -> None:
    raw = eml("plain_reply.eml", to=people.bob_address) + b"x" * (STRANGER_RAW_MAX * 2) + b"\r\n"
    assert send(gateway.port, raw, people.bob_address)[0] == 250
    [row] = inbound_rows()
    assert read_raw_mail(row.raw_key, FileStore(settings.effective_files_dir)) == raw


def test_raw_mail_of_refused_mail_expires_and_accepted_mail_keeps_its_own(gateway: Any, people: People,
                                                                           settings: Settings) -> None:
    # The audit: the raw mail was kept for every outcome and never deleted. After REFUSED_MAIL_DAYS the
    # worker's cleanup deletes a refused mail's raw copy (database and file store); an accepted one stays.
    big = _big_mail(people.bob_address, "bob@acme.test", 400_000)
    assert send(gateway.port, eml("plain_reply.eml", to=people.bob_address), people.bob_address)[0] == 250
    assert send(gateway.port, big, "reply@reply.test", sender="bob@acme.test")[0] == 550
    refused = InboundEmail.get(InboundEmail.outcome == REJECTED)
    # an authenticated sender's refused big mail (not a stranger's): kept whole in the file store, for a while
    FileStore(settings.effective_files_dir).put_bytes(big)
    InboundEmail.update(raw_key=FileStore.pending(big).key).where(InboundEmail.id == refused.id).execute()
    assert purge_refused_raw_mail(settings.effective_files_dir, settings.refused_mail_days) == 0
    later = utcnow() + dt.timedelta(days=settings.refused_mail_days + 1)
    assert purge_refused_raw_mail(settings.effective_files_dir, settings.refused_mail_days, later) == 1
    assert InboundEmail.get_by_id(refused.id).raw_key is None
    assert not FileStore(settings.effective_files_dir).exists(FileStore.pending(big).key)
    accepted = InboundEmail.get(InboundEmail.outcome == ACCEPTED)
    assert read_raw_mail(accepted.raw_key, FileStore(settings.effective_files_dir)) is not None
    assert len(posts(people.thread)) == 1


def test_reply_at_is_limited_per_sender_and_per_network(settings: Settings, database: object,
                                                        people: People) -> None:
    # reply@ is open to anyone: a stranger's stream of mails to it is told to slow down (451 4.7.1) after
    # REPLY_PLAIN_PER_HOUR, per sender address and, whatever address they write from, per network.
    controller = start_gateway(settings.replace(reply_plain_per_hour=3))
    try:
        codes = [send(controller.port, eml("plain_reply.eml", to="reply@reply.test", sender="m@evil.test"),
                      "reply@reply.test", sender="m@evil.test") for _ in range(4)]
        other = send(controller.port, eml("plain_reply.eml", to="reply@reply.test", sender="n@evil.test"),
                     "reply@reply.test", sender="n@evil.test")
    finally:
        controller.stop()
    assert [c for c, _ in codes] == [550, 550, 550, 451]
    assert codes[3][1].startswith(errors.SlowDown.status) and "slow down" in codes[3][1]
    assert other[0] == 451  # the same network (loopback's /24)
