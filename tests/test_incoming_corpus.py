"""Discourse's reply-by-email fixtures (../shared/corpora/incoming, read in place, skipped when absent) sent
to the gateway over SMTP: each expected outcome is checked, mapped to ours, and the posted text is compared
with what Discourse's specs expect. Fixtures about features a reply gateway does not have (commands, spam
review, categories) must still get a clean answer: 250 or a 5xx, never a 451 (an unexpected error)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import SHARED, shared_path
from gateway_support import crlf, posts, send, start_gateway

from gateway import errors
from gateway.inbound.parse import parse_bytes, sender_of
from storage.directory import add_client
from storage.models import User

CORPUS = SHARED / "corpora" / "incoming"
TRUSTED_AUTHSERV_ID = "example.com"  # the authserv-id of dmarc_fail.eml's Authentication-Results

# Discourse's outcome -> ours.
OUTCOMES: dict[str, type[errors.Outcome]] = {
    "post": errors.Accepted,
    "reject:auto_generated": errors.AutoReply,
    "reject:bounce": errors.Bounce,
    "reject:empty": errors.EmptyReply,
    "reject:no_sender": errors.NoSender,
    "reject:reply_user_not_matching": errors.WrongSender,
    "reject:from_reply_address": errors.OwnLoop,
    "spam:auth_fail": errors.DmarcFailed,
    "reject:bad_destination": errors.UnknownReplyAddress,  # refused at RCPT (5.1.1), as NoRelay is
}
# Where we decide otherwise than Discourse's default settings, on purpose.
DIVERGENCES: dict[str, tuple[type[errors.Outcome], str]] = {
    "auto_generated_unblocked.eml": (errors.AutoReply, "Discourse posts it only with blocking switched off"),
    "mailinglist.eml": (errors.AutoReply, "Precedence: list; a reply gateway mirrors no mailing list"),
    "mailinglist_reply.eml": (errors.AutoReply, "Precedence: list; a reply gateway mirrors no mailing list"),
    "mailinglist_short_message.eml": (errors.AutoReply, "Precedence: list; no mailing-list mirror here"),
    "reply_to_different_to_from.eml": (errors.AutoReply, "Precedence: list (a list rewrote From)"),
    "reply_to_different_to_from_x_original_different.eml": (errors.AutoReply, "Precedence: list"),
    "invalid_from_2.eml": (errors.Bounce, "a mailer-daemon report is dropped, never refused"),
}
# Texts where reply extraction (gateway/inbound/extract.py) knowingly differs from Discourse's.
TEXT_DIFFERENCES = {
    "forwarded_email_1.eml": "the forwarded mail is kept as a collapsed 'Forwarded message' block (from, date, "
                             "subject, text); Discourse writes it as a [quote] block",
    "legacy2016_inline_reply.eml": "the 2016 spec kept the whole inline reply, quote header included",
    "legacy2016_inline_mixed.eml": "interleaved quoting is kept as the sender wrote it",
    "previous_replies_de.eml": "Discourse's own German 'previous replies' footer is not our notification",
    "reply_above_de.eml": "Discourse's own German 'reply above this line' marker is not ours",
}
# Texts that reply extraction should get right and does not yet: xfailed while they fail, so that they show.
EXTRACTION_GAPS: dict[str, str] = {}


def _manifest() -> list[dict]:
    path = CORPUS / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else []


def _cases() -> list[object]:
    cases = []
    for entry in _manifest():
        marks = [pytest.mark.slow]
        cases.append(pytest.param(entry, id=entry["file"], marks=marks))
    return cases or [pytest.param(None, id="corpus-absent")]


def normalized(text: str) -> str:
    """Markdown emphasis and escapes removed, whitespace collapsed: Discourse writes **bold**, we may not."""
    text = text.split("<details")[0]
    return " ".join(re.sub(r"[*_\\]", "", text).split())


def _prepare(raw: bytes, token_address: str) -> bytes:
    # legacy2016 templates: the specs fill FROM and TO in before processing.
    raw = raw.replace(b"<FROM>", b"<walter.white@googlemail.com>").replace(b"From: FROM", b"From: "
                                                                             b"walter.white@googlemail.com")
    return crlf(raw.replace(b"To: TO", b"To: " + token_address.encode()))


@pytest.mark.parametrize("entry", _cases())
def test_incoming_corpus(entry, settings, people, make):
    shared_path("corpora", "incoming", "manifest.json")
    assert entry is not None
    name, outcome = entry["file"], entry["outcome"]
    raw = Path(CORPUS / name).read_bytes()
    expected = DIVERGENCES.get(name, (OUTCOMES.get(outcome), ""))[0]
    settings = settings.replace(trusted_authserv_id=TRUSTED_AUTHSERV_ID,
                                reply_domain="bar.com" if outcome == "reject:from_reply_address" else "reply.test")
    people.settings = settings

    # The sender is a client of the workspace (or someone else owns the token, when the spec says so).
    raw = _prepare(raw, "x@reply.test")
    display, address = sender_of(parse_bytes(raw))
    author = None
    if address:
        author = User.get_or_none(User.email == address)
        if author is None:
            try:
                author = add_client(address, display or "Sender", people.workspace, True)
            except Exception:
                author = None
    owner = people.bob if outcome == "reject:reply_user_not_matching" or author is None else author
    token_address = people.address(owner)
    raw = _prepare(Path(CORPUS / name).read_bytes(), token_address)
    rcpts = [token_address]
    if outcome == "reject:bad_destination":
        rcpts = [a for _, a in _destinations(raw)] or ["nobody@example.com"]

    controller = start_gateway(settings)
    try:
        code, text = send(controller.port, raw, rcpts, sender=address or "")
    finally:
        controller.stop()
    reply = f"{code} {' '.join(text.split())}"
    assert code != 451 and not text.startswith("Error"), f"{name}: unexpected error {reply}"
    assert code == 250 or 500 <= code < 600, reply
    if expected is None:
        return  # a feature we do not have: a clean answer is all we ask
    if expected is errors.UnknownReplyAddress:
        assert 550 <= code <= 553, reply  # 5.1.1 unknown or no relay; 553 5.1.3 for an address that is no address
        return
    assert reply == " ".join(expected().smtp_reply.split()), f"{name}: expected {expected.__name__}, got {reply}"
    if expected is not errors.Accepted:
        return
    [message] = posts(people.thread)
    if name in TEXT_DIFFERENCES:
        return
    try:
        if entry.get("expected_text") is not None:
            assert normalized(message.text) == normalized(entry["expected_text"])
        for part in entry.get("expected_contains") or ():
            assert normalized(part) in normalized(message.text)
        for part in entry.get("expected_not_contains") or ():
            assert normalized(part) not in normalized(message.text)
    except AssertionError:
        if name in EXTRACTION_GAPS:
            pytest.xfail(EXTRACTION_GAPS[name])
        raise


def _destinations(raw: bytes) -> list[tuple[str, str]]:
    import email.utils

    parsed = parse_bytes(raw)
    values = parsed.headers.get("to", []) + parsed.headers.get("cc", [])
    return [(n, a) for n, a in email.utils.getaddresses(values) if "@" in a]
