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

No input makes it slow (a 1 MB body takes tens of milliseconds): line kinds live in a bytearray, so runs of
quoted and blank lines are skipped and counted by C-level searches; only the first HEAD_LINES lines are split
one by one, past them long runs of quoted or blank lines and a huge middle are single blocks found by linear
regular expressions; only the first and last lines of text (EXAMINED_*) are examined for history and
signatures (the text between is kept as written); every check looks at a bounded part of a line, and no
regular expression can backtrack catastrophically.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from itertools import chain, islice

from gateway.inbound import html_text
from gateway.inbound.footers import footer_start, is_closing
from gateway.inbound.forwards import Forward, is_forward_subject, read_forward
from gateway.inbound.quotes import (
    MAX_CONTINUATION,
    continuation,
    has_date,
    header_block_end,
    header_kind,
    is_attribution,
    is_forward_marker,
    is_forwarded_marker,
    is_quoted,
    join_wrapped,
    may_start_wrapped_attribution,
    starts_with_attribution,
    starts_with_on,
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
FOOTER_SCAN = 120  # kept lines at the end looked at for a footer (contact block, notice, list footer)
FORWARD_SEARCH = 20  # lines below the reply looked at for a forward quoted as a whole
FOOTER_CUTS = 3  # footers cut one after another (a list footer under a quote under a contact block)
MAX_LINE_CHECK = 2000  # lines longer than this are always plain text (nothing we look for is that long)

# Bounded work on any input: between the first EXAMINED_LINES lines of text (at most EXAMINED_CHARS characters)
# and the last EXAMINED_LAST_LINES (EXAMINED_LAST_CHARS), a body is kept as written. Runs of quoted and blank
# lines cost nothing to skip, so a reply below a long quote is still found, and a signature or history at the
# end of a long text.
EXAMINED_LINES, EXAMINED_CHARS = 2000, 150_000
EXAMINED_LAST_LINES, EXAMINED_LAST_CHARS = 300, 30_000
WRAPPED_JOINS = 500  # lines that could start a wrapped attribution ("On 5 June 2017, Kim <") joined at most
# Lines split and classified one by one; past them, a body is at most three blocks (see _split_body).
HEAD_LINES = 20_000
BLOCK_LINES = 200
MARKER_CANDIDATES = 50  # lines holding the marker's first words that are looked at
FENCE_LINES = 1000  # "```" lines that are looked at

_MARKER_WORDS = " ".join(REPLY_ABOVE_LINE.lower().strip("#- ").split())
_MARKER_HEAD = _MARKER_WORDS[:8]
_MARKER_SEARCH = re.compile(re.escape(_MARKER_HEAD), re.IGNORECASE)
_FENCE = re.compile(r"^[^\S\n]*```", re.MULTILINE)

# Line kinds, one byte per line. LITERAL: fenced code, an overlong line, or text past the examined lines.
EMPTY, QUOTE, TEXT, LITERAL = 0, 1, 2, 3
_EMPTY_BYTE, _QUOTE_BYTE, _LITERAL_BYTE = bytes([EMPTY]), bytes([QUOTE]), bytes([LITERAL])
_TEXT_LINE = re.compile(rb"\x02")
_TEXT_OR_LITERAL = re.compile(rb"[\x02\x03]")
_NONBLANK = re.compile(rb"[^\x00]")
_QUOTE_RUN = re.compile(rb"[\x00\x01]*+")
_TEXT_TO_LITERAL = bytes.maketrans(b"\x02", b"\x03")
_NTH_NEWLINE = re.compile(rf"(?:[^\n]*+\n){{{HEAD_LINES}}}")
# Whole lines that are quoted (">" after spaces or tabs) or blank, forwards and in the reversed text.
_QUOTED_OR_BLANK_LINES = re.compile(r"(?:\n++|[ \t]*+>[^\n]*+(?:\n|\Z)|[^\S\n]*+(?:\n|\Z))*+")
_REVERSED_QUOTED_OR_BLANK_LINES = re.compile(r"(?:\n++|[^\n]*>[ \t]*+(?:\n|\Z)|[^\S\n]*+(?:\n|\Z))*+")


@dataclass(frozen=True)
class Trimmed:
    text: str  # the new reply text (plain text, posted as the message's Markdown source)
    trimmed: str  # what was cut (quoted history, signature), stored beside the message
    forward: Forward | None = None  # a forwarded message below the text (or alone: then text is its text)

    @property
    def post_text(self) -> str:
        """What is posted: the reply, and a forwarded message as a collapsed block below it (a mail that is
        only a forward: the block alone)."""
        if self.forward is None:
            return self.text
        note = "" if self.forward.alone else self.text.strip("\n")
        return f"{note}\n\n{self.forward.markdown()}" if note else self.forward.markdown()


def clear_caches() -> None:
    """Forget the per-line answers the checks keep (benchmarks call this between passes)."""
    from gateway.inbound import quotes, signatures

    for module in (quotes, signatures):
        for value in vars(module).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()


def _normalise_ends(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _marker_words(line: str) -> str:
    return " ".join(line.lstrip(" \t>").lower().strip("#- \t").split())


def _is_marker_at(lines: list[str], i: int) -> bool:
    words = _marker_words(lines[i])
    if not words.startswith(_MARKER_HEAD):
        return False
    joined = words
    for nxt in lines[i + 1: i + 4]:
        if joined.startswith(_MARKER_WORDS) or len(joined) > len(_MARKER_WORDS):
            break
        joined = (joined + " " + _marker_words(nxt)).strip()
    return joined.startswith(_MARKER_WORDS[:30])


def _lines_from(text: str, start: int, count: int) -> list[str]:
    """Up to `count` lines of text from the line starting at `start`."""
    lines = []
    for _ in range(count):
        end = text.find("\n", start)
        if end < 0:
            lines.append(text[start:])
            break
        lines.append(text[start:end])
        start = end + 1
    return lines


def _marker_offset(text: str) -> int | None:
    """Where the line holding our "reply above this line" marker starts (also quoted or re-wrapped), in a
    text with "\n" line ends. Only lines where the marker's first words occur are looked at, at most
    MARKER_CANDIDATES of them."""
    if _MARKER_HEAD not in text.lower():
        return None
    next_line = 0
    for seen, match in enumerate(_MARKER_SEARCH.finditer(text)):
        if match.start() < next_line:
            continue  # the rest of a line already looked at
        start = text.rfind("\n", 0, match.start()) + 1
        if _is_marker_at(_lines_from(text, start, 4), 0):
            return start
        if seen >= MARKER_CANDIDATES:
            return None
        end = text.find("\n", match.start())
        next_line = len(text) if end < 0 else end
    return None


def _split_body(text: str) -> tuple[list[str], dict[int, int]]:
    """The lines of a text with "\n" line ends. Past HEAD_LINES lines, the rest is cut in three by linear
    regular expressions — the quoted and blank lines it starts with, the lines between, the quoted and blank
    lines it ends with — and each part that is long (see _add_part) is one entry of the list, a block holding
    its inner line ends. Returns the lines and the blocks' kinds by index."""
    if text.count("\n") <= HEAD_LINES:
        return text.split("\n"), {}
    head_end = _NTH_NEWLINE.match(text).end()  # type: ignore[union-attr]
    lines = text[: head_end - 1].split("\n")
    blocks: dict[int, int] = {}
    tail = text[head_end:]
    lead = _QUOTED_OR_BLANK_LINES.match(tail).end()  # type: ignore[union-attr]
    if lead == len(tail):
        _add_part(lines, blocks, tail, quoted=True)
        return lines, blocks
    if lead:
        _add_part(lines, blocks, tail[: lead - 1], quoted=True)
    rest = tail[lead:]
    trail = _REVERSED_QUOTED_OR_BLANK_LINES.match(rest[::-1]).end()  # type: ignore[union-attr]
    _add_part(lines, blocks, rest[: len(rest) - trail], quoted=False)
    if trail:
        _add_part(lines, blocks, rest[len(rest) - trail + 1:], quoted=True)
    return lines, blocks


def _add_part(lines: list[str], blocks: dict[int, int], part: str, quoted: bool) -> None:
    """Append a part of the body as lines, or as one block when it has more than BLOCK_LINES quoted and blank
    lines (a block of them counts as many quoted lines) or more than HEAD_LINES other lines (literal text)."""
    if part.count("\n") < (BLOCK_LINES if quoted else HEAD_LINES):
        lines.extend(part.split("\n"))
        return
    blocks[len(lines)] = (QUOTE if part.strip() else EMPTY) if quoted else LITERAL
    lines.append(part)


def _kinds(lines: list[str]) -> bytearray:
    """The kind of each line, in one pass with no function call for an ordinary line."""
    quoted = is_quoted
    return bytearray([
        EMPTY if not (bare := line.lstrip(" \t")) or bare.isspace()
        else QUOTE if bare[0] == ">" or (bare[0].isalnum() and ">" in line[:16] and quoted(line[:64]))
        else LITERAL if len(line) > MAX_LINE_CHECK
        else TEXT
        for line in lines
    ])


def _mark_fences(lines: list[str], text: str, kind: bytearray) -> None:
    """Lines from an opening "```" to its closing one are literal (at most FENCE_LINES fence lines)."""
    fence = -1
    line_no, last = 0, 0
    for match in islice(_FENCE.finditer(text), FENCE_LINES):
        pos = match.start()
        line_no += text.count("\n", last, pos)
        last = pos
        if line_no >= len(lines):
            break
        if len(lines[line_no].strip()) >= 100:
            continue
        if fence < 0:
            fence = line_no
        else:
            kind[fence: line_no + 1] = _LITERAL_BYTE * (line_no + 1 - fence)
            fence = -1


class _Lines:
    """One body's lines with their kind: empty, quoted, text we examine, or literal text (fenced code,
    overlong lines, text past the first EXAMINED_LINES lines of text, and the text block past HEAD_LINES;
    never taken for a quote header or signature). Kinds are kept in a bytearray so runs of lines are skipped
    and counted in C."""

    def __init__(self, lines: list[str], text: str, blocks: dict[int, int]) -> None:
        self.lines = lines
        self.blocks = blocks  # index → kind of the entries that are blocks of many lines (see _split_body)
        self.joins_left = WRAPPED_JOINS
        kind = _kinds(lines)
        for index, block_kind in blocks.items():
            kind[index] = block_kind
        if "```" in text:
            _mark_fences(lines[: min(blocks, default=len(lines))], text, kind)
        if len(text) > EXAMINED_CHARS + EXAMINED_LAST_CHARS or kind.count(TEXT) > EXAMINED_LINES + EXAMINED_LAST_LINES:
            first = _examined_bound(lines, kind, EXAMINED_LINES, EXAMINED_CHARS, from_end=False)
            last = _examined_bound(lines, kind, EXAMINED_LAST_LINES, EXAMINED_LAST_CHARS, from_end=True)
            if first < last:
                kind[first:last] = kind[first:last].translate(_TEXT_TO_LITERAL)
        _mark_wrapped_links(lines, kind)
        self.kind = kind

    def nonblank_at_least(self, start: int, end: int, count: int) -> bool:
        """Whether at least `count` non-blank lines are in lines[start:end]."""
        pos = start
        for _ in range(count):
            found = _NONBLANK.search(self.kind, pos, end)
            if found is None:
                return False
            if found.start() in self.blocks:
                return True  # a block counts as many lines
            pos = found.end()
        return True

    def next_nonblank(self, i: int, end: int) -> int | None:
        found = _NONBLANK.search(self.kind, i, end)
        return None if found is None else found.start()

    def after_quotes(self, i: int, end: int) -> int:
        """The index after the run of quoted and blank lines starting at i."""
        return _QUOTE_RUN.match(self.kind, i, end).end()  # type: ignore[union-attr]

    def quote_after(self, i: int, end: int) -> bool:
        """Whether a quoted line follows at or after i (before end)."""
        return self.kind.find(QUOTE, i, end) >= 0


_TEXT_IN_QUOTE = re.compile(rb"(?<=\x01)\x02(?=\x01|\x00|\Z)")
WRAPPED_LINKS = 1000  # lines looked at as the wrapped rest of a quoted link


def _mark_wrapped_links(lines: list[str], kind: bytearray) -> None:
    """A quoted link that a client wrapped leaves its rest on a line without ">" inside the quote block
    ("> see https://example.com/a/very/long" + "/path/rest"): such a line is quoted too."""
    for seen, found in enumerate(_TEXT_IN_QUOTE.finditer(kind)):
        if seen >= WRAPPED_LINKS:
            return
        i = found.start()
        line, above = lines[i].strip(), lines[i - 1]
        if line and len(line) <= MAX_CONTINUATION and not any(c.isspace() for c in line) \
                and ("://" in above[-MAX_LINE_CHECK:] or "www." in above[-MAX_LINE_CHECK:]) \
                and not above.rstrip().endswith((".", "!", "?", ":")):
            kind[i] = QUOTE


def _examined_bound(lines: list[str], kind: bytearray, most_lines: int, most_chars: int, from_end: bool) -> int:
    """Where the lines of text examined from the start (or from the end) stop: after `most_lines` lines of
    text or `most_chars` characters of them. Returns the index of the first line not examined (from the
    start), or the index after the last line not examined (from the end)."""
    count = len(kind)
    chars = 0
    for seen, found in enumerate(_TEXT_LINE.finditer(kind[::-1] if from_end else kind)):
        i = count - 1 - found.start() if from_end else found.start()
        chars += len(lines[i])
        if seen >= most_lines or chars > most_chars:
            return i + 1 if from_end else i
    return 0 if from_end else count


def _signature_end(body: _Lines, end: int) -> int:
    """Where a "-- " delimiter, or a separator line followed by a short footer, ends the reply."""
    seen_text = False
    kind, lines = body.kind, body.lines
    pattern = _TEXT_OR_LITERAL
    i = 0
    while True:
        found = pattern.search(kind, i, end)
        if found is None:
            return end
        i = found.start()
        if kind[i] == LITERAL:
            seen_text = True
            pattern = _TEXT_LINE
            i += 1
            continue
        line = lines[i]
        if line.lstrip()[:1] in DELIMITER_CHARS:
            if is_sig_delimiter(line):
                return i
            if seen_text and is_delimiter(line):
                nxt = body.next_nonblank(i + 1, end)
                if not body.nonblank_at_least(i + 1, end, FOOTER_LINES + 1) and _footer_separator(body, i):
                    return i
                if nxt is not None and kind[nxt] == TEXT and (
                        header_block_end(lines, nxt) or is_forward_marker(lines[nxt]) or is_attribution(lines[nxt])):
                    return i
        seen_text = True
        pattern = _TEXT_LINE
        i += 1


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
        return "attribution", i, _attribution_tail(lines, i, end)
    if may_start_wrapped_attribution(line) and body.joins_left > 0:
        body.joins_left -= 1
        after = join_wrapped(lines, i)
        if after and after <= end:
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


def _attribution_tail(lines: list[str], i: int, end: int) -> int:
    """The index after an attribution at lines[i]: a client that wraps "Op za 8 mei 2021 om 12:09 schreef" puts
    the name and address on the next line ("Richard <r@x.nl>:"), which belongs to it."""
    if i + 1 >= end or lines[i].rstrip().endswith((":", "：")):
        return i + 1
    nxt = lines[i + 1].strip()
    if nxt.endswith((":", "：")) and len(nxt) <= MAX_CONTINUATION and not is_quoted(nxt) \
            and ("@" in nxt or "<" in nxt) and is_attribution(f"{lines[i].strip()} {nxt}"):
        return i + 2
    return i + 1


def _continues(lines: list[str], first: int, k: int) -> bool:
    """Whether lines[k] reads as the wrapped rest of the line above it, not as a line of its own."""
    line = lines[k].lstrip(" \t>")
    if not line or line[0] in "<>\"'(" or "@" in line.split(None, 1)[0] or line[0].islower():
        return True
    above = next((lines[j] for j in range(k - 1, first - 1, -1) if lines[j].strip()), "")
    return above.rfind("<") > above.rfind(">") or above.rstrip().endswith(",")


Spans = list[list[int]]  # sorted, disjoint [start, end) ranges of line indexes


def _trim_lines(lines: list[str], text: str, blocks: dict[int, int], marker: bool,
                forward_mail: bool = False) -> tuple[Spans, int | None, bool]:
    """The ranges of lines to keep, of a body split by _split_body (`text` is the body, `marker` whether
    our marker followed it), where a forwarded message starts (None when there is none), and whether it
    has nothing written above it."""
    body = _Lines(lines, text, blocks)
    forward_at: int | None = None
    alone = False
    kind = body.kind
    end = _signature_end(body, len(lines))
    dropped: Spans = []
    seen_text = False
    i = 0
    while True:
        found = (_TEXT_LINE if seen_text else _TEXT_OR_LITERAL).search(kind, i, end)
        if found is None:
            break
        i = found.start()
        if kind[i] == LITERAL:
            seen_text = True
            i += 1
            continue
        history = _history_start(body, i, end)
        if history is None:
            if is_mobile_signoff(lines[i]):
                if seen_text:
                    end = i  # a device's sign-off ends the reply: below it is the original, unmarked
                    break
            else:
                seen_text = True
            i += 1
            continue
        what, start, after = history
        if start > i:
            seen_text = True  # lines between i and start are text
        if what != "attribution":
            if forward_at is None and (forward_mail or _forwarded(lines, what, start, after)):
                forward_at, alone = start, not seen_text
            if seen_text:
                end = start
                break
            dropped.append([start, after])  # a forward with nothing above: keep what was forwarded
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
            dropped.append([start, after])  # an attribution on top of unquoted text: drop the line
            i = after
            continue
        quote_end = body.after_quotes(nxt, end)
        answer = body.next_nonblank(quote_end, end)
        if answer is None:
            end = start  # only quotes follow
            break
        more_quotes = body.quote_after(answer, end)
        if not seen_text:
            # bottom-posting: the reply is below the quote
            i = quote_end if not more_quotes else after
            dropped.append([start, i])
            continue
        if more_quotes or body.nonblank_at_least(answer, end, ANSWER_LINES) or _only_greeting_above(body, start):
            dropped.append([start, after])  # inline answers: keep the quotes between, drop the attribution
            i = after
            continue
        if is_closing(lines[answer]):
            dropped.append([start, quote_end])  # a closing typed below the quoted history: the reply's end
            i = quote_end
            continue
        end = start  # a short line or two under the quote is a footer
        break
    keep = _complement(dropped, end)
    if marker:
        _drop_marker_attribution(body, keep)
    return _strip_tail(body, keep), forward_at, alone


def _forwarded(lines: list[str], what: str, start: int, after: int) -> bool:
    """Whether the history starting at lines[start] is a forwarded message: a forward marker, or a header
    block whose subject says so ("FW: …")."""
    if what == "forward":
        return is_forwarded_marker(lines[start])
    return what == "headers" and any(
        header_kind(line) == "subject" and is_forward_subject(line.split(":", 1)[-1]) for line in lines[start:after])


def _complement(dropped: Spans, end: int) -> Spans:
    """The ranges of [0, end) outside the (sorted, disjoint) dropped ranges."""
    keep: Spans = []
    at = 0
    for start, stop in dropped:
        if start >= end:
            break
        if start > at:
            keep.append([at, start])
        at = max(at, stop)
    if at < end:
        keep.append([at, end])
    return keep


def _only_greeting_above(body: _Lines, start: int) -> bool:
    """Whether the only text above an attribution is a salutation ("Hi Kim,"): the answer is below."""
    if not body.nonblank_at_least(0, start, 1) or body.nonblank_at_least(0, start, 2):
        return False
    line = body.lines[body.next_nonblank(0, start) or 0]
    return line.rstrip().endswith(",") and len(line) <= 60


def _pop_last(keep: Spans) -> None:
    keep[-1][1] -= 1
    if keep[-1][1] <= keep[-1][0]:
        keep.pop()


def _strip_last(body: _Lines, keep: Spans, kinds: bytes) -> None:
    """Drop the trailing lines of the given kinds (C-level, whole runs at a time)."""
    while keep:
        start, stop = keep[-1]
        keep[-1][1] = start + len(body.kind[start:stop].rstrip(kinds))
        if keep[-1][1] > start:
            return
        keep.pop()


def _drop_marker_attribution(body: _Lines, keep: Spans) -> None:
    """Above our marker, a client's attribution line in a language we don't know (ends with ":", names a
    date or an address) is dropped too: whatever the client wrote there introduces our notification."""
    _strip_last(body, keep, _EMPTY_BYTE)
    if not keep or body.kind[keep[-1][1] - 1] != TEXT:
        return
    line = body.lines[keep[-1][1] - 1].strip()
    if line.endswith((":", "：")) and len(line) <= 400 and ("@" in line or has_date(line)):
        _pop_last(keep)


def _strip_tail(body: _Lines, keep: Spans) -> Spans:
    """Drop trailing quotes, separators, sign-offs and blank lines; a body that is only a quote keeps it,
    unless it is a quoted thread (it opens with an attribution)."""
    kinds, lines = body.kind, body.lines
    has_text = any(_TEXT_OR_LITERAL.search(kinds, start, stop) for start, stop in keep)
    if not has_text:
        first = next((found for start, stop in keep if (found := kinds.find(QUOTE, start, stop)) >= 0), None)
        if first is not None and is_attribution(unquote(lines[first])[:MAX_LINE_CHECK]):
            return []
    blank = _EMPTY_BYTE + _QUOTE_BYTE if has_text else _EMPTY_BYTE
    for _ in range(FOOTER_CUTS):
        while keep:
            _strip_last(body, keep, blank)
            if not keep:
                break
            k = keep[-1][1] - 1
            if kinds[k] != TEXT:
                break
            line = lines[k]
            if is_delimiter(line) or is_mobile_signoff(line) or is_sig_delimiter(line):
                _pop_last(keep)
            elif is_dash_name(line) and (before := _kept_before(keep, k)) is not None and kinds[before] == EMPTY:
                _pop_last(keep)
            else:
                break
        if not has_text or not _cut_footer(body, keep):
            break
    while keep:
        start, stop = keep[0]
        keep[0][0] = stop - len(kinds[start:stop].lstrip(_EMPTY_BYTE))
        if keep[0][0] < stop:
            break
        keep.pop(0)
    return keep


def _cut_footer(body: _Lines, keep: Spans) -> bool:
    """Cut a contact block, legal notice, list footer or "-Name" line at the end of the kept lines (see
    footers.py); the last FOOTER_SCAN kept lines of text are looked at."""
    kinds = body.kind
    tail: list[int] = []
    stopped = False
    for start, stop in reversed(keep):
        for k in range(stop - 1, start - 1, -1):
            if kinds[k] not in (TEXT, EMPTY) or len(tail) >= FOOTER_SCAN:
                stopped = True
                break
            tail.append(k)
        if stopped:
            break
    tail.reverse()
    cut = footer_start([body.lines[k] for k in tail], text_above=stopped)
    if cut is None:
        return False
    at = tail[cut]
    while keep and keep[-1][0] >= at:
        keep.pop()
    if keep:
        keep[-1][1] = min(keep[-1][1], at)
    return True


def _kept_before(keep: Spans, k: int) -> int | None:
    """The kept line before the last kept line k."""
    if k - 1 >= keep[-1][0]:
        return k - 1
    return keep[-2][1] - 1 if len(keep) > 1 else None


def _join(lines: list[str], spans: Spans) -> str:
    return "\n".join(chain.from_iterable(lines[start:stop] for start, stop in spans))


def _without_blank_edges(text: str) -> str:
    """The text without its leading and trailing blank (whitespace-only) lines."""
    tail = len(text.rstrip())
    if not tail:
        return ""
    head = len(text) - len(text.lstrip())
    first = text.rfind("\n", 0, head) + 1
    last = text.find("\n", tail)
    return text[first: len(text) if last < 0 else last]


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _quoted_forward(lines: list[str], after: int) -> int | None:
    """Where a forward quoted as a whole starts ("> Begin forwarded message:", as Apple Mail writes it), in
    the first lines below the reply."""
    for k in range(after, min(len(lines), after + FORWARD_SEARCH)):
        if lines[k].strip():
            return k if is_quoted(lines[k]) and is_forwarded_marker(unquote(lines[k])) else None
    return None


# A splitter on the reply's own line, as some clients write it: "Thanks.-----Original Message-----" or
# "Sounds good! On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@x.org> wrote:". Such a line is split in two.
_SHARED_MARKER = re.compile(r"(?<=[^\s-])[ \t]*(?=-{3,}[ \t]*[^-\n]{3,40}?[ \t]*-{3,}[ \t]*$)", re.MULTILINE)
_COLON_LINE = re.compile(r"^[^\n]{12,800}[:：][ \t]*$", re.MULTILINE)  # lines that may end with an attribution
_SENTENCE_END = re.compile(r"[.!?)][ \t]+(?=\S)")
SENTENCE_ENDS = 20  # places in one line where an attribution may start
SHARED_LINES = 200  # candidate lines looked at, of each kind


def _split_shared_lines(text: str) -> str:
    if "-" not in text and ":" not in text and "：" not in text:
        return text
    cuts: list[int] = []
    for seen, match in enumerate(_SHARED_MARKER.finditer(text)):
        if seen >= SHARED_LINES:
            break
        end = text.find("\n", match.end())
        if is_forward_marker(text[match.end(): len(text) if end < 0 else end]):
            cuts.append(match.start())
    for seen, line in enumerate(_COLON_LINE.finditer(text)):
        if seen >= SHARED_LINES:
            break
        for split in islice(_SENTENCE_END.finditer(line.group()), SENTENCE_ENDS):
            rest = line.group()[split.end():]
            if starts_with_on(rest.lower()) and is_attribution(rest):
                cuts.append(line.start() + split.end())
                break
    if not cuts:
        return text
    parts, at = [], 0
    for cut in sorted(set(cuts)):
        parts.append(text[at:cut].rstrip(" \t"))
        at = cut
    parts.append(text[at:])
    return "\n".join(parts)


def _trim_forwarded(text: str) -> str:
    """A forwarded message's own text: its quotes and signature trimmed (a forward in it is history)."""
    return trim_text(text, forwards=False).text


def trim_text(text: str, forwards: bool = True, forward_mail: bool = False) -> Trimmed:
    """Plain-text body trimming: our marker, quoted history and signature are cut; a forwarded message is
    read into `forward` (unless forwards is False). forward_mail: the mail's subject says it is a forward
    ("Fwd: …"), so a header block or "Original Message" marker starts the forwarded message."""
    text = _as_text(text)
    try:
        body = _split_shared_lines(_normalise_ends(text or ""))
        marker = _marker_offset(body)
        part = body if marker is None else body[: max(marker - 1, 0)]
        lines, blocks = _split_body(part)
        keep, forward_at, alone = _trim_lines(lines, part, blocks, marker is not None, forward_mail and forwards)
        cut = _join(lines, _complement(keep, len(lines)))
        if marker is not None:
            cut = f"{cut}\n{body[marker:]}"
        forward = None
        if forward_at is None and forwards and not blocks:
            forward_at = _quoted_forward(lines, keep[-1][1] if keep else 0)
            alone = not keep
        if forward_at is not None and forwards and not blocks:
            forward = replace(read_forward(lines, forward_at, len(lines), _trim_forwarded), alone=alone)
            if forward.empty:
                forward = None  # a bare "Forwarded message" line: no empty block
                if alone:
                    return Trimmed(_without_blank_edges(part), "")  # the line alone is what was written
        return Trimmed(_join(lines, keep), _without_blank_edges(cut), forward)
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


def _reply_from_html(html: str, forward_mail: bool = False) -> Trimmed:
    document = html_text.Document(html)
    above, after, cut = document.split_at_quote()
    result = trim_text(above, forward_mail=forward_mail) if after is None else None
    forward = None
    if result is not None and result.text.strip():
        # nothing new below the quoted part: what is above it is the reply
        text = result.text
        trimmed_parts = [result.trimmed, cut]
        if forward_mail or any(is_forwarded_marker(line)
                               for line in islice(cut.split("\n", FORWARD_SEARCH), FORWARD_SEARCH)):
            forward = trim_text(document.text(), forward_mail=forward_mail).forward  # the cut part is forwarded
    else:
        # new text below or between quotes, or nothing above them (a forward): trim the whole text,
        # quotes rendered as "> " lines, by the same rules as a plain-text body
        result = trim_text(document.text(), forward_mail=forward_mail)
        text = result.text
        trimmed_parts = [result.trimmed]
        forward = result.forward
    if forward is not None:
        forward = replace(forward, text=_single_blank_lines(forward.text))
    return Trimmed(_single_blank_lines(text), "\n".join(part for part in trimmed_parts if part), forward)


_BLANK_RUN = re.compile(r"(?m)^([^\S\n]*+)(?:\n[^\S\n]*+(?=\n|\Z))+")


def _single_blank_lines(text: str) -> str:
    """HTML has no double blank lines; a dropped attribution line between two paragraphs leaves one.
    (Of a run of blank lines, the first is kept.)"""
    return _BLANK_RUN.sub(r"\1", text)


# A multipart mail's HTML is used for its formatting (bold, italics, lists, links) when its trimmed text says
# word for word what the trimmed plain text says; else the plain text, which trims most reliably, is posted.
_FORMATTING = re.compile(r"<(?:b|strong|i|em|ul|ol|a)[\s>]", re.IGNORECASE)
FORMATTING_SEARCH = 200_000  # characters of the HTML looked at for formatting
_LINK_TARGET = re.compile(r"\]\([^)\s]{0,2000}\)|<?(?:https?://|mailto:)[^\s>]{0,2000}>?")
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    """The words of a text, without link targets and Markdown marks (so that "[Docs](https://…)" and
    "Docs <https://…>" read the same)."""
    return _WORD.findall(_LINK_TARGET.sub(" ", text).replace("_", " ").lower())


def reply_from_parts(plain: str | None, html: str | None, subject: str = "") -> Trimmed:
    """The reply to post from a mail's text/plain and text/html bodies: the plain text's reply, with the
    HTML's formatting when both say the same; the HTML's for HTML-only mail."""
    plain = _as_text(plain) if plain is not None else None
    html = _as_text(html) if html is not None else None
    forward_mail = is_forward_subject(_as_text(subject)[:MAX_LINE_CHECK])
    try:
        if plain is not None and plain.strip():
            result = trim_text(plain, forward_mail=forward_mail)
            if html and _FORMATTING.search(html, 0, FORMATTING_SEARCH):
                formatted = _reply_from_html(html, forward_mail)
                if formatted.text.strip() and _words(formatted.text) == _words(result.text):
                    return Trimmed(formatted.text, result.trimmed)  # the same reply, with its formatting
            return result
        if html and html.strip():
            return _reply_from_html(html, forward_mail)
        return Trimmed("", "")
    except Exception:  # never lose a reply to a bug here
        log.exception("reply extraction failed; keeping the whole body")
        if plain and plain.strip():
            return Trimmed(plain.strip("\n"), "")
        return Trimmed(html_to_text(html or "").strip("\n"), "")
