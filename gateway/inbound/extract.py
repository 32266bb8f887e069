"""Reply extraction: the new text of an emailed reply, without quoted history and signature.

`reply_from_parts(plain, html)` is what the gateway posts: it prefers the text/plain part and, for
HTML-only mail, cuts the quoted part out of the HTML structure before converting to text.
What was cut is returned beside the text, so it can be stored and shown on demand."""
from __future__ import annotations

from dataclasses import dataclass

from email_reply_parser import EmailReplyParser

from gateway.inbound import html_text
from gateway.markers import REPLY_ABOVE_LINE


@dataclass(frozen=True)
class Trimmed:
    text: str  # the new reply text (plain text, posted as the message's Markdown source)
    trimmed: str  # what was cut (quoted history, signature), stored beside the message


_MARKER_HEAD = REPLY_ABOVE_LINE[:12].lower()
_MARKER_WORDS = " ".join(REPLY_ABOVE_LINE.lower().split())


def _marker_line(lines: list[str]) -> int | None:
    """Index of the line where our "reply above this line" marker starts, even re-wrapped or quoted."""
    for i, line in enumerate(lines):
        bare = line.lstrip("> \t").lower()
        if "##-" not in bare:
            continue
        joined = " ".join(part.lstrip("> \t") for part in lines[i:i + 4]).lower()
        joined = " ".join(joined.split())
        start = joined.find("##-")
        if joined[start:].startswith(_MARKER_WORDS[:30]):
            return i
    return None


def _split_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def trim_text(text: str) -> Trimmed:
    """Plain-text body trimming: our marker, quoted history and signature are cut."""
    try:
        lines = _split_lines(text or "")
        cut = _marker_line(lines)
        tail = ""
        if cut is not None:
            tail = "\n".join(lines[cut:])
            lines = lines[:cut]
        body = "\n".join(lines)
        reply = EmailReplyParser.parse_reply(body).strip("\n")
        if reply and body.startswith(reply):
            rest = body[len(reply):]
        else:
            rest = body
        trimmed = (rest.strip("\n") + ("\n" + tail if tail else "")).strip("\n")
        return Trimmed(reply, trimmed)
    except Exception:
        return Trimmed((text or "").strip("\n"), "")


def html_to_text(html: str) -> str:
    """HTML body as plain text, keeping paragraphs, lists and links."""
    try:
        return html_text.html_to_text(html or "")
    except Exception:
        return ""


def _reply_from_html(html: str) -> Trimmed:
    root = html_text.parse_html(html)
    quote = html_text.first_quote(root)
    full = html_text.render(root)
    if quote is None:
        return trim_text(full)
    above = html_text.render(root, stop=quote)
    result = trim_text(above)
    cut = full[len(above):].strip("\n") if full.startswith(above) else full
    trimmed = "\n".join(part for part in (result.trimmed, cut) if part)
    return Trimmed(result.text, trimmed)


def reply_from_parts(plain: str | None, html: str | None) -> Trimmed:
    """The reply to post from a mail's text/plain and text/html bodies (plain preferred)."""
    try:
        if plain is not None and plain.strip():
            return trim_text(plain)
        if html:
            return _reply_from_html(html)
        return Trimmed("", "")
    except Exception:
        return Trimmed((plain or "").strip("\n"), "")
