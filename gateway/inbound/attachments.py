"""collect_attachments: the files of a reply, stored in the file store, with safe names and checked types.

Inline images that only the quoted notification refers to (cid: inside the quote) are left out; inline
images in the new text are kept. Archives are stored as they came and never unpacked. A reply with no
text of its own and no file is refused here, once both are known.
"""
from __future__ import annotations

import mimetypes
import re

from gateway.errors import EmptyReply, TooLarge, TooManyAttachments
from gateway.inbound.mail import InboundMail
from gateway.inbound.parse import MailPart
from storage.files import TooLarge as FileTooLarge

MAX_ATTACHMENTS = 100
# Parts that describe the mail rather than carry a file of the sender's.
SKIPPED_TYPES = frozenset({
    "application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature",
    "message/delivery-status", "message/disposition-notification", "text/rfc822-headers",
    "application/ms-tnef",
})
# Where the quoted part of an HTML reply starts, in the markup the common mail clients write
# (Gmail, Apple Mail, Thunderbird, Outlook, Yahoo, and our own notification marker).
_HTML_QUOTE_START = re.compile(
    r"<(?:div|blockquote|table|span)\b[^>]{0,2000}?(?:class\s*=\s*[\"']?[^\"'>]{0,500}?"
    r"(?:gmail_quote|gmail_extra|yahoo_quoted|moz-cite-prefix|OutlookMessageHeader)"
    r"|type\s*=\s*[\"']?cite|id\s*=\s*[\"']?(?:divRplyFwdMsg|appendonsend|workrate-reply-above-))"
    r"|-----\s*Original Message\s*-----|<hr\b[^>]{0,500}?id\s*=\s*[\"']?stopSpelling",
    re.IGNORECASE)
_CID_REF = re.compile(r"cid:([^\"'\s>)]{1,500})", re.IGNORECASE)


def collect_attachments(mail: InboundMail) -> None:
    """Step: store the reply's files and list them on mail.attachments; refuse a reply with nothing in it."""
    from storage.files import safe_filename
    from storage.posting import NewAttachment

    parsed = mail.parsed
    assert parsed is not None
    quoted = quoted_only_cids(parsed.html)
    kept = [part for part in parsed.parts if is_wanted(part, quoted)]
    if len(kept) > MAX_ATTACHMENTS:
        raise TooManyAttachments()
    for part in kept:
        try:
            # A file decoded from the mail cannot be larger than the mail, which SMTP held to this limit.
            stored = mail.files.put_chunks(part.chunks(), limit=mail.settings.max_message_size)
        except FileTooLarge:
            raise TooLarge() from None
        if stored.size == 0 and not part.filename:
            continue
        mail.attachments.append(NewAttachment(
            name=safe_filename(part.filename, default=default_name(part.content_type)),
            content_type=part.content_type, size=stored.size, sha256=stored.sha256, storage_key=stored.key))
    if not mail.text.strip() and not mail.attachments:
        raise EmptyReply()


def is_wanted(part: MailPart, quoted_cids: frozenset[str]) -> bool:
    """Whether a part is a file the sender meant to send."""
    if part.content_type in SKIPPED_TYPES:
        return False
    if not part.encoded_size and not part.filename:
        return False
    return not (part.content_id and part.content_id.lower() in quoted_cids)


def quoted_only_cids(html: str | None) -> frozenset[str]:
    """Content-IDs (lower-case) that the HTML refers to only from its quoted part."""
    if not html or "cid:" not in html.lower():
        return frozenset()
    match = _HTML_QUOTE_START.search(html)
    if match is None:
        return frozenset()
    above = {c.lower() for c in _CID_REF.findall(html, 0, match.start())}
    below = {c.lower() for c in _CID_REF.findall(html, match.start())}
    return frozenset(below - above)


def default_name(content_type: str) -> str:
    if content_type == "message/rfc822":
        return "message.eml"
    extension = mimetypes.guess_extension(content_type, strict=False) or ""
    stem = "image" if content_type.startswith("image/") else "attachment"
    return stem + extension
