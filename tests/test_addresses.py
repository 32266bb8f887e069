"""Reply and bounce addresses: format/parse round trips, case folding, hostile input, a fuzz target for the
parser, and what the gateway makes of any RCPT address (always a Recipient or a refusal, never a crash)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.addresses import (
    format_bounce_address,
    format_reply_address,
    parse_bounce_address,
    parse_reply_address,
)
from gateway.inbound.authenticate import resolve_recipient
from gateway.inbound.mail import BOUNCE, PLAIN, REPLY
from storage.tokens import new_reply_token

TOKEN = "0123456789abcdef0123456789abcdef"


def test_reply_address_round_trip_and_case_folding():
    # A token formats into an address and parses back, whatever case a server gives the address.
    token = new_reply_token()
    address = format_reply_address(token, "Reply.Example.COM")
    assert address == f"reply+{token}@reply.example.com"
    assert parse_reply_address(address, "reply.example.com") == token
    assert parse_reply_address(address.upper(), "REPLY.example.com") == token
    assert parse_reply_address(f" <{address}> ", "reply.example.com") == token
    assert len(token) == 32 and int(token, 16) >= 0  # 128 random bits


def test_bounce_address_round_trip():
    # The envelope sender of a notification carries its bounce token.
    address = format_bounce_address(TOKEN, "reply.test")
    assert parse_bounce_address(address, "reply.test") == TOKEN
    assert parse_reply_address(address, "reply.test") is None
    assert parse_bounce_address(format_reply_address(TOKEN, "reply.test"), "reply.test") is None


@pytest.mark.parametrize("address", [
    "", " ", "reply@reply.test", f"reply+{TOKEN}@other.test", f"reply+{TOKEN}@reply.test.evil.test",
    f"reply+{TOKEN[:-1]}@reply.test", f"reply+{TOKEN}g@reply.test", f"reply+{TOKEN}\x00@reply.test",
    f"reply+{TOKEN}@reply.test\r\nRCPT TO:<x@evil.test>", f"reply+{TOKEN}@@reply.test",
    f"\"reply+{TOKEN}\"@reply.test", f"reply+{TOKEN}@reply.test.", "reply+" + "a" * 400 + "@reply.test",
    f"reply+{TOKEN}+{TOKEN}@reply.test", f"@evil.test:reply+{TOKEN}@reply.test", f"rеply+{TOKEN}@reply.test",
])
def test_hostile_or_foreign_addresses_are_not_reply_addresses(address):
    # Anything but exactly reply+HEX@OUR-DOMAIN parses to None.
    assert parse_reply_address(address, "reply.test") is None


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_parse_reply_address_never_raises(text):
    # Fuzz target: any text parses to None or to a token that formats back to the same address.
    token = parse_reply_address(text, "reply.test")
    if token is not None:
        assert 32 <= len(token) <= 64 and set(token) <= set("0123456789abcdef")
        assert parse_reply_address(format_reply_address(token, "reply.test"), "reply.test") == token
    assert parse_bounce_address(text, "reply.test") in (None, parse_bounce_address(text.lower(), "reply.test"))


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A[0-9a-fA-F]{32,64}\Z"), st.sampled_from(["reply.test", "REPLY.TEST"]))
def test_fuzz_every_well_formed_address_parses(token, domain):
    # Every well-formed address is found, in any case.
    assert parse_reply_address(f"reply+{token}@{domain}", "reply.test") == token.lower()


@pytest.mark.parametrize("address", [
    "", "<>", "x", "@", "a@b", "postmaster", "x@reply.test", "\x00@reply.test", "reply+@reply.test",
    "reply+" + TOKEN + "@reply.test", "bounce+" + TOKEN + "@reply.test", "REPLY@REPLY.TEST", "a" * 5000,
    "reply+" + TOKEN + "@reply.test\udcff", "üñí@reply.test", "reply@reply.test.",
])
def test_resolving_any_rcpt_address_gives_a_recipient_or_a_refusal(settings, people, address):
    # Whatever a client sends in RCPT TO, the gateway has an answer: a recipient or a 5xx InboundError.
    try:
        recipient = resolve_recipient(address, settings)
    except errors.InboundError as e:
        assert e.code == 550 and e.status == "5.1.1"
    else:
        assert recipient.kind in (REPLY, BOUNCE, PLAIN)
