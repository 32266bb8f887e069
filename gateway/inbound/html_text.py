"""HTML mail bodies: a small tree built with the standard library's html.parser, the quoted part found from
the structure mail clients leave (Gmail's gmail_quote, Apple Mail and Thunderbird's blockquote type=cite
and moz-cite-prefix, Outlook's divRplyFwdMsg and border-top header box, Yahoo's yahoo_quoted, ProtonMail's
protonmail_quote, and our own hidden marker), and text rendering that keeps paragraphs, lists and links.

Nothing here recurses over the tree: hostile mail nests elements thousands deep. A huge body is parsed only
up to MAX_PARSED_TAGS tags (html.parser costs microseconds per tag); in the rest, the quote start is found by
a keyword scan whose hits are checked by parsing their tag, and text is taken by a linear tag strip."""
from __future__ import annotations

import heapq
import re
from collections.abc import Callable
from html import unescape
from html.parser import HTMLParser

from gateway.markers import HTML_MARKER_ID_PREFIX

# Elements with no content and no end tag.
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# Elements whose content is never shown.
HIDDEN = frozenset("head script style title template noscript object iframe svg math xml button select".split())
# Elements that start and end a block of text.
BLOCK = frozenset(
    "address article aside blockquote center dd details dialog dir div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main menu nav ol p pre section summary table tbody thead tfoot tr ul "
    "body html caption".split()
)
# Blocks separated from their neighbours by a blank line.
PARAGRAPH = frozenset("p h1 h2 h3 h4 h5 h6 ul ol dl pre table blockquote".split())
# An open element closed implicitly when one of these opens (the common cases of HTML's rules).
AUTO_CLOSE = {
    "p": frozenset("p div ul ol dl table blockquote pre h1 h2 h3 h4 h5 h6 hr address form section article".split()),
    "li": frozenset(["li"]),
    "dt": frozenset(["dt", "dd"]),
    "dd": frozenset(["dt", "dd"]),
    "tr": frozenset(["tr"]),
    "td": frozenset(["td", "th", "tr"]),
    "th": frozenset(["td", "th", "tr"]),
    "option": frozenset(["option"]),
    "a": frozenset(["a"]),
}
MAX_DEPTH = 300  # deeper nesting is flattened
# Bounded work on huge bodies: only a prefix of at most this many tags and characters is parsed into the tree;
# the rest is converted by a linear tag-stripping scan (see `crude_text`), and the quoted part is looked for in
# it by a keyword scan whose hits are checked by parsing a small window.
MAX_PARSED_TAGS = 2000
MAX_PARSED_CHARS = 100_000
VERIFY_WINDOW = 1000  # characters parsed after an Outlook header box's tag to check it
PENDING_CHARS, PENDING_TAGS = 1000, 10  # see _parse
HEADER_BOX_ITEMS = 120  # elements and texts looked at in an Outlook header box candidate
MAX_VERIFIED = 20  # keyword hits checked at most
MAX_VERIFIED_TAG = 4000  # characters of a tag checked at most (a longer one starts no quote)
MAX_HIDDEN_BLOCKS = 500  # style/script/title/comment blocks removed from the rest at most
MAX_CRUDE_BREAK_TAGS = 20_000  # tags of the rest told apart as line breaks or not (then each is one)
MAX_UNESCAPED = 2000  # character references decoded one by one at most (the common named ones always)
MAX_ATTRS = 30
END_TAG_SEARCH = 64  # how far up the open elements a stray end tag is looked for

# Elements holding a signature (left out of the reply).
SIGNATURE_CLASSES = frozenset({
    "gmail_signature", "moz-signature", "protonmail_signature_block", "protonmail_signature_block-user",
    "protonmail_signature_block-proton", "yahoo-signature",
})
SIGNATURE_IDS = frozenset({"signature", "ms-outlook-mobile-signature", "x_signature", "ymail_android_signature"})
# Elements holding the "On … wrote:" line of a quote.
ATTRIBUTION_CLASSES = frozenset({"gmail_attr", "moz-cite-prefix"})

_SPACE = re.compile(r"[ \t\r\n\f\u00a0\u200b\u200c\ufeff]+")
_BORDER_TOP = re.compile(r"border-top\s*:\s*(?:solid|1(?:\.0)?pt|1px)", re.IGNORECASE)

OPEN, CLOSE, TEXT = 0, 1, 2
_QUOTE_ATTRS = frozenset({"class", "id", "type", "style"})  # a quote element is recognised by one of these


class Node:
    __slots__ = ("tag", "attrs", "children", "parent", "start", "end")

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[Node | str] = []
        self.parent = parent
        self.start = -1
        self.end = -1

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").lower().split())


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.unparsed = ""
        self.root = Node("#root", {}, None)
        self.stack: list[Node] = [self.root]

    def _node(self, tag: str, attrs: list[tuple[str, str | None]]) -> Node:
        return Node(tag, {k.lower(): (v or "") for k, v in attrs[:MAX_ATTRS]}, self.stack[-1])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        while len(self.stack) > 1 and tag in AUTO_CLOSE.get(self.stack[-1].tag, ()):
            self.stack.pop()
        node = self._node(tag, attrs)
        self.stack[-1].children.append(node)
        if tag not in VOID and len(self.stack) < MAX_DEPTH:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(self._node(tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, max(0, len(self.stack) - END_TAG_SEARCH), -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def _parse(html: str) -> _TreeBuilder:
    """Parse into a tree. What html.parser leaves pending after an unclosed comment, declaration or tag is
    kept in `unparsed` when it is long and holds more tags: closing the parser would rescan it to its end
    once per "<" (quadratic time)."""
    builder = _TreeBuilder()
    try:
        builder.feed(html)
        pending = builder.rawdata
        if len(pending) > PENDING_CHARS and pending.count("<", 1) > PENDING_TAGS and not builder.cdata_elem:
            builder.unparsed = pending
            builder.rawdata = ""
        builder.close()
    except Exception:  # html.parser is tolerant; whatever was parsed so far is kept
        pass
    return builder


def parse_html(html: str) -> Node:
    """The document as a tree; never raises on broken markup."""
    return _parse(html).root


_NTH_TAG = re.compile(rf"(?:[^<]*+<){{{MAX_PARSED_TAGS}}}")


def parse_limit(html: str) -> int:
    """Where the parsed prefix of a body ends: before its MAX_PARSED_TAGS-th tag, within MAX_PARSED_CHARS
    characters, at a tag or a space when there is one near."""
    limit = min(len(html), MAX_PARSED_CHARS)
    if html.count("<", 0, limit) >= MAX_PARSED_TAGS:
        return _NTH_TAG.match(html).end() - 1  # type: ignore[union-attr]
    if limit == len(html):
        return limit
    for boundary in ("<", "\n", " "):
        at = html.rfind(boundary, limit - 2000, limit)
        if at > 0:
            return at
    return limit


def is_marker(node: Node) -> bool:
    """Our own hidden "reply above this line" element (clients may prefix its id, as Outlook's "x_")."""
    return HTML_MARKER_ID_PREFIX in node.attrs.get("id", "")


def quote_kind(node: Node) -> str | None:
    """How this element starts the quoted part, or None:
    "container" (the quote is inside it), "prefix" (an attribution; the quote is the blockquote after it),
    "tail" (everything from here to the end is quoted history)."""
    attrs = node.attrs
    node_id = attrs.get("id", "")
    classes = node.classes()
    if "gmail_quote" in classes or "gmail_quote_container" in classes or "yahoo_quoted" in classes \
            or "protonmail_quote" in classes or node_id.startswith("yahoo_quoted") or "zmail_extra" in classes:
        return "container"
    if node.tag == "blockquote" and attrs.get("type", "").lower() == "cite":
        return "container"
    if "moz-cite-prefix" in classes:
        return "prefix"
    if node_id.endswith("divRplyFwdMsg") or node_id in ("appendonsend", "x_appendonsend") \
            or node_id.endswith("mail-editor-reference-message-container") or node_id == "stopSpelling":
        return "tail"
    if node.tag in ("div", "p") and _BORDER_TOP.search(attrs.get("style", "")[:500]) and _is_header_box(node):
        return "tail"
    return None


def _is_header_box(node: Node) -> bool:
    """Outlook's separator box holds only the From/Sent/To/Subject lines."""
    text = []
    size = 0
    stack: list[Node | str] = [node]
    for _ in range(HEADER_BOX_ITEMS):
        if not stack:
            break
        item = stack.pop()
        if isinstance(item, str):
            text.append(item)
            size += len(item)
            if size > 3000:
                return False
        else:
            stack.extend(reversed(item.children))
    else:
        return False  # too big for a box of four header lines
    joined = "".join(text)
    return ":" in joined or "：" in joined


def _hidden(node: Node) -> bool:
    if node.tag in HIDDEN or node.tag.startswith("o:"):
        return True
    style = node.attrs.get("style")
    return style is not None and "display:none" in style[:300].replace(" ", "").lower()


def _signature(node: Node) -> bool:
    attrs = node.attrs
    if "class" in attrs and node.classes() & SIGNATURE_CLASSES:
        return True
    return "id" in attrs and attrs["id"].lower() in SIGNATURE_IDS


class Document:
    """One HTML body, flattened to events (open, close, text) in document order."""

    def __init__(self, html: str) -> None:
        limit = parse_limit(html)
        builder = _parse(html[:limit])
        self.root = builder.root
        rest = html[limit:]  # not parsed: a huge body's tail, converted by `crude_text`
        if rest and builder.cdata_elem:  # the prefix ends inside a <style> or <script>
            close = rest.lower().find(f"</{builder.cdata_elem}")
            rest = "" if close < 0 else rest[close:]
        self.rest = builder.unparsed + rest
        self.events: list[tuple[int, Node | str]] = []
        self.marker: int | None = None  # event index of our marker
        self.quote: Node | None = None  # the first element starting the quoted part
        self.quote_kind: str | None = None
        self.signatures: list[Node] = []
        self._flatten()

    def _flatten(self) -> None:
        events = self.events
        stack: list[tuple[Node | str, bool]] = [(child, False) for child in reversed(self.root.children)]
        while stack:
            item, closing = stack.pop()
            if isinstance(item, str):
                events.append((TEXT, item))
                continue
            if closing:
                item.end = len(events)
                events.append((CLOSE, item))
                continue
            if item.attrs:
                if self.marker is None and is_marker(item):
                    self.marker = len(events)
                if _hidden(item):
                    if self.marker is None and _find(item, is_marker):
                        self.marker = len(events)
                    continue
                if self.quote is None and self.marker is None and item.attrs.keys() & _QUOTE_ATTRS:
                    kind = quote_kind(item)
                    if kind:
                        self.quote, self.quote_kind = item, kind
                if _signature(item):
                    self.signatures.append(item)
            elif item.tag in HIDDEN or item.tag.startswith("o:"):
                continue
            item.start = len(events)
            events.append((OPEN, item))
            stack.append((item, True))
            if item.children:
                stack.extend([(child, False) for child in reversed(item.children)])

    def _stop(self) -> int:
        return self.marker if self.marker is not None else len(self.events)

    def _channels(self, cut_from: int) -> bytearray:
        """Per event: 1 for the reply, 2 for what is cut (from `cut_from` on, and signatures)."""
        total = len(self.events)
        channel = bytearray(b"\x01") * total
        channel[cut_from:] = b"\x02" * (total - cut_from)
        for node in self.signatures:
            if 0 <= node.start < cut_from:
                channel[node.start: node.end + 1] = b"\x02" * (node.end + 1 - node.start)
        return channel

    def text(self) -> str:
        """The text up to our marker (signatures left out), quotes as "> " lines."""
        text = render(self.events, self._channels(self._stop()))[0]
        if self.rest and self.marker is None:
            marker = find_quote_start(self.rest, markers_only=True)
            text = join_text(text, crude_text(self.rest[:marker]))
        return text

    def split_at_quote(self) -> tuple[str, str | None, str]:
        """(text above the quoted part, text written below or between the quotes or None, text cut)."""
        stop = self._stop()
        quote = self.quote
        if quote is None or quote.start >= stop:
            above, cut = render(self.events, self._channels(stop))
            if self.rest and self.marker is None:
                # the quoted part starts in the unparsed rest of a huge body, or there is none
                start = find_quote_start(self.rest)
                return join_text(above, crude_text(self.rest[:start])), None, join_text(
                    cut, crude_text(self.rest[start:]))
            return above, None, join_text(cut, crude_text(self.rest))
        above, cut = render(self.events, self._channels(quote.start))
        cut = join_text(cut, crude_text(self.rest))
        if self.quote_kind == "tail":
            return above, None, cut
        return above, self._answer_after_quote(quote, stop), cut

    def _answer_after_quote(self, quote: Node, stop: int) -> str | None:
        """Text written below or between the quotes, outside blockquotes, attributions and signatures."""
        first_block = quote.start
        for index in range(quote.start, stop):
            op, item = self.events[index]
            if op == OPEN and isinstance(item, Node) and item.tag == "blockquote":
                first_block = index
                break
        parts: list[str] = []
        depth = 0
        skip_until = -1
        for index in range(first_block, stop):
            op, item = self.events[index]
            if index <= skip_until:
                continue
            if op == OPEN and isinstance(item, Node):
                if item.tag == "blockquote":
                    depth += 1
                elif depth == 0 and (item.classes() & ATTRIBUTION_CLASSES or _signature(item)
                                     or quote_kind(item) == "tail"):
                    skip_until = item.end
            elif op == CLOSE and isinstance(item, Node) and item.tag == "blockquote":
                depth = max(0, depth - 1)
            elif op == TEXT and depth == 0 and isinstance(item, str) and item.strip():
                parts.append(item)
        answer = _SPACE.sub(" ", " ".join(parts)).strip()
        return answer if any(ch.isalnum() for ch in answer) else None


class _Renderer:
    """Text output: blocks on their own lines, blank lines between paragraphs, "- " and "1. " list items,
    links as Markdown [text](url) unless the text is the address, blockquotes as "> " lines.
    Output goes to one of two channels (the reply, what is cut); layout state is shared by both."""

    def __init__(self) -> None:
        self.outputs: tuple[list[str], list[str], list[str]] = ([], [], [])
        self.lines = self.outputs[1]
        self.current: list[str] = []
        self.prefix = ""
        self.last_prefix = ""
        self.indent = ""  # of a nested list item, for the next line only
        self.blank = False  # a blank line is due before the next text
        self.lists: list[list] = []  # [tag, counter]
        self.word_lines: list[tuple[Node, int]] = []  # open Word paragraphs, with the line count at their start
        self.carried: list[str] = []  # emphasis open at the end of the last line, reopened on the next

    def switch(self, channel: int) -> None:
        self.flush()
        self.lines = self.outputs[channel]

    def _line(self, text: str) -> None:
        lines = self.lines
        if self.blank and lines and lines[-1].strip(" >"):
            # the blank line between two blocks carries the quoting both have in common
            shared = self.prefix if len(self.prefix) <= len(self.last_prefix) else self.last_prefix
            lines.append(shared.rstrip())
        self.blank = False
        lines.append(self.prefix + self.indent + text)
        self.indent = ""
        self.last_prefix = self.prefix

    def _take(self) -> str:
        """The pending text as one line: spaces collapsed, emphasis marks placed (see _emphasis)."""
        text = "".join(self.current)
        self.current = []
        if _MARK_START in text or self.carried:
            text, self.carried = _emphasis(text, self.carried)
        return _SPACE.sub(" ", text).strip()

    def flush(self) -> None:
        if not self.current:
            return
        text = self._take()
        if text:
            self._line(text)

    def block(self, paragraph: bool) -> None:
        self.flush()
        if paragraph:
            self.blank = True

    def br(self) -> None:
        if self.current:
            text = self._take()
            if text:
                self._line(text)
                return
        if self.lines and self.lines[-1].strip(" >"):
            self.blank = True

    def text(self, data: str) -> None:
        self.current.append(data)

    def pre(self, data: str) -> None:
        self.flush()
        for line in data.strip("\n").split("\n"):
            self._line(line.rstrip())

    def result(self, channel: int) -> str:
        out: list[str] = []
        for line in self.outputs[channel]:
            if not line.strip(" >") and out and not out[-1].strip(" >"):
                continue
            out.append(line)
        while out and not out[-1].strip(" >"):
            out.pop()
        first = next((k for k, line in enumerate(out) if line.strip(" >")), len(out))
        return "\n".join(out[first:])


LINK_TEXT_EVENTS = 64  # a link's label is read from at most this many events (unclosed links nest)


def _pre_text(events: list[tuple[int, Node | str]], start: int, end: int) -> str:
    parts = []
    for op, item in events[start + 1: end]:
        if op == TEXT and isinstance(item, str):
            parts.append(item)
        elif op == OPEN and isinstance(item, Node) and item.tag == "br":
            parts.append("\n")
    return "".join(parts)


def _link_text(events: list[tuple[int, Node | str]], start: int, end: int) -> str:
    stop = min(end, start + 1 + LINK_TEXT_EVENTS)
    parts = [item for op, item in events[start + 1: stop] if op == TEXT and isinstance(item, str)]
    if stop < end:
        parts.append("…")
    return _SPACE.sub(" ", "".join(parts)).strip()


def render(events: list[tuple[int, Node | str]], channel: bytearray | None = None) -> tuple[str, str]:
    """(text of the events in channel 1, text of those in channel 2); channel 0 is left out.
    Every event shapes the layout, so each part renders as it looks in the whole document."""
    r = _Renderer()
    current = 1
    total = len(events)
    links: list[tuple[str, str, bool]] = []
    index = 0
    while index < total:
        op, item = events[index]
        if channel is not None and channel[index] != current:
            current = channel[index]
            r.switch(current)
        if op == TEXT:
            r.current.append(item)  # type: ignore[arg-type]
            index += 1
            continue
        node: Node = item  # type: ignore[assignment]
        tag = node.tag
        if op == OPEN:
            if tag == "br":
                r.br()
            elif tag == "hr":
                r.block(True)
            elif tag == "img":
                alt = node.attrs.get("alt", "").strip()
                if alt and len(alt) <= 8 and "." not in alt:
                    r.text(alt)
            elif tag == "pre" and node.end > index and (channel is None or channel[node.end] == current):
                r.block(True)
                r.pre(_pre_text(events, index, node.end))
                r.block(True)
                index = node.end + 1
                continue
            elif tag == "blockquote":
                r.block(True)
                r.prefix += "> "
            elif tag in ("ul", "ol"):
                r.block(not r.lists)
                r.lists.append([tag, 0])
            elif tag == "li":
                r.block(False)
                if r.lists:
                    current_list = r.lists[-1]
                    current_list[1] += 1
                    r.indent = "   " * (len(r.lists) - 1)
                    r.text(f"{current_list[1]}. " if current_list[0] == "ol" else "- ")
                else:
                    r.text("- ")
            elif tag == "a":
                href = node.attrs.get("href", "").strip()
                label = _link_text(events, index, node.end) if node.end > index else ""
                markdown = _markdown_link(href, label)
                links.append((href, label, markdown))
                if markdown:
                    r.text("[")
            elif tag in ("td", "th"):
                r.text(" ")
            elif tag in EMPHASIS:
                r.text(_MARK_START + EMPHASIS[tag])
            elif tag == "p" and "msonormal" in node.attrs.get("class", "").lower():
                # Word's paragraphs are lines (no margin); an empty one is a blank line
                r.block(False)
                r.word_lines.append((node, len(r.lines)))
            elif tag in BLOCK:
                r.block(tag in PARAGRAPH)
        else:
            if tag == "blockquote":
                r.block(True)
                r.prefix = r.prefix[:-2]
            elif tag in ("ul", "ol"):
                if r.lists:
                    r.lists.pop()
                r.block(not r.lists)
            elif tag == "a":
                if links:
                    href, _label, markdown = links.pop()
                    if markdown:
                        r.text(f"]({href})")
            elif tag in ("td", "th"):
                r.text(" ")
            elif tag in EMPHASIS:
                r.text(_MARK_END + EMPHASIS[tag])
            elif r.word_lines and r.word_lines[-1][0] is node:
                r.flush()
                _node, count = r.word_lines.pop()
                if len(r.lines) == count and r.lines and r.lines[-1].strip(" >"):
                    r.blank = True
            elif tag in BLOCK:
                r.block(tag in PARAGRAPH)
        index += 1
    r.flush()
    return r.result(1), r.result(2)


# Bold and italics as Markdown. In the rendered text an element's start and end are a control character and
# the mark; _emphasis places the marks against the words (never "** x **"), drops empty ones, and closes
# and reopens them at line ends.
EMPHASIS = {"b": "**", "strong": "**", "i": "*", "em": "*"}
_MARK_START, _MARK_END = "\x01", "\x02"
_MARKS = re.compile("([\x01\x02])(\\*\\*|\\*)")


def _emphasis(text: str, carried: list[str]) -> tuple[str, list[str]]:
    """The line with its emphasis marks placed, and the marks still open at its end."""
    out: list[str] = []
    pending = list(carried)  # opened, waiting for a word
    open_marks: list[str] = []  # written to out
    pos = 0
    for match in _MARKS.finditer(text):
        _words(out, text[pos:match.start()], pending, open_marks)
        pos = match.end()
        kind, mark = match.groups()
        if kind == _MARK_START:
            if mark not in pending and mark not in open_marks:
                pending.append(mark)
        elif mark in pending:
            pending.remove(mark)  # nothing between: no mark at all
        elif mark in open_marks:
            _close(out, open_marks, mark)
    _words(out, text[pos:], pending, open_marks)
    still_open = open_marks + pending
    for mark in reversed(open_marks):
        _close(out, open_marks, mark)
    return "".join(out), still_open


def _words(out: list[str], piece: str, pending: list[str], open_marks: list[str]) -> None:
    if not piece:
        return
    if pending and piece.strip():
        lead = piece[: len(piece) - len(piece.lstrip())]
        out.append(lead + "".join(pending))
        open_marks.extend(pending)
        pending.clear()
        piece = piece[len(lead):]
    out.append(piece)


def _close(out: list[str], open_marks: list[str], mark: str) -> None:
    """Close `mark` (and the marks opened after it, which Markdown needs closed first) against the last word."""
    index = open_marks.index(mark)
    closing = "".join(reversed(open_marks[index:]))
    del open_marks[index:]
    spaces: list[str] = []  # the whitespace at the end of out, in reverse order
    while out and not out[-1].strip():
        spaces.append(out.pop())
    if out:
        last = out.pop()
        word_end = len(last.rstrip())
        spaces.append(last[word_end:])
        out.append(last[:word_end])
    out.append(closing)
    out.extend(reversed(spaces))


def _markdown_link(href: str, label: str) -> bool:
    if not href or not label or len(href) > 2000:
        return False
    low = href.lower()
    if not low.startswith(("http://", "https://")):
        return False
    return href.rstrip("/") != label.rstrip("/") and low.split("://", 1)[-1].rstrip("/") != label.lower().rstrip("/")


def _find(node: Node, predicate: Callable[[Node], bool]) -> Node | None:
    stack: list[Node | str] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Node):
            if predicate(item):
                return item
            stack.extend(item.children)
    return None


def html_to_text(html: str) -> str:
    """The whole HTML body as plain text (blockquotes as "> " lines, signatures kept)."""
    document = Document(html)
    return join_text(render(document.events)[0], crude_text(document.rest))


def join_text(first: str, second: str) -> str:
    return f"{first}\n\n{second}" if first and second else first or second


# ---------- the unparsed rest of a huge body ----------

_QUOTE_KEYWORDS = (
    b"gmail_quote", b"yahoo_quoted", b"protonmail_quote", b"zmail_extra", b"moz-cite-prefix", b"divrplyfwdmsg",
    b"appendonsend", b"mail-editor-reference-message-container", b"stopspelling", b"<blockquote", b"border-top",
)
_MARKER_KEYWORD = HTML_MARKER_ID_PREFIX.lower().encode("ascii")


def _ascii_lower(html: str) -> bytes:
    """The body in lower case, one byte per character (so positions match), for keyword scans."""
    return html.encode("ascii", "replace").lower()


def _starts_quote(html: str, start: int, end: int, markers_only: bool) -> bool:
    """Whether the element whose start tag is html[start:end] starts the quoted part (or is our marker)."""
    root = parse_html(html[start:end])
    node = next((child for child in root.children if isinstance(child, Node)), None)
    if node is None:
        return False
    if is_marker(node):
        return True
    if markers_only or _hidden(node):
        return False
    if "border-top" in node.attrs.get("style", "").lower():  # Outlook's header box: its text is needed
        root = parse_html(html[start: end + VERIFY_WINDOW])
        node = next((child for child in root.children if isinstance(child, Node)), node)
    return quote_kind(node) is not None


def find_quote_start(html: str, markers_only: bool = False) -> int:
    """Where the first element starting the quoted part (or our marker) opens in unparsed HTML, found by a
    keyword scan (each hit checked by parsing its tag); len(html) when there is none."""
    low = _ascii_lower(html)
    keywords = (_MARKER_KEYWORD,) if markers_only else (*_QUOTE_KEYWORDS, _MARKER_KEYWORD)
    hits = [(at, keyword) for keyword in keywords if (at := low.find(keyword)) >= 0]
    heapq.heapify(hits)
    for _ in range(MAX_VERIFIED):
        if not hits:
            break
        at, keyword = heapq.heappop(hits)
        start = at if keyword.startswith(b"<") else low.rfind(b"<", 0, at)
        end = low.find(b">", at)
        if end < 0:
            continue  # no tag closes after this keyword (nor after its later occurrences)
        if 0 <= start and end - start < MAX_VERIFIED_TAG and low.find(b">", start, at) < 0 \
                and _starts_quote(html, start, end + 1, markers_only):
            return start
        following = low.find(keyword, end)
        if following >= 0:
            heapq.heappush(hits, (following, keyword))
    return len(html)


_HIDDEN_OPENERS = {b"<style": b"</style", b"<script": b"</script", b"<title": b"</title", b"<!--": b"-->"}
_NAME_ENDS = frozenset({b" ", b">", b"\t", b"\n", b"\r", b"\f", b"/", b""})
_CRUDE_BREAK = re.compile(  # a run of block tags is one line break
    r"(?:<(?=[/a-zA-Z])(?:br|/?(?:p|div|li|tr|h[1-6]|blockquote|table|ul|ol|dl|dt|dd|pre|hr|section|article|header"
    r"|footer))\b[^<>]*+>)++", re.IGNORECASE)
_CRUDE_TAG = re.compile(r"<[^<>]*+>")
_LITERAL_BREAKS = ("<br>", "<br/>", "<br />", "</div>", "<div>", "</p>", "<p>", "</li>", "</tr>", "<BR>", "</DIV>",
                   "<DIV>", "</P>", "<P>")
_NTH_CRUDE_TAG = re.compile(rf"(?:[^<]*+<){{{MAX_CRUDE_BREAK_TAGS}}}")
_CRUDE_INDENT = re.compile(r"\n[^\S\n]++")  # source indentation would read as a Markdown code block
_CRUDE_BLANKS = re.compile(r"\n\n\n+")
_COMMON_ENTITIES = (("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&"))


def _without_hidden(html: str) -> str:
    """The markup without style, script and title contents and comments (an unclosed one runs to the end)."""
    low = _ascii_lower(html)
    if b"<s" not in low and b"<t" not in low and b"<!--" not in low:
        return html
    parts: list[str] = []
    at = 0
    found = {opener: low.find(opener) for opener in _HIDDEN_OPENERS}
    for _ in range(MAX_HIDDEN_BLOCKS):
        opener, start = min(((key, pos) for key, pos in found.items() if pos >= 0), key=lambda item: item[1],
                            default=(b"", -1))
        if start < 0:
            break
        if opener != b"<!--" and low[start + len(opener): start + len(opener) + 1] not in _NAME_ENDS:
            found[opener] = low.find(opener, start + 1)  # "<styles>", "<titled>": not the element
            continue
        parts.append(html[at:start])
        close = low.find(_HIDDEN_OPENERS[opener], start + len(opener))
        if close < 0:
            return "".join(parts)
        end = low.find(b">", close)
        at = len(html) if end < 0 else end + 1
        for key in found:
            if 0 <= found[key] < at:
                found[key] = low.find(key, at)
    parts.append(html[at:])
    return "".join(parts)


def crude_text(html: str) -> str:
    """Text of unparsed markup in linear time: block tags become line breaks, other tags go, character
    references are decoded and indentation dropped (no lists, links or quote prefixes)."""
    if not html:
        return ""
    html = _without_hidden(html)
    for tag in _LITERAL_BREAKS:  # the commonest block tags, replaced in C before the regular expressions
        if tag in html:
            html = html.replace(tag, "\n")
    if html.count("<") <= MAX_CRUDE_BREAK_TAGS:
        text = _CRUDE_TAG.sub("", _CRUDE_BREAK.sub("\n", html))
    else:  # past that many tags, every tag ends a line (telling block tags apart costs a regex branch each)
        split = _NTH_CRUDE_TAG.match(html).end() - 1  # type: ignore[union-attr]
        text = _CRUDE_TAG.sub("", _CRUDE_BREAK.sub("\n", html[:split])) + _CRUDE_TAG.sub("\n", html[split:])
    if "&" in text:
        if text.count("&") <= MAX_UNESCAPED:
            text = unescape(text)
        else:
            for entity, char in _COMMON_ENTITIES:
                text = text.replace(entity, char)
    return _CRUDE_BLANKS.sub("\n\n", _CRUDE_INDENT.sub("\n", text)).strip()
