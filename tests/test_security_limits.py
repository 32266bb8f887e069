"""Issue 16, limits: how fast one person or reply address may post, and refused posts leave no files."""
from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway_support import People, eml, posts, send, start_gateway
from web_support import World, post_form, sign_in

from config import Settings
from gateway import errors
from gateway.errors import SlowDown
from gateway.inbound.authenticate import check_plain_rate
from storage.models import Message
from storage.rate_limits import RateCount


def _stored_files(settings: Any) -> list[Path]:
    root = Path(settings.effective_files_dir)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_person_posting_too_fast_on_the_web_is_told_to_slow_down(app: Any, world: World, settings: Any) -> None:
    # The audit: no limit on how fast a person could post, each post notifying everyone. Now beyond
    # POSTS_PER_MINUTE the portal, the team app and the API answer 429 with a sentence.
    app.extensions["workrate_settings"] = settings.replace(posts_per_minute=3)
    client = sign_in(app.test_client(), world.client)
    codes = [post_form(client, "/portal/w/acme/messages", {"text": f"post {i}"}, json=True).status_code
             for i in range(4)]
    assert codes == [201, 201, 201, 429]
    answer = post_form(client, "/portal/w/acme/messages", {"text": "one more"})
    assert answer.status_code == 429 and "posting very fast" in answer.get_data(as_text=True)
    assert Message.select().where(Message.author == world.client).count() == 3


def test_a_reply_address_posting_too_fast_is_told_to_slow_down(settings: Settings, database: object,
                                                              people: People) -> None:
    # The audit: 150 posts on one token in 1.2 s, each notifying the team. Now beyond POSTS_PER_MINUTE the
    # gateway answers 451 4.7.1 (the sender's server retries later) and stores nothing more.
    controller = start_gateway(settings.replace(posts_per_minute=3))
    try:
        address = people.bob_address
        replies = [send(controller.port, eml("plain_reply.eml", to=address), address) for _ in range(5)]
    finally:
        controller.stop()
    assert [code for code, _ in replies] == [250, 250, 250, 451, 451]
    assert replies[3][1].startswith(errors.SlowDown.status)
    assert len(posts(people.thread)) == 3


def test_refused_uploads_leave_no_files(app: Any, world: World, settings: Any) -> None:
    # The audit: three refused portal posts left 60 MB with no message. A post refused after some of its
    # files were stored (here: the second file goes over the size limit) deletes what it stored.
    app.extensions["workrate_settings"] = settings.replace(max_message_size=300_000)
    before = _stored_files(settings)
    client = sign_in(app.test_client(), world.client)
    for _ in range(3):
        data = {"text": "files", "attachments": [(io.BytesIO(os.urandom(200_000)), "a.bin"),
                                                 (io.BytesIO(os.urandom(200_000)), "b.bin")]}
        response = post_form(client, "/portal/w/acme/messages", data, content_type="multipart/form-data")
        assert response.status_code == 400 and "too large" in response.get_data(as_text=True)
    assert _stored_files(settings) == before


def test_a_mail_naming_several_senders_is_refused(settings: Settings, database: object, people: People) -> None:
    # The audit: "From: team@…, client@…" was taken as its first address. Now a mail naming several
    # senders (one header or two) is refused 550 5.7.1 with a sentence, and nothing is posted.
    controller = start_gateway(settings)
    try:
        address = people.bob_address
        raw = eml("plain_reply.eml", to=address)
        two_in_one = raw.replace(b"From: Bob Stone <bob@acme.test>", b"From: kim@agency.test, Bob <bob@acme.test>")
        two_headers = raw.replace(b"From: Bob Stone <bob@acme.test>",
                                  b"From: Bob Stone <bob@acme.test>\r\nFrom: kim@agency.test")
        quoted_comma = raw.replace(b"From: Bob Stone <bob@acme.test>", b'From: "Stone, Bob" <bob@acme.test>')
        answers = [send(controller.port, m, address) for m in (two_in_one, two_headers, quoted_comma)]
    finally:
        controller.stop()
    assert [code for code, _ in answers] == [550, 550, 250]
    assert answers[0][1].startswith("5.7.1") and "several senders" in answers[0][1]
    assert len(posts(people.thread)) == 1


def test_storage_quotas_hold_per_person_and_per_workspace(app: Any, world: World, settings: Any) -> None:
    # The audit: no quota per person or workspace. A post whose files would go over is refused with a
    # sentence, and its files are not kept.
    from storage.quotas import MB

    app.extensions["workrate_settings"] = settings.replace(person_quota_mb=1, workspace_quota_mb=2)
    client = sign_in(app.test_client(), world.client)

    def upload(size: int) -> Any:
        data = {"text": "files", "attachments": [(io.BytesIO(os.urandom(size)), "f.bin")]}
        return post_form(client, "/portal/w/acme/messages", data, content_type="multipart/form-data")

    assert upload(MB // 2).status_code == 302
    before = _stored_files(settings)
    refused = upload(MB // 2 + 1000)
    assert refused.status_code == 400 and "1 MB of storage" in refused.get_data(as_text=True)
    assert _stored_files(settings) == before
    app.extensions["workrate_settings"] = settings.replace(person_quota_mb=100, workspace_quota_mb=2)
    team = sign_in(app.test_client(), world.team)
    for _ in range(2):
        data = {"text": "files", "attachments": [(io.BytesIO(os.urandom(MB - 1000)), "t.bin")]}
        last = post_form(team, "/w/acme/messages", data, content_type="multipart/form-data")
    assert last.status_code == 400 and "workspace&#39;s files would take more than its 2 MB" in last.get_data(
        as_text=True)


def test_a_reply_over_quota_is_refused_and_keeps_no_files(settings: Settings, database: object,
                                                         people: People) -> None:
    import base64

    controller = start_gateway(settings.replace(person_quota_mb=1))
    try:
        address = people.bob_address
        blob = base64.encodebytes(os.urandom(1_200_000)).replace(b"\n", b"\r\n")
        raw = (f"From: Bob Stone <bob@acme.test>\r\nTo: {address}\r\nSubject: Re: files\r\n"
               "Message-ID: <quota.1@acme.test>\r\nMIME-Version: 1.0\r\n"
               'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
               "Here it is.\r\n--b\r\nContent-Type: application/octet-stream\r\n"
               'Content-Disposition: attachment; filename="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
               ).encode() + blob + b"--b--\r\n"
        code, text = send(controller.port, raw, address)
    finally:
        controller.stop()
    assert code == 552 and text.startswith("5.2.2")
    assert posts(people.thread) == []
    kept = [p for p in _stored_files(settings) if p.stat().st_size > 1_000_000 and p.stat().st_size < 1_300_000]
    assert kept == []


def test_rate_counts_are_shared_between_gateways(settings: Settings, people: People) -> None:
    # Before: each gateway process counted on its own, so N processes let a sender through N times the
    # limit. Two gateways here (different settings, as two processes would hold their own counters) alternate.
    first = start_gateway(settings.replace(posts_per_minute=3, reply_plain_per_hour=3))
    second = start_gateway(settings.replace(posts_per_minute=3, reply_plain_per_hour=3, smtp_timeout=301))
    try:
        address = people.bob_address
        codes = []
        for n in range(6):
            raw = eml("plain_reply.eml", to=address).replace(b"Looks great", f"Post {n} looks great".encode())
            codes.append(send((first, second)[n % 2].port, raw, address)[0])
        assert codes == [250, 250, 250, 451, 451, 451] and len(posts(people.thread)) == 3
        plain = []
        for n in range(6):
            raw = eml("plain_reply.eml", to="reply@reply.test", sender="x@elsewhere.test").replace(
                b"Looks great", f"Plain {n}".encode())
            plain.append(send((first, second)[n % 2].port, raw, "reply@reply.test", sender="x@elsewhere.test")[0])
        assert plain == [550] * 3 + [451] * 3  # no reference to a notification: refused, then slowed down
    finally:
        first.stop()
        second.stop()


def test_the_shared_count_holds_under_concurrent_hits(settings: Settings, database: object) -> None:
    # One atomic upsert per hit: 40 simultaneous hits on a limit of 10 let exactly 10 through.
    import threading

    from storage import db
    from storage.rate_limits import hit, purge_old_counts

    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        try:
            for _ in range(5):
                ok = hit("test-key", 10, 3600.0, now=1_000_000.0)
                with lock:
                    results.append(ok)
        finally:
            db.database.close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 40 and results.count(True) == 10
    assert purge_old_counts(dt.datetime(2100, 1, 1)) == 1


def test_a_network_over_its_reply_at_limit_stores_nothing_per_new_sender(settings: Settings,
                                                                          database: object) -> None:
    # A stranger rotating envelope senders from one network: once the network is over, no row per sender.
    settings = settings.replace(reply_plain_per_hour=5)
    refused = 0
    for i in range(60):
        mail = SimpleNamespace(settings=settings, mail_from=f"x{i}@evil.test", peer="203.0.113.7")
        try:
            check_plain_rate(mail)  # type: ignore[arg-type]
        except SlowDown:
            refused += 1
    assert refused == 55 and RateCount.select().count() == 1 + 5  # the network's row, and the first five senders
