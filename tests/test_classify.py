"""The pure predicates that decide what is not a reply: auto_reply_kind, detect_bounce, is_our_loop and
dmarc_failed, table-driven over the named mails of tests/emails and small header-only cases."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from gateway_support import eml

from gateway.inbound.authenticate import dmarc_failed
from gateway.inbound.classify import (
    MASS_MAIL,
    OUT_OF_OFFICE,
    READ_RECEIPT,
    ROBOT,
    BounceReport,
    auto_reply_kind,
    detect_bounce,
    is_our_loop,
)
from gateway.inbound.parse import parse_bytes, sender_of


@dataclass(frozen=True)
class Case:
    desc: str
    raw: bytes
    auto: bool = False
    bounce: BounceReport | None = None
    envelope_sender: str = "bob@acme.test"


def headers(*lines: str, body: str = "Hello.") -> bytes:
    return ("\r\n".join(("From: Bob <bob@acme.test>",) + lines) + "\r\n\r\n" + body + "\r\n").encode()


CASES = [
    Case("a person's reply", eml("plain_reply.eml", to="x@reply.test")),
    Case("Gmail reply with HTML", eml("gmail_reply.eml", to="x@reply.test")),
    Case("Outlook: X-Auto-Response-Suppress and Auto-Submitted: no are ordinary mail",
         eml("outlook_reply_suppress.eml", to="x@reply.test")),
    Case("Auto-Submitted: auto-replied", eml("auto_reply.eml", to="x@reply.test"), auto=True),
    Case("Out of Office subject", eml("out_of_office_subject.eml", to="x@reply.test"), auto=True),
    Case("Precedence: bulk", eml("precedence_bulk.eml", to="x@reply.test"), auto=True),
    Case("read receipt", eml("read_receipt.eml", to="x@reply.test"), auto=True),
    Case("Auto-Submitted: auto-generated", headers("Auto-Submitted: auto-generated"), auto=True),
    Case("Auto-Submitted: No", headers("Auto-Submitted: No")),
    Case("X-Autoreply: yes", headers("X-Autoreply: yes"), auto=True),
    Case("X-Autorespond", headers("X-Autorespond: Vacation"), auto=True),
    Case("Precedence: junk", headers("Precedence: junk"), auto=True),
    Case("Precedence: list", headers("Precedence: list"), auto=True),
    Case("Precedence: first-class", headers("Precedence: first-class")),
    Case("X-MS-Exchange-Inbox-Rules-Loop", headers("X-MS-Exchange-Inbox-Rules-Loop: bob@acme.test"), auto=True),
    Case("German subject", headers("Subject: Automatische Antwort: Acme"), auto=True),
    Case("French subject", headers("Subject: Réponse automatique : Acme"), auto=True),
    Case("Spanish subject", headers("Subject: Respuesta automática: Acme"), auto=True),
    Case("Dutch subject", headers("Subject: Automatisch antwoord: Acme"), auto=True),
    Case("Chinese subject", headers("Subject: 自动回复: Acme"), auto=True),
    Case("encoded Japanese subject", headers("Subject: =?utf-8?b?6Ieq5YuV5b+c562U?="), auto=True),
    Case("a reply quoting an auto-reply subject", headers("Subject: Re: Out of Office")),
    Case("noreply sender", b"From: Robot <no-reply@acme.test>\r\n\r\nHi\r\n", auto=True),
    Case("DSN hard bounce", eml("bounce_dsn.eml", to="x@reply.test"), envelope_sender="",
         bounce=BounceReport(failed=True, hard=True, status="5.1.1",
                             diagnostic="smtp; 550 5.1.1 <bob@acme.test>: Recipient address rejected: User unknown")),
    Case("DSN delayed", eml("bounce_delayed.eml", to="x@reply.test"), envelope_sender="",
         bounce=BounceReport(failed=False, hard=False, status="4.4.1",
                             diagnostic="smtp; connect to mx2.acme.test: Connection timed out")),
    Case("qmail text bounce from postmaster", eml("bounce_plain_text.eml", to="x@reply.test"), envelope_sender="",
         bounce=BounceReport(failed=True, hard=True, status="5.1.1", diagnostic="")),
    Case("null sender with an undeliverable subject", b"From: Mail System <mail@mx.acme.test>\r\n"
         b"Subject: Undeliverable: Acme\r\n\r\nDelivery has failed: 550 no such user\r\n", envelope_sender="<>",
         bounce=BounceReport(failed=True, hard=True, status="", diagnostic="")),
    Case("X-Failed-Recipients", headers("X-Failed-Recipients: bob@acme.test", body="421 try later"),
         bounce=BounceReport(failed=True, hard=False, status="", diagnostic="")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_is_auto_reply_and_detect_bounce(case: Case):
    # Each mail is classified as the table says; a delivery report is a bounce whatever else it looks like.
    parsed = parse_bytes(case.raw)
    _, sender = sender_of(parsed)
    assert detect_bounce(parsed, case.envelope_sender, sender) == case.bounce
    if case.bounce is None:
        assert (auto_reply_kind(parsed, sender) is not None) is case.auto


@pytest.mark.parametrize("desc, raw, ours", [
    ("our loop header", eml("own_loop.eml", to="x@reply.test"), True),
    ("From one of our reply addresses", b"From: reply+0123456789abcdef0123456789abcdef@reply.test\r\n\r\nx", True),
    ("From our notification sender", b"From: WorkRate <Notifications@reply.test>\r\n\r\nx", True),
    ("From a person", eml("plain_reply.eml", to="x@reply.test"), False),
    ("From a look-alike domain", b"From: x@reply.test.evil.test\r\n\r\nx", False),
])
def test_is_our_loop(desc, raw, ours):
    # Mail that carries our loop header or claims our own addresses is ours coming back.
    parsed = parse_bytes(raw)
    assert is_our_loop(parsed, sender_of(parsed)[1], "reply.test", "notifications@reply.test") is ours


@pytest.mark.parametrize("desc, lines, trusted, failed", [
    ("trusted MTA says fail", ["Authentication-Results: mx.agency.test; dmarc=fail header.from=acme.test"],
     "mx.agency.test", True),
    ("trusted MTA says pass", ["Authentication-Results: mx.agency.test; dmarc=pass"], "mx.agency.test", False),
    ("only the topmost trusted header counts", ["Authentication-Results: mx.agency.test; dmarc=pass",
                                                "Authentication-Results: mx.agency.test; dmarc=fail"],
     "mx.agency.test", False),
    ("another authserv-id is ignored", ["Authentication-Results: evil.test; dmarc=fail"], "mx.agency.test", False),
    ("no trusted id configured", ["Authentication-Results: mx.agency.test; dmarc=fail"], "", False),
    ("case of the id does not matter", ["Authentication-Results: MX.Agency.Test; DMARC=FAIL"], "mx.agency.test",
     True),
])
def test_dmarc_failed(desc, lines, trusted, failed):
    # Only the trusted MTA's verdict counts, and only its newest one.
    assert dmarc_failed(parse_bytes(headers(*lines)), trusted) is failed


KINDS = [
    (eml("auto_reply.eml", to="x@reply.test"), OUT_OF_OFFICE),
    (eml("out_of_office_subject.eml", to="x@reply.test"), OUT_OF_OFFICE),
    (headers("Auto-Submitted: auto-generated"), OUT_OF_OFFICE),
    (headers("X-Autoreply: yes"), OUT_OF_OFFICE),
    (headers("Precedence: auto_reply"), OUT_OF_OFFICE),
    (headers("Subject: Abwesenheitsnotiz: Acme"), OUT_OF_OFFICE),
    # Automatic, but saying nothing about the person being away: never noted as "away".
    (eml("precedence_bulk.eml", to="x@reply.test"), MASS_MAIL),
    (headers("Precedence: list", "Auto-Submitted: auto-generated"), MASS_MAIL),
    (eml("read_receipt.eml", to="x@reply.test"), READ_RECEIPT),
    (b"From: Robot <no-reply@acme.test>\r\nAuto-Submitted: auto-replied\r\n\r\nHi\r\n", ROBOT),
    (eml("plain_reply.eml", to="x@reply.test"), None),
]


@pytest.mark.parametrize("raw, kind", KINDS)
def test_auto_reply_kind_tells_an_out_of_office_reply_from_other_automatic_mail(raw: bytes, kind: str | None):
    parsed = parse_bytes(raw)
    assert auto_reply_kind(parsed, sender_of(parsed)[1]) == kind
