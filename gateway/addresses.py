"""Reply addresses: reply+TOKEN@REPLY_DOMAIN, formatted and parsed.

Tokens are lower-case hex, so a server that folds the case of the local part changes nothing.
"""
from __future__ import annotations

import re

REPLY_LOCAL_PREFIX = "reply"
# 32 to 64 hex characters: 128 bits or more. Anchored, no nested quantifiers: linear on any input.
REPLY_ADDRESS = re.compile(r"^reply\+([0-9a-f]{32,64})@([a-z0-9.-]{1,253})$")
MAX_ADDRESS_LENGTH = 320


def format_reply_address(token: str, domain: str) -> str:
    return f"{REPLY_LOCAL_PREFIX}+{token.lower()}@{domain.lower()}"


def parse_reply_address(address: str, domain: str | None = None) -> str | None:
    """The token of a reply address (lower-cased), or None when address is not one.

    With `domain`, an address on another domain is not a reply address either. Angle brackets and
    surrounding spaces are tolerated, as some clients send them in RCPT TO.
    """
    if not address or len(address) > MAX_ADDRESS_LENGTH:
        return None
    address = address.strip().strip("<>").strip().lower()
    match = REPLY_ADDRESS.match(address)
    if not match:
        return None
    if domain is not None and match.group(2) != domain.lower().rstrip("."):
        return None
    return match.group(1)


def domain_of(address: str) -> str:
    return address.strip().strip("<>").rpartition("@")[2].lower().rstrip(".")


# Envelope sender of each notification: bounce+TOKEN@REPLY_DOMAIN (VERP), TOKEN = OutboxEmail.bounce_token.
BOUNCE_LOCAL_PREFIX = "bounce"
BOUNCE_ADDRESS = re.compile(r"^bounce\+([0-9a-f]{32,64})@([a-z0-9.-]{1,253})$")


def format_bounce_address(token: str, domain: str) -> str:
    return f"{BOUNCE_LOCAL_PREFIX}+{token.lower()}@{domain.lower()}"


def parse_bounce_address(address: str, domain: str | None = None) -> str | None:
    """The bounce token of a bounce address (lower-cased), or None."""
    if not address or len(address) > MAX_ADDRESS_LENGTH:
        return None
    address = address.strip().strip("<>").strip().lower()
    match = BOUNCE_ADDRESS.match(address)
    if not match or (domain is not None and match.group(2) != domain.lower().rstrip(".")):
        return None
    return match.group(1)
