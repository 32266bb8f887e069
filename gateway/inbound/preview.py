"""`workrate trim`: the reply text the gateway would post for some bytes, which are either a whole mail
(parsed exactly as the gateway parses it) or a plain-text body. is_raw_mail() makes that decision.

A plain body may well start with a line shaped like a header ("One: Here's what I've got.",
"Phone: 12345"), so a mail is recognised by its whole header block, not by its first line: every line up
to the first blank line is a header field (or a folded continuation of one), and at least one of them is a
field that mail carries (From, To, Subject, Date, Message-ID, Received, MIME-Version…)."""
from __future__ import annotations

import logging
import re

from gateway.inbound.extract import reply_from_parts
from gateway.inbound.parse import decode_text, parse_bytes

log = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024  # the header block is looked for in this much of the start
MAX_HEADER_LINES = 500
_FIELD = re.compile(rb"([!-9;-~]{1,76})[ \t]*:")  # a field name (RFC 5322 ftext) and its colon
# Fields of the message and trace headers (RFC 5322, 2045, 5321 and common additions), lower case.
MAIL_FIELDS = frozenset(
    b"from sender reply-to to cc bcc subject date message-id in-reply-to references mime-version content-type "
    b"content-transfer-encoding content-disposition received return-path delivered-to x-original-to "
    b"dkim-signature arc-seal authentication-results resent-from resent-date list-id list-unsubscribe "
    b"precedence auto-submitted thread-topic thread-index x-mailer user-agent".split()
)


def is_raw_mail(data: bytes) -> bool:
    """Whether data is a whole mail (a header block first) rather than a plain-text body."""
    head = data.lstrip(b"\r\n")[:HEAD_BYTES]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[0].startswith(b"From ") and len(lines) > 1:
        lines = lines[1:]  # an mbox separator line
    known = False
    for count, line in enumerate(lines):
        if not line.strip():
            return known and count > 0  # the blank line that ends the header block
        if count >= MAX_HEADER_LINES:
            return False
        if line[:1] in (b" ", b"\t"):
            if count == 0:
                return False
            continue  # a folded continuation of the field above
        field = _FIELD.match(line)
        if field is None or line.startswith((b"http:", b"https:")):
            return False
        known = known or field.group(1).lower() in MAIL_FIELDS
    return known  # headers only, no body (or a header block longer than HEAD_BYTES)


def _outer_lines(text: str) -> str:
    """The text without blank lines around it (the first line keeps its indentation: it may be code)."""
    text = text.rstrip()
    return text[text.rfind("\n", 0, len(text) - len(text.lstrip())) + 1:]


def preview_reply(raw: bytes) -> str:
    """The text the gateway would post for raw (`workrate trim`): a whole mail is parsed as the gateway
    parses it; anything else is taken as a plain-text body. Never raises."""
    try:
        if is_raw_mail(raw):
            parsed = parse_bytes(raw)
            return _outer_lines(reply_from_parts(parsed.plain, parsed.html, parsed.header("subject")).post_text)
        text = decode_text(raw, "utf-8").replace("\r\n", "\n")
        return _outer_lines(reply_from_parts(text, None).post_text)
    except Exception:
        log.debug("preview_reply fell back to the raw text", exc_info=True)
        try:
            return decode_text(raw, "utf-8").strip()
        except Exception:
            return ""
