"""The inbound pipeline without SMTP: each outcome (accepted, dropped with its reason, rejected with its code
and sentence, deferred) for the named mails of tests/emails, what is stored, and `workrate trim`'s preview."""
from __future__ import annotations

import pytest
from gateway_support import People, eml, inbound_rows, posts, run_pipeline

from config import Settings
from gateway import errors
from gateway.addresses import format_reply_address
from gateway.inbound.authenticate import resolve_recipient
from gateway.inbound.mail import InboundMail
from gateway.inbound.preview import preview_reply
from storage.db import database
from storage.files import FileStore
from storage.held import HeldPost
from storage.mail_log import (
    ACCEPTED,
    DEFERRED,
    DROPPED,
    RAW_IN_DATABASE_MAX,
    REJECTED,
    OutboxEmail,
    RawMail,
    read_raw_mail,
)
from storage.posting import MAX_TEXT_LENGTH, post_message


def process(settings: Settings, name: str, to: str | list[str], *, sender: str = "bob@acme.test",
            mail_from: str | None = None, raw: bytes | None = None) -> tuple[errors.Outcome, InboundMail]:
    """Runs one named mail through the pipeline, as the SMTP handler would after RCPT."""
    rcpts = [to] if isinstance(to, str) else to
    raw = raw if raw is not None else eml(name, to=", ".join(rcpts), sender=sender)
    mail = InboundMail(raw=raw, settings=settings, mail_from=sender if mail_from is None else mail_from,
                       recipients=[resolve_recipient(a, settings) for a in rcpts])
    return run_pipeline(mail), mail


def test_accepted_reply_is_stored_with_its_raw_mail_and_trimmed_text(settings, people: People):
    # Accepted: one InboundEmail row, the post with the cut text kept beside it, the raw bytes in the store.
    outcome, mail = process(settings, "plain_reply.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted) and outcome.code == 250
    [message] = posts(people.thread)
    assert message.text == "Looks great, approved!"
    assert "Homepage revisions are ready" in (message.trimmed_text or "")
    [row] = inbound_rows()
    assert (row.outcome, row.message_id, row.subject, row.mail_message_id) == (
        ACCEPTED, message.id, "Re: Acme Co messages", mail.message_id)
    assert read_raw_mail(row.raw_key, FileStore(settings.effective_files_dir)) == mail.raw


def test_a_small_raw_mail_is_kept_in_the_database_and_a_large_one_in_the_file_store(settings, people: People):
    # Up to RAW_IN_DATABASE_MAX bytes the raw mail is a raw_mail row written with its InboundEmail row (no file
    # of its own); above it, a file in the content-addressed store. Either way read_raw_mail finds it.
    files = FileStore(settings.effective_files_dir)
    _, small = process(settings, "plain_reply.eml", people.bob_address)
    assert bytes(RawMail.get_by_id(small.raw_key).data) == small.raw and not files.exists(small.raw_key)
    big_raw = eml("plain_reply.eml", to=people.bob_address).replace(b"Message-ID: <", b"Message-ID: <big-", 1)
    big_raw += (b"> " + b"y" * 70 + b"\r\n") * 4000  # 288 KB of quoted history
    assert len(big_raw) > RAW_IN_DATABASE_MAX
    outcome, big = process(settings, "plain_reply.eml", people.bob_address, raw=big_raw)
    assert isinstance(outcome, errors.Accepted)
    assert RawMail.get_or_none(RawMail.key == big.raw_key) is None and files.read(big.raw_key) == big_raw
    assert [read_raw_mail(r.raw_key, files) for r in inbound_rows()] == [small.raw, big_raw]


@pytest.mark.parametrize("name, dropped", [
    ("auto_reply.eml", errors.ClientAway),
    ("precedence_bulk.eml", errors.AutoReply),
    ("own_loop.eml", errors.OwnLoop),
    ("bounce_dsn.eml", errors.Bounce),
])
def test_dropped_mail_is_recorded_with_its_reason(settings, people: People, name, dropped):
    # Dropped: answered 250, one row with the reason, nothing posted.
    outcome, _ = process(settings, name, people.bob_address)
    assert type(outcome) is dropped and outcome.code == 250
    assert posts(people.thread) == []
    assert [(r.outcome, r.reason, r.smtp_code) for r in inbound_rows()] == [(DROPPED, dropped.reason, 250)]


def test_a_duplicate_is_dropped_and_posted_once(settings, people: People):
    # The second run of the same mail is a Duplicate, decided by the unique index.
    raw = eml("plain_reply.eml", to=people.bob_address)
    first, _ = process(settings, "", people.bob_address, raw=raw)
    second, _ = process(settings, "", people.bob_address, raw=raw)
    assert isinstance(first, errors.Accepted) and isinstance(second, errors.Duplicate)
    assert len(posts(people.thread)) == 1


@pytest.mark.parametrize("name, rejected", [
    ("wrong_sender.eml", errors.WrongSender),
    ("no_from.eml", errors.NoSender),
    ("empty_reply.eml", errors.EmptyReply),
])
def test_rejected_mail_carries_code_status_and_sentence(settings, people: People, name, rejected):
    # Rejected: the row keeps the code and the sentence the sender was told.
    outcome, mail = process(settings, name, people.bob_address)
    assert type(outcome) is rejected
    assert outcome.smtp_reply == f"{rejected.code} {rejected.status} {rejected.text}"
    [row] = inbound_rows()
    assert (row.outcome, row.reason, row.smtp_code, row.smtp_text, row.raw_key) == (
        REJECTED, rejected.reason, rejected.code, rejected.text, mail.raw_key)


def test_a_reply_longer_than_a_message_can_be_is_refused(settings, people: People):
    # A reply text beyond what a message holds is refused with a sentence, not cut silently.
    raw = eml("plain_reply.eml", to=people.bob_address).replace(
        b"Looks great, approved!", b"word " * (MAX_TEXT_LENGTH // 4))
    outcome, _ = process(settings, "", people.bob_address, raw=raw)
    assert type(outcome) is errors.ReplyTooLong and outcome.status == "5.6.0"


def test_dmarc_failure_is_refused_only_behind_the_trusted_mta(settings, people: People):
    # With TRUSTED_AUTHSERV_ID set, that MTA's dmarc=fail refuses the mail; headers below it don't count,
    # and without the setting the header is ignored.
    trusted = settings.replace(trusted_authserv_id="mx.agency.test")
    outcome, _ = process(trusted, "dmarc_fail.eml", people.bob_address)
    assert type(outcome) is errors.DmarcFailed and outcome.smtp_reply.startswith("550 5.7.1 ")
    outcome, _ = process(trusted, "dmarc_pass.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted)
    outcome, _ = process(settings, "dmarc_fail.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted)


def test_eight_bit_latin1_and_encoded_headers_are_decoded(settings, people: People):
    # Raw 8-bit ISO-8859-1 text and encoded-word headers come out as the right characters.
    outcome, mail = process(settings, "latin1_8bit.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted)
    assert posts(people.thread)[0].text == "Grüße aus München."
    assert mail.subject == "Re: Grüße" and mail.from_name == "Björn Stone"


def test_broken_mime_falls_back_to_the_standard_parser(settings, people: People):
    # flanker refuses a multipart without boundary; the stdlib parser still reads the reply.
    outcome, mail = process(settings, "broken_mime.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted)
    assert mail.parsed is not None and mail.parsed.parser == "stdlib"
    assert "without a boundary parameter" in posts(people.thread)[0].text


def test_inline_images_of_the_quote_are_dropped_and_those_of_the_reply_kept(settings, people: People):
    # The sketch is referenced from the new text and kept; the agency logo only from the quote.
    outcome, _ = process(settings, "inline_images.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted)
    assert [a.name for a in posts(people.thread)[0].attachments] == ["sketch.gif"]


def test_an_attachment_without_text_is_a_reply(settings, people: People):
    # No text of its own but a file: posted (the file is the reply).
    outcome, _ = process(settings, "attachment_only.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted)
    [message] = posts(people.thread)
    assert [(a.name, a.content_type) for a in message.attachments] == [("image.png", "image/png")]


def test_a_reply_to_the_plain_reply_address_finds_its_thread_from_references(settings, people: People):
    # When the +TOKEN was lost, In-Reply-To naming one of our notifications identifies person and thread
    # (without such a reference the mail is refused); but a Message-ID proves nothing about who wrote it, so
    # the reply is held until that person confirms it by email (tests/test_security_held.py).
    message = post_message(people.thread, people.kim, "Homepage revisions are ready.")
    mid = "<wr.1.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=mid).where(OutboxEmail.message == message.id).execute()
    plain = f"reply@{settings.reply_domain}"
    raw = eml("plain_reply.eml", to=plain).replace(b"Subject:", f"In-Reply-To: {mid}\r\nSubject:".encode())
    outcome, _ = process(settings, "", plain, raw=raw)
    assert isinstance(outcome, errors.HeldForConfirmation)
    assert HeldPost.get().author_id == people.bob.id and len(posts(people.thread)) == 1
    outcome, _ = process(settings, "plain_reply.eml", plain)
    assert type(outcome) is errors.UnknownReplyAddress
    outcome, _ = process(settings, "", plain, raw=raw.replace(b"bob@acme.test", b"eve@acme.test"),
                         sender="eve@acme.test")
    assert type(outcome) is errors.WrongSender


def test_the_plain_reply_address_never_answers_an_internal_note_or_a_foreign_envelope(settings, people: People):
    # Without the token, a known Message-ID is not enough: whatever the envelope, the person confirms by
    # email first, and an internal note's notification can only be answered through its internal-audience
    # reply address.
    message = post_message(people.thread, people.kim, "Homepage revisions are ready.")
    mid = "<wr.2.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=mid).where(OutboxEmail.message == message.id).execute()
    plain = f"reply@{settings.reply_domain}"
    raw = eml("plain_reply.eml", to=plain).replace(b"Subject:", f"In-Reply-To: {mid}\r\nSubject:".encode())
    outcome, _ = process(settings, "", plain, raw=raw, mail_from="attacker@evil.test")
    assert type(outcome) is errors.HeldForConfirmation and len(posts(people.thread)) == 1
    note = post_message(people.thread, people.bob, "Question for the team.")
    internal = post_message(people.thread, people.kim, "Internal: check the budget.", internal=True)
    internal_mid = "<wr.3.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=internal_mid, internal=True).where(
        OutboxEmail.message.in_([note.id, internal.id])).execute()
    raw = eml("plain_reply.eml", to=plain, sender="kim@agency.test").replace(
        b"Subject:", f"In-Reply-To: {internal_mid}\r\nSubject:".encode())
    outcome, _ = process(settings, "", plain, raw=raw, sender="kim@agency.test")
    assert type(outcome) is errors.UnknownReplyAddress
    # Nor is an older, client-visible notification further back in References taken instead: the mail
    # answers the internal note, and posting it where the client sees it would leak the answer.
    later = post_message(people.thread, people.bob, "Another question.")
    client_mid = "<wr.4.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=client_mid).where(OutboxEmail.message == later.id).execute()
    assert OutboxEmail.get(OutboxEmail.mail_message_id == client_mid).recipient_id == people.kim.id
    raw = eml("plain_reply.eml", to=plain, sender="kim@agency.test").replace(
        b"Subject:", f"In-Reply-To: {internal_mid}\r\nReferences: {client_mid} {internal_mid}\r\nSubject:".encode())
    outcome, _ = process(settings, "", plain, raw=raw, sender="kim@agency.test")
    assert type(outcome) is errors.UnknownReplyAddress
    assert not [m for m in posts(people.thread) if m.text == "Looks great, approved!"]


def test_a_locked_database_defers_with_the_raw_mail_kept(settings, people: People, monkeypatch):
    # "database is locked" (or a PostgreSQL lock timeout) is Deferred: 451, raw mail kept, nothing posted.
    import sqlite3

    from storage.db import SQLITE_PRAGMAS

    address = people.bob_address
    if settings.is_postgres:
        import psycopg2

        holder = psycopg2.connect(settings.effective_database_url)
        holder.cursor().execute("LOCK TABLE inbound_email IN ACCESS EXCLUSIVE MODE")
        database.execute_sql("SET lock_timeout = '200ms'")
        # The group commit's worker threads open connections of their own: they wait as long.
        database_name = settings.effective_database_url.rsplit("/", 1)[1]
        database.execute_sql(f"ALTER DATABASE {database_name} SET lock_timeout = '200ms'")
    else:
        holder = sqlite3.connect(settings.effective_database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        database.execute_sql("PRAGMA busy_timeout = 200")
        monkeypatch.setitem(SQLITE_PRAGMAS, "busy_timeout", 200)  # how long the group commit waits for the lock
    try:
        outcome, mail = process(settings, "plain_reply.eml", address)
    finally:
        holder.rollback()
        holder.close()
        if settings.is_postgres:
            database.execute_sql(f"ALTER DATABASE {database_name} RESET lock_timeout")
    assert type(outcome) is errors.DatabaseBusy and outcome.smtp_reply.startswith("451 4.3.0 ")
    assert read_raw_mail(mail.raw_key, FileStore(settings.effective_files_dir)) == mail.raw
    database.connect(reuse_if_open=True)
    assert posts(people.thread) == []


def test_an_unexpected_error_defers_and_the_server_goes_on(settings, people: People, tmp_path):
    # A failure nobody planned for (here: the file store's folder is a file) is answered 451, recorded,
    # and the next mail with a working store goes through.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    outcome, mail = process(settings.replace(files_dir=str(blocked)), "with_attachment.eml", people.bob_address)
    assert type(outcome) is errors.Deferred and outcome.smtp_reply.startswith("451 4.3.0 ")
    # The raw mail is kept with its row, in the database, for whoever looks into the error.
    assert [(r.outcome, r.reason, r.raw_key) for r in inbound_rows()] == [(DEFERRED, "error", mail.raw_key)]
    assert read_raw_mail(mail.raw_key, FileStore(settings.effective_files_dir)) == mail.raw
    outcome, _ = process(settings, "with_attachment.eml", people.bob_address)
    assert isinstance(outcome, errors.Accepted)


def test_every_outcome_class_has_a_reply_line_a_person_can_read():
    # Every outcome formats as "CODE X.Y.Z Sentence." with a matching class of code and status.
    classes = [errors.Accepted]
    stack = [errors.InboundError]
    while stack:
        cls = stack.pop()
        classes.append(cls)
        stack.extend(cls.__subclasses__())
    for cls in classes:
        outcome = cls()
        code, status, text = outcome.smtp_reply.split(" ", 2)
        assert code == str(cls.code) and status == cls.status and status[0] == code[0], cls
        assert text.endswith(".") and text.isascii() and len(text.split()) >= 5, cls
        assert len(cls.reason) <= 40, cls


def test_preview_shows_what_the_gateway_would_post():
    # `workrate trim`: a whole mail is parsed as the gateway does; plain text is a body; bytes never raise.
    assert preview_reply(eml("gmail_reply.eml", to="reply@x.test")) == "The colours look right to me — ship it."
    assert preview_reply(b"Thanks!\n\nOn Tue, Nov 24, 2026 at 10:00 AM Kim Lee <kim@agency.test> wrote:\n"
                         b"> old text\n") == "Thanks!"
    for data in (b"", b"\x00\xff\xfe", b"Subject: x\r\n\r\n", b"From: \xff\r\n\r\n\xff" * 3, bytes(range(256))):
        assert isinstance(preview_reply(data), str)


def test_preview_matches_the_posted_text(settings, people: People):
    # The preview and the gateway agree, including for HTML-only mail.
    raw = eml("html_only_reply.eml", to=people.bob_address)
    process(settings, "", people.bob_address, raw=raw)
    assert posts(people.thread)[0].text == preview_reply(raw)


def test_format_and_resolve_agree_on_addresses(settings, people: People):
    # The address that notifications carry resolves to its owner, thread and audience.
    address = format_reply_address(people.address(people.kim, internal=True).split("+")[1].split("@")[0],
                                   settings.reply_domain)
    recipient = resolve_recipient(address, settings)
    assert (recipient.user_id, recipient.thread_id, recipient.internal) == (people.kim.id, people.thread.id, True)
