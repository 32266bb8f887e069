"""Reply extraction: the new text of an emailed reply, without quoted history and signature.

`reply_from_parts(plain, html)` is what the gateway posts: it prefers the text/plain part and, for
HTML-only mail, cuts the quoted part out of the HTML structure before converting to text.
`trim_text(text)` trims a plain-text body. Both return a `Trimmed`: the text to post and what was cut,
which is stored beside the message so the team can restore it.

Plain text is trimmed line by line (never rewriting a line, only keeping or dropping whole lines):

1. our own "reply above this line" marker cuts everything from it down, quoted or re-wrapped;
2. a "-- " signature delimiter, or a separator line followed by a short footer, ends the reply;
3. the first "On … wrote:" attribution, Outlook header block or forwarded-message marker that starts the
   history ends the reply, unless new text follows the quote it introduces (inline answers and
   bottom-posting keep their text and the quotes between, and lose the attribution line);
   a forwarded mail with nothing written above keeps the forwarded content;
4. trailing quotes, separator lines, mobile sign-offs ("Sent from my iPhone") and a "-Name" line go.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.inbound import html_text
from gateway.inbound.quotes import (
    header_block_end,
    is_attribution,
    is_forward_marker,
    is_quoted,
    join_wrapped,
    may_start_wrapped_attribution,
    unquote,
)
from gateway.inbound.signatures import (
    is_dash_name,
    is_delimiter,
    is_mobile_signoff,
    is_sig_delimiter,
)
from gateway.markers import REPLY_ABOVE_LINE

log = logging.getLogger(__name__)

# A separator line ends the reply when at most this many non-blank lines follow it (a footer or signature);
# further down a message it is a Markdown rule between paragraphs.
FOOTER_LINES = 12
# New text of at least this many lines after a quote makes it a bottom-posted answer, not a footer.
ANSWER_LINES = 3
MAX_LINE_CHECK = 2000  # lines longer than this are always plain text (nothing we look for is that long)

_MARKER_WORDS = " ".join(REPLY_ABOVE_LINE.lower().strip("#- ").split())

EMPTY, QUOTE, TEXT = 0, 1, 2


@dataclass(frozen=True)
class Trimmed:
    text: str  # the new reply text (plain text, posted as the message's Markdown source)
    trimmed: str  # what was cut (quoted history, signature), stored beside the message


def split_lines(text: str) -> list[str]:
    """Lines of a body, whatever its line ends (CRLF, CR or LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _marker_words(line: str) -> str:
    return " ".join(line.lstrip(" \t>").lower().strip("#- \t").split())


def find_marker(lines: list[str]) -> int | None:
    """Index of the line where our "reply above this line" marker starts, also quoted or re-wrapped."""
    head = _MARKER_WORDS[:18]
    for i, line in enumerate(lines):
        if head[:8] not in line.lower():
            continue
        words = _marker_words(line)
        if not words.startswith(head[:8]):
            continue
        joined = words
        for nxt in lines[i + 1: i + 4]:
            if joined.startswith(_MARKER_WORDS) or len(joined) > len(_MARKER_WORDS):
                break
            joined = (joined + " " + _marker_words(nxt)).strip()
        if joined.startswith(_MARKER_WORDS[:30]):
            return i
    return None


class _Lines:
    """One body's lines with their kind (empty, quoted, text) and fenced code blocks marked as text."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        n = len(lines)
        self.kind = [EMPTY] * n
        self.code = [False] * n
        fence = -1
        for i, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("```") and len(stripped) < 100:
                if fence < 0:
                    fence = i
                else:
                    for j in range(fence, i + 1):
                        self.code[j] = True
                    fence = -1
        for i, line in enumerate(lines):
            if self.code[i]:
                self.kind[i] = TEXT
            elif not line.strip():
                self.kind[i] = EMPTY
            elif is_quoted(line[:64]):
                self.kind[i] = QUOTE
            else:
                self.kind[i] = TEXT
        # next_quote[i]: first quoted line at or after i; nonblank[i]: non-blank lines before i
        self.next_quote = [n] * (n + 1)
        for i in range(n - 1, -1, -1):
            self.next_quote[i] = i if self.kind[i] == QUOTE else self.next_quote[i + 1]
        self.text_before = [0] * (n + 1)
        for i in range(n):
            self.text_before[i + 1] = self.text_before[i] + (self.kind[i] != EMPTY)

    def nonblank(self, start: int, end: int) -> int:
        return self.text_before[end] - self.text_before[start]

    def next_nonblank(self, i: int, end: int) -> int | None:
        while i < end:
            if self.kind[i] != EMPTY:
                return i
            i += 1
        return None

    def plain(self, i: int) -> bool:
        """An unquoted line outside code blocks, short enough to be looked at."""
        return self.kind[i] == TEXT and not self.code[i] and len(self.lines[i]) <= MAX_LINE_CHECK


def _signature_end(body: _Lines, end: int) -> int:
    """Where a "-- " delimiter, or a separator line followed by a short footer, ends the reply."""
    seen_text = False
    for i in range(end):
        if not body.plain(i):
            seen_text = seen_text or (body.kind[i] == TEXT)
            continue
        line = body.lines[i]
        if is_sig_delimiter(line):
            return i
        if seen_text and is_delimiter(line):
            nxt = body.next_nonblank(i + 1, end)
            if body.nonblank(i + 1, end) <= FOOTER_LINES:
                return i
            if nxt is not None and body.plain(nxt) and (
                    header_block_end(body.lines, nxt) or is_forward_marker(body.lines[nxt])
                    or is_attribution(body.lines[nxt])):
                return i
        seen_text = True
    return end


def _history_start(body: _Lines, i: int, end: int) -> tuple[str, int, int] | None:
    """If lines[i] starts quoted history: (what, first line, index after the introducing lines)."""
    lines = body.lines
    line = lines[i]
    if is_forward_marker(line):
        nxt = body.next_nonblank(i + 1, end)
        block = header_block_end(lines, nxt) if nxt is not None and body.kind[nxt] == TEXT else 0
        return "forward", i, block or i + 1
    block = header_block_end(lines, i)
    if block:
        return "headers", i, min(block, end)
    if is_attribution(line):
        return "attribution", i, i + 1
    if may_start_wrapped_attribution(line):
        after = join_wrapped(lines, i)
        if after and after <= end:
            # a line inside the joined span that is an attribution alone starts it (the lines above are text)
            for k in range(i + 1, after):
                if body.kind[k] == TEXT and is_attribution(lines[k]) and not _continues(lines, i, k):
                    return "attribution", k, k + 1
            return "attribution", i, after
    return None


def _continues(lines: list[str], first: int, k: int) -> bool:
    """Whether lines[k] reads as the wrapped rest of the line above it, not as a line of its own."""
    line = lines[k].lstrip(" \t>")
    if not line or line[0] in "<>\"'(" or "@" in line.split(None, 1)[0] or line[0].islower():
        return True
    above = next((lines[j] for j in range(k - 1, first - 1, -1) if lines[j].strip()), "")
    return above.rfind("<") > above.rfind(">") or above.rstrip().endswith(",")


def _trim_lines(lines: list[str]) -> tuple[list[int], int]:
    """Indexes of the lines to keep, and the count of leading lines examined (the rest is cut)."""
    end = len(lines)
    marker = find_marker(lines)
    if marker is not None:
        end = marker
    body = _Lines(lines[:end])
    end = _signature_end(body, end)
    dropped: set[int] = set()
    seen_text = False
    i = 0
    while i < end:
        if not body.plain(i):
            seen_text = seen_text or body.kind[i] == TEXT
            i += 1
            continue
        found = _history_start(body, i, end)
        if found is None:
            if not is_mobile_signoff(lines[i]):
                seen_text = True
            i += 1
            continue
        what, start, after = found
        if start > i:
            seen_text = True  # lines between i and start are text
        if what != "attribution":
            if seen_text:
                end = start
                break
            dropped.update(range(start, after))  # a forward with nothing above: keep what was forwarded
            i = after
            continue
        nxt = body.next_nonblank(after, end)
        if nxt is None:
            end = start
            break
        if body.kind[nxt] != QUOTE:
            if seen_text:
                end = start  # unquoted history below the reply (top-posting)
                break
            dropped.update(range(start, after))  # an attribution on top of unquoted text: drop the line
            i = after
            continue
        quote_end = nxt
        while quote_end < end and body.kind[quote_end] != TEXT:
            quote_end += 1
        answer = body.next_nonblank(quote_end, end)
        if answer is None:
            end = start  # only quotes follow
            break
        more_quotes = body.next_quote[answer] < end
        if not seen_text:
            # bottom-posting: the reply is below the quote
            dropped.update(range(start, quote_end if not more_quotes else after))
            i = quote_end if not more_quotes else after
            continue
        if more_quotes or body.nonblank(answer, end) >= ANSWER_LINES:
            dropped.update(range(start, after))  # inline answers: keep the quotes between, drop the attribution
            i = after
            continue
        end = start  # a short line or two under the quote is a footer
        break
    keep = [k for k in range(end) if k not in dropped]
    return _strip_tail(body, keep), end


def _strip_tail(body: _Lines, keep: list[int]) -> list[int]:
    """Drop trailing quotes, separators, sign-offs and blank lines; a body that is only a quote keeps it,
    unless it is a quoted thread (it opens with an attribution)."""
    kinds = body.kind
    has_text = any(kinds[k] == TEXT for k in keep)
    if not has_text:
        first = next((k for k in keep if kinds[k] == QUOTE), None)
        if first is not None and is_attribution(unquote(body.lines[first])[:MAX_LINE_CHECK]):
            return []
    while keep:
        k = keep[-1]
        line = body.lines[k]
        if kinds[k] == EMPTY or (has_text and kinds[k] == QUOTE):
            keep.pop()
        elif body.plain(k) and (is_delimiter(line) or is_mobile_signoff(line) or is_sig_delimiter(line)):
            keep.pop()
        elif body.plain(k) and is_dash_name(line) and len(keep) > 1 and kinds[keep[-2]] == EMPTY:
            keep.pop()
        else:
            break
    start = 0
    while start < len(keep) and kinds[keep[start]] == EMPTY:
        start += 1
    return keep[start:]


def _cut_part(lines: list[str], keep: list[int]) -> str:
    kept = set(keep)
    cut = [line for k, line in enumerate(lines) if k not in kept]
    while cut and not cut[0].strip():
        cut.pop(0)
    while cut and not cut[-1].strip():
        cut.pop()
    return "\n".join(cut)


def trim_text(text: str) -> Trimmed:
    """Plain-text body trimming: our marker, quoted history and signature are cut."""
    try:
        lines = split_lines(text or "")
        keep, _ = _trim_lines(lines)
        return Trimmed("\n".join(lines[k] for k in keep), _cut_part(lines, keep))
    except Exception:  # never lose a reply to a bug here: post it whole
        log.exception("reply trimming failed; keeping the whole body")
        return Trimmed((text or "").strip("\n"), "")


def html_to_text(html: str) -> str:
    """HTML body as plain text, keeping paragraphs, lists and links (quotes as "> " lines)."""
    try:
        return html_text.html_to_text(html or "")
    except Exception:
        log.exception("HTML to text failed")
        return ""


def _reply_from_html(html: str) -> Trimmed:
    document = html_text.Document(html)
    above, after, cut = document.split_at_quote()
    if after is None:
        # nothing new below the quoted part: what is above it is the reply
        result = trim_text(above)
        text = result.text
        trimmed_parts = [result.trimmed, cut]
    else:
        # new text below or between quotes: trim the whole text, quotes rendered as "> " lines
        result = trim_text(document.text())
        text = result.text
        trimmed_parts = [result.trimmed]
    return Trimmed(text, "\n".join(part for part in trimmed_parts if part))


def reply_from_parts(plain: str | None, html: str | None) -> Trimmed:
    """The reply to post from a mail's text/plain and text/html bodies (plain preferred)."""
    try:
        if plain is not None and plain.strip():
            return trim_text(plain)
        if html and html.strip():
            return _reply_from_html(html)
        return Trimmed("", "")
    except Exception:  # never lose a reply to a bug here
        log.exception("reply extraction failed; keeping the whole body")
        if plain and plain.strip():
            return Trimmed(plain.strip("\n"), "")
        return Trimmed(html_to_text(html or "").strip("\n"), "")
