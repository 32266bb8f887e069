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

HTML-only mail is cut where the client's quote structure starts (see html_text.py) and the part above is
trimmed as text; when new text follows the quote (inline answers, bottom-posting) or nothing is above it
(a forward), the whole body is rendered with quotes as "> " lines and trimmed by the rules above.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from gateway.inbound import html_text
from gateway.inbound.quotes import (
    continuation,
    has_date,
    header_block_end,
    is_attribution,
    is_forward_marker,
    is_quoted,
    join_wrapped,
    may_start_wrapped_attribution,
    starts_with_attribution,
    strong_attribution,
    unquote,
)
from gateway.inbound.signatures import (
    DELIMITER_CHARS,
    SHORT_DELIMITERS,
    is_dash_name,
    is_delimiter,
    is_mobile_signoff,
    is_sig_delimiter,
)
from gateway.markers import REPLY_ABOVE_LINE

log = logging.getLogger(__name__)

# A separator line ends the reply when at most this many non-blank lines follow it (a footer or signature);
# further down a message it is a Markdown rule between paragraphs.
FOOTER_LINES = 8
FOOTER_RULE = 10  # ...and the separator is at least this long
# New text of at least this many lines after a quote makes it a bottom-posted answer, not a footer.
ANSWER_LINES = 3
MAX_LINE_CHECK = 2000  # lines longer than this are always plain text (nothing we look for is that long)

_MARKER_WORDS = " ".join(REPLY_ABOVE_LINE.lower().strip("#- ").split())

EMPTY, QUOTE, TEXT, LITERAL = 0, 1, 2, 3  # LITERAL: fenced code or an overlong line, text never examined


@dataclass(frozen=True)
class Trimmed:
    text: str  # the new reply text (plain text, posted as the message's Markdown source)
    trimmed: str  # what was cut (quoted history, signature), stored beside the message


def clear_caches() -> None:
    """Forget the per-line answers the checks keep (benchmarks call this between passes)."""
    from gateway.inbound import quotes, signatures

    for module in (quotes, signatures):
        for value in vars(module).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()


def split_lines(text: str) -> list[str]:
    """Lines of a body, whatever its line ends (CRLF, CR or LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _marker_words(line: str) -> str:
    return " ".join(line.lstrip(" \t>").lower().strip("#- \t").split())


def find_marker(lines: list[str], text: str = "") -> int | None:
    """Index of the line where our "reply above this line" marker starts, also quoted or re-wrapped."""
    head = _MARKER_WORDS[:8]
    if text and head not in text.lower():
        return None
    for i, line in enumerate(lines):
        if head not in line.lower():
            continue
        words = _marker_words(line)
        if not words.startswith(head):
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
    """One body's lines with their kind: empty, quoted, text we examine, or literal text (fenced code and
    overlong lines, never taken for a quote header or signature)."""

    def __init__(self, lines: list[str], text: str) -> None:
        self.lines = lines
        kind = []
        append = kind.append
        for line in lines:
            if not line or line.isspace():
                append(EMPTY)
                continue
            first = line.lstrip(" \t")[:1]
            if first == ">" or (first.isalnum() and ">" in line[:16] and is_quoted(line[:64])):
                append(QUOTE)
            elif len(line) > MAX_LINE_CHECK:
                append(LITERAL)
            else:
                append(TEXT)
        if "```" in text:
            fence = -1
            for i, line in enumerate(lines):
                stripped = line.strip()
                if stripped.startswith("```") and len(stripped) < 100:
                    if fence < 0:
                        fence = i
                    else:
                        kind[fence: i + 1] = [LITERAL] * (i + 1 - fence)
                        fence = -1
        self.kind = kind
        self.quotes = [i for i, k in enumerate(kind) if k == QUOTE]
        self.nonblank_before = [0, *accumulate(k != EMPTY for k in kind)]

    def nonblank(self, start: int, end: int) -> int:
        return self.nonblank_before[end] - self.nonblank_before[start]

    def next_nonblank(self, i: int, end: int) -> int | None:
        kind = self.kind
        while i < end:
            if kind[i] != EMPTY:
                return i
            i += 1
        return None

    def quote_after(self, i: int, end: int) -> bool:
        """Whether a quoted line follows at or after i (before end)."""
        at = bisect_left(self.quotes, i)
        return at < len(self.quotes) and self.quotes[at] < end


def _signature_end(body: _Lines, end: int) -> int:
    """Where a "-- " delimiter, or a separator line followed by a short footer, ends the reply."""
    seen_text = False
    kind, lines = body.kind, body.lines
    for i in range(end):
        k = kind[i]
        if k != TEXT:
            seen_text = seen_text or k == LITERAL
            continue
        line = lines[i]
        if line.lstrip()[:1] not in DELIMITER_CHARS:
            seen_text = True
            continue
        if is_sig_delimiter(line):
            return i
        if seen_text and is_delimiter(line):
            nxt = body.next_nonblank(i + 1, end)
            if body.nonblank(i + 1, end) <= FOOTER_LINES and _footer_separator(body, i):
                return i
            if nxt is not None and kind[nxt] == TEXT and (
                    header_block_end(lines, nxt) or is_forward_marker(lines[nxt]) or is_attribution(lines[nxt])):
                return i
        seen_text = True
    return end


def _footer_separator(body: _Lines, i: int) -> bool:
    """A separator that sets off a footer: a long rule after a blank line (or a tracking image's "ᐧ"); a short
    "-----" or "***" is a Markdown rule, and "====" under a line is a heading."""
    line = body.lines[i].strip()
    return line in SHORT_DELIMITERS or (len(line) >= FOOTER_RULE and (i == 0 or body.kind[i - 1] == EMPTY))


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
    if is_attribution(line) or starts_with_attribution(line):
        return "attribution", i, i + 1
    if may_start_wrapped_attribution(line):
        after = join_wrapped(lines, i)
        if after and after <= end:
            # a line inside the joined span that is an attribution alone starts it (the lines above are text)
            # the latest line that opens an attribution by itself starts it (the lines above are text)
            for k in range(i + 1, after):
                if body.kind[k] != TEXT or _continues(lines, i, k):
                    continue
                if is_attribution(lines[k]):
                    return "attribution", k, k + 1
                rest = " ".join(continuation(line).strip() for line in lines[k:after] if line.strip())
                if is_attribution(rest):
                    return "attribution", k, after
            return "attribution", i, after
    return None


def _continues(lines: list[str], first: int, k: int) -> bool:
    """Whether lines[k] reads as the wrapped rest of the line above it, not as a line of its own."""
    line = lines[k].lstrip(" \t>")
    if not line or line[0] in "<>\"'(" or "@" in line.split(None, 1)[0] or line[0].islower():
        return True
    above = next((lines[j] for j in range(k - 1, first - 1, -1) if lines[j].strip()), "")
    return above.rfind("<") > above.rfind(">") or above.rstrip().endswith(",")


def _trim_lines(lines: list[str], text: str) -> list[int]:
    """Indexes of the lines to keep."""
    end = len(lines)
    marker = find_marker(lines, text)
    if marker is not None:
        end = marker
    body = _Lines(lines[:end], text)
    kind = body.kind
    end = _signature_end(body, end)
    dropped: set[int] = set()
    seen_text = False
    i = 0
    while i < end:
        k = kind[i]
        if k != TEXT:
            seen_text = seen_text or k == LITERAL
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
        if kind[nxt] != QUOTE:
            if seen_text and not strong_attribution(" ".join(lines[start:after])):
                seen_text = True  # "At 10:30 Bob said:" and text: a sentence, not history
                i = after
                continue
            if seen_text:
                end = start  # unquoted history below the reply (top-posting)
                break
            dropped.update(range(start, after))  # an attribution on top of unquoted text: drop the line
            i = after
            continue
        quote_end = nxt
        while quote_end < end and kind[quote_end] in (QUOTE, EMPTY):
            quote_end += 1
        answer = body.next_nonblank(quote_end, end)
        if answer is None:
            end = start  # only quotes follow
            break
        more_quotes = body.quote_after(answer, end)
        if not seen_text:
            # bottom-posting: the reply is below the quote
            dropped.update(range(start, quote_end if not more_quotes else after))
            i = quote_end if not more_quotes else after
            continue
        if more_quotes or body.nonblank(answer, end) >= ANSWER_LINES or _only_greeting_above(body, start):
            dropped.update(range(start, after))  # inline answers: keep the quotes between, drop the attribution
            i = after
            continue
        end = start  # a short line or two under the quote is a footer
        break
    keep = [k for k in range(end) if k not in dropped] if dropped else list(range(end))
    if marker is not None:
        _drop_marker_attribution(body, keep)
    return _strip_tail(body, keep)


def _only_greeting_above(body: _Lines, start: int) -> bool:
    """Whether the only text above an attribution is a salutation ("Hi Kim,"): the answer is below."""
    if body.nonblank(0, start) != 1:
        return False
    line = body.lines[body.next_nonblank(0, start) or 0]
    return line.rstrip().endswith(",") and len(line) <= 60


def _drop_marker_attribution(body: _Lines, keep: list[int]) -> None:
    """Above our marker, a client's attribution line in a language we don't know (ends with ":", names a
    date or an address) is dropped too: whatever the client wrote there introduces our notification."""
    while keep and body.kind[keep[-1]] == EMPTY:
        keep.pop()
    if not keep or body.kind[keep[-1]] != TEXT:
        return
    line = body.lines[keep[-1]].strip()
    if line.endswith((":", "：")) and len(line) <= 400 and ("@" in line or has_date(line)):
        keep.pop()


def _strip_tail(body: _Lines, keep: list[int]) -> list[int]:
    """Drop trailing quotes, separators, sign-offs and blank lines; a body that is only a quote keeps it,
    unless it is a quoted thread (it opens with an attribution)."""
    kinds, lines = body.kind, body.lines
    has_text = any(kinds[k] in (TEXT, LITERAL) for k in keep)
    if not has_text:
        first = next((k for k in keep if kinds[k] == QUOTE), None)
        if first is not None and is_attribution(unquote(lines[first])[:MAX_LINE_CHECK]):
            return []
    while keep:
        k = keep[-1]
        kind = kinds[k]
        if kind == EMPTY or (has_text and kind == QUOTE):
            keep.pop()
        elif kind == TEXT and (is_delimiter(lines[k]) or is_mobile_signoff(lines[k]) or is_sig_delimiter(lines[k])):
            keep.pop()
        elif kind == TEXT and is_dash_name(lines[k]) and len(keep) > 1 and kinds[keep[-2]] == EMPTY:
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
    first = next((k for k, line in enumerate(cut) if line.strip()), len(cut))
    while len(cut) > first and not cut[-1].strip():
        cut.pop()
    return "\n".join(cut[first:])


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def trim_text(text: str) -> Trimmed:
    """Plain-text body trimming: our marker, quoted history and signature are cut."""
    text = _as_text(text)
    try:
        lines = split_lines(text or "")
        keep = _trim_lines(lines, text or "")
        return Trimmed("\n".join(lines[k] for k in keep), _cut_part(lines, keep))
    except Exception:  # never lose a reply to a bug here: post it whole
        log.exception("reply trimming failed; keeping the whole body")
        return Trimmed((text or "").strip("\n"), "")


def html_to_text(html: str) -> str:
    """HTML body as plain text, keeping paragraphs, lists and links (quotes as "> " lines)."""
    try:
        return html_text.html_to_text(_as_text(html))
    except Exception:
        log.exception("HTML to text failed")
        return ""


def _reply_from_html(html: str) -> Trimmed:
    document = html_text.Document(html)
    above, after, cut = document.split_at_quote()
    result = trim_text(above) if after is None else None
    if result is not None and result.text.strip():
        # nothing new below the quoted part: what is above it is the reply
        text = result.text
        trimmed_parts = [result.trimmed, cut]
    else:
        # new text below or between quotes, or nothing above them (a forward): trim the whole text,
        # quotes rendered as "> " lines, by the same rules as a plain-text body
        result = trim_text(document.text())
        text = result.text
        trimmed_parts = [result.trimmed]
    return Trimmed(_single_blank_lines(text), "\n".join(part for part in trimmed_parts if part))


def _single_blank_lines(text: str) -> str:
    """HTML has no double blank lines; a dropped attribution line between two paragraphs leaves one."""
    out: list[str] = []
    for line in text.split("\n"):
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out)


def reply_from_parts(plain: str | None, html: str | None) -> Trimmed:
    """The reply to post from a mail's text/plain and text/html bodies (plain preferred)."""
    plain = _as_text(plain) if plain is not None else None
    html = _as_text(html) if html is not None else None
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
