"""Footers after the reply that no "-- " delimiter announces: contact blocks (name, title, phone, address,
web site), legal notices, mailing-list footers and "-Name" sign-off lines. A closing typed by the writer
("Best regards,\nKim") is not a footer and stays.

The last paragraphs of a reply are classified one by one from the end; a run of footer paragraphs at the end
that holds at least one strong one (contact details, a legal notice, a list footer, a "-Name" line) is cut,
unless nothing would be left above it or the text above introduces it ("My new details:"). Only the last
MAX_PARAGRAPHS paragraphs of at most MAX_PARAGRAPH_LINES lines each are looked at, each line bounded."""
from __future__ import annotations

import re

from gateway.inbound.quotes import cached, has_email
from gateway.inbound.signatures import is_dash_name, is_delimiter

MAX_PARAGRAPHS = 8
MAX_PARAGRAPH_LINES = 15
SHORT_LINE = 90  # a contact block's lines are short
NAME_LINE = 60  # ...and a name, title or address line shorter
NOTICE_CHARS = 200  # a paragraph of prose at least this long after a contact block is its notice

_PHONE = re.compile(r"(?:\+|\(\+?)?\d[\d ().\-/]{6,22}\d")
# A web site named in a contact block: a bare domain, not a link to a page.
_SITE = re.compile(r"(?i)(?:https?://)?(?:www\.)?[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,3}\.[a-z]{2,12}/?(?=$|[\s>)\]*])")
_LABEL = re.compile(
    r"(?i)^[*_ ]*(?:tel|tél|phone|telephone|telefon|telefoon|mob|mobile|mobiel|cell|fax|e-?mail|web|www|site|"
    r"skype|kvk|btw|iban|bic|vat|tva|ust-?id|reg|address|adres|adresse|office|direct|m|t|f|p|e|w)\.?\s*[:|]")
_BULLET = re.compile(r"\s*(?:[-*+•>]|\d{1,3}[.)])\s")
_IMAGE = re.compile(r"^\[(?:image|cid|logo)[^\]]{0,200}\]$", re.IGNORECASE)
_LIST_WORDS = ("mailing list", "listinfo", "mailman", "unsubscribe", "abmelden", "désinscri", "desuscrib",
               "you received this message because you are subscribed", "to unsubscribe from this group",
               "list-unsubscribe", "manage your subscription", "email preferences")
_LEGAL_WORDS = (
    "confidential", "intended recipient", "intended for the recipient", "privileged", "disclaimer",
    "if you have received this", "if you received this", "this e-mail and any", "this email and any",
    "strictly prohibited", "strictly forbidden", "vertraulich", "confidentiel", "riservat", "confidencial",
    "vertrouwelijk", "poufn", "конфиденциал", "fortrolig", "konfidentiell", "luottamuksellinen",
)
_CLOSING_WORDS = (
    "regards", "best", "cheers", "thanks", "thank you", "sincerely", "yours", "kind regards", "warm regards",
    "groeten", "groet", "gruß", "grüße", "gruss", "grüsse", "cordialement", "salutations", "saludos", "saluti",
    "cordiali", "atenciosamente", "abraços", "med vänlig hälsning", "hälsningar", "mvh", "hilsen", "pozdrawiam",
    "pozdrav", "с уважением", "ystävällisin terveisin", "terveisin", "tschüss", "ciao", "bien à vous",
    "take care", "talk soon", "all the best", "best wishes", "many thanks",
)

STRONG, WEAK, TEXT = 2, 1, 0


def is_closing(line: str) -> bool:
    """A closing the writer types ("Best regards,", "Met vriendelijke groeten,", "Thanks!")."""
    s = line.strip(" \t*_").lower()
    if not s or len(s) > 40:
        return False
    s = s.rstrip(",.!;:-— ")
    return any(s == word or s.endswith(" " + word) or s.startswith(word + " ") and len(s.split()) <= 4
               for word in _CLOSING_WORDS)


@cached
def _contact_signal(line: str) -> bool:
    s = line.strip(" \t*_")
    if not s or len(s) > SHORT_LINE:
        return False
    phone = _PHONE.search(s)
    return bool(_LABEL.match(s) or has_email(s) or _SITE.search(s) or _IMAGE.match(s)
                or (phone is not None and sum(c.isdigit() for c in phone.group()) >= 8)
                or (" | " in s and len(s) <= 70))


def _kind(paragraph: list[str]) -> int:
    """STRONG (a footer by itself), WEAK (a footer only beside a strong one) or TEXT."""
    text = " ".join(line.strip() for line in paragraph).lower()
    if any(word in text for word in _LIST_WORDS) and (has_email(text) or "http" in text or "list" in text):
        return STRONG
    if any(word in text for word in _LEGAL_WORDS) and len(text) >= 80:
        return STRONG
    if len(paragraph) == 1 and (is_dash_name(paragraph[0]) or is_delimiter(paragraph[0])):
        return STRONG
    lines = [line for line in paragraph if not is_delimiter(line)]
    if not lines:
        return STRONG
    if any(len(line.strip()) > SHORT_LINE for line in lines):
        return TEXT
    signals = sum(_contact_signal(line) for line in lines)
    if signals >= 2:
        return STRONG
    if len(lines) <= 3 and not _sentence(lines) and not any(is_closing(line) or _BULLET.match(line) for line in lines):
        return WEAK  # a name, a title, an address line
    return TEXT


def _sentence(lines: list[str]) -> bool:
    """Whether the lines read as prose (a sentence ends on one of them, or a line is long)."""
    return any(len(line.strip()) > NAME_LINE
               or (line.rstrip().endswith((".", "?", "!", ":")) and len(line.split()) >= 2) for line in lines)


def footer_start(lines: list[str], text_above: bool = False) -> int | None:
    """Where a footer starts in `lines` (the end of a reply, no quoted lines), or None. A closing line and the
    name under it at the top of the footer's first paragraph are kept. text_above: the reply has text above
    these lines (else the footer must leave a paragraph of them)."""
    paragraphs: list[tuple[int, int]] = []  # [start, end) of each paragraph, last first
    end = len(lines)
    i = end - 1
    while i >= 0 and len(paragraphs) <= MAX_PARAGRAPHS:
        if not lines[i].strip():
            i -= 1
            continue
        stop = i + 1
        while i >= 0 and lines[i].strip():
            i -= 1
        paragraphs.append((i + 1, stop))
    kinds = []
    for start, stop in paragraphs:
        kinds.append(TEXT if stop - start > MAX_PARAGRAPH_LINES else _kind(lines[start:stop]))
    top = None  # the topmost strong paragraph of the run of footer paragraphs at the end
    for n, (start, _) in enumerate(paragraphs):
        kind = kinds[n]
        if kind == TEXT and n == 0 and len(paragraphs) > 1 and kinds[1] == STRONG \
                and len(" ".join(lines[start:paragraphs[0][1]])) >= NOTICE_CHARS and _contact(lines, paragraphs[1]):
            kind = WEAK  # a notice of prose after a contact block
        if kind == TEXT:
            break
        if kind == STRONG:
            top = n
    if top is None:
        return None
    zone = top
    if top + 2 < len(paragraphs) and kinds[top + 1] == WEAK and _contact(lines, paragraphs[top]) \
            and paragraphs[top + 1][1] - paragraphs[top + 1][0] <= 2:
        zone = top + 1  # the name and title above the contact lines
    if zone + 1 >= len(paragraphs):
        return paragraphs[zone][0] if text_above else None  # a mail that is only a signature block keeps it
    start, stop = paragraphs[zone]
    above = lines[paragraphs[zone + 1][1] - 1].rstrip()
    if above.endswith((":", "：")) and len(above.split()) >= 2:
        return None  # "My new details:" introduces the block
    if is_closing(lines[start]):
        return min(start + 2, stop) if stop - start > 2 else None
    return start


def _contact(lines: list[str], span: tuple[int, int]) -> bool:
    return sum(_contact_signal(line) for line in lines[span[0]:span[1]]) >= 2
