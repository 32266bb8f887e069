"""HTML mail bodies: a small tree built with the standard library's html.parser, the quoted part found from
the structure mail clients leave (Gmail's gmail_quote, Apple Mail and Thunderbird's blockquote type=cite
and moz-cite-prefix, Outlook's divRplyFwdMsg and border-top header box, Yahoo's yahoo_quoted, ProtonMail's
protonmail_quote, and our own hidden marker), and text rendering that keeps paragraphs, lists and links.

Nothing here recurses over the tree: hostile mail nests elements thousands deep."""
from __future__ import annotations

import re
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
}
MAX_DEPTH = 300  # deeper nesting is flattened
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


def parse_html(html: str) -> Node:
    """The document as a tree; never raises on broken markup."""
    builder = _TreeBuilder()
    try:
        builder.feed(html)
        builder.close()
    except Exception:  # html.parser is tolerant; whatever was parsed so far is kept
        pass
    return builder.root


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
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            text.append(item)
            size += len(item)
            if size > 3000:
                return False
        else:
            stack.extend(reversed(item.children))
    joined = "".join(text)
    return ":" in joined or "：" in joined


def _hidden(node: Node) -> bool:
    if node.tag in HIDDEN or node.tag.startswith("o:"):
        return True
    style = node.attrs.get("style", "")[:300].replace(" ", "").lower()
    return "display:none" in style


def _signature(node: Node) -> bool:
    return bool(node.classes() & SIGNATURE_CLASSES) or node.attrs.get("id", "").lower() in SIGNATURE_IDS


class Document:
    """One HTML body, flattened to events (open, close, text) in document order."""

    def __init__(self, html: str) -> None:
        self.root = parse_html(html)
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
            if self.marker is None and is_marker(item):
                self.marker = len(events)
            if _hidden(item):
                continue
            if self.quote is None and self.marker is None:
                kind = quote_kind(item)
                if kind:
                    self.quote, self.quote_kind = item, kind
            if _signature(item):
                self.signatures.append(item)
            item.start = len(events)
            events.append((OPEN, item))
            stack.append((item, True))
            stack.extend((child, False) for child in reversed(item.children))

    def _stop(self) -> int:
        return self.marker if self.marker is not None else len(self.events)

    def _skipped(self) -> list[tuple[int, int]]:
        return [(node.start, node.end) for node in self.signatures if node.start >= 0]

    def text(self) -> str:
        """The text up to our marker (signatures left out), quotes as "> " lines."""
        return render(self.events, [(0, self._stop())], self._skipped())

    def split_at_quote(self) -> tuple[str, str | None, str]:
        """(text above the quoted part, text written below or between the quotes or None, text cut)."""
        stop = self._stop()
        quote = self.quote
        if quote is None or quote.start >= stop:
            above = render(self.events, [(0, stop)], self._skipped())
            cut = render(self.events, [(stop, len(self.events))], [])
            return above, None, cut
        above = render(self.events, [(0, quote.start)], self._skipped())
        cut = render(self.events, [(quote.start, len(self.events))], [])
        if self.quote_kind == "tail":
            return above, None, cut
        after = self._answer_after_quote(quote, stop)
        return above, after, cut

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
    links as Markdown [text](url) unless the text is the address, blockquotes as "> " lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.prefix = ""
        self.blank = False  # a blank line is due before the next text
        self.lists: list[list] = []  # [tag, counter]
        self.emit = True

    def _line(self, text: str) -> None:
        if not self.emit:
            return
        if self.blank and self.lines and self.lines[-1].strip(" >"):
            self.lines.append(self.prefix.rstrip())
        self.blank = False
        self.lines.append(self.prefix + text)

    def flush(self) -> None:
        text = _SPACE.sub(" ", "".join(self.current)).strip()
        self.current = []
        if text:
            self._line(text)

    def block(self, paragraph: bool) -> None:
        self.flush()
        if paragraph:
            self.blank = True

    def br(self) -> None:
        text = _SPACE.sub(" ", "".join(self.current)).strip()
        self.current = []
        if text:
            self._line(text)
        elif self.emit and self.lines and self.lines[-1].strip(" >"):
            self.blank = True

    def text(self, data: str) -> None:
        if self.emit:
            self.current.append(data)

    def pre(self, data: str) -> None:
        self.flush()
        for line in data.strip("\n").split("\n"):
            self._line(line.rstrip())

    def result(self) -> str:
        self.flush()
        out: list[str] = []
        for line in self.lines:
            if not line.strip(" >") and out and not out[-1].strip(" >"):
                continue
            out.append(line)
        while out and not out[-1].strip(" >"):
            out.pop()
        while out and not out[0].strip(" >"):
            out.pop(0)
        return "\n".join(out)


def _pre_text(events: list[tuple[int, Node | str]], start: int, end: int) -> str:
    parts = []
    for op, item in events[start + 1: end]:
        if op == TEXT and isinstance(item, str):
            parts.append(item)
        elif op == OPEN and isinstance(item, Node) and item.tag == "br":
            parts.append("\n")
    return "".join(parts)


def _link_text(events: list[tuple[int, Node | str]], start: int, end: int) -> str:
    parts = [item for op, item in events[start + 1: end] if op == TEXT and isinstance(item, str)]
    return _SPACE.sub(" ", "".join(parts)).strip()


def render(events: list[tuple[int, Node | str]], ranges: list[tuple[int, int]],
           skip: list[tuple[int, int]]) -> str:
    """Text of the events inside `ranges` (half-open index ranges), leaving out `skip` (closed ranges);
    events outside still shape the layout, so a slice renders as it looks in the whole document."""
    r = _Renderer()

    def shown(index: int) -> bool:
        return any(a <= index < b for a, b in ranges) and not any(a <= index <= b for a, b in skip)

    index = 0
    total = len(events)
    links: list[tuple[str, str]] = []
    while index < total:
        op, item = events[index]
        emit = shown(index)
        if emit != r.emit:
            r.flush()
            r.emit = emit
        if op == TEXT:
            r.text(item)  # type: ignore[arg-type]
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
            elif tag == "pre" and node.end > index:
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
                    current = r.lists[-1]
                    current[1] += 1
                    indent = "  " * (len(r.lists) - 1)
                    r.text(f"{indent}{current[1]}. " if current[0] == "ol" else f"{indent}- ")
                else:
                    r.text("- ")
            elif tag == "a":
                href = node.attrs.get("href", "").strip()
                links.append((href, _link_text(events, index, node.end) if node.end > index else ""))
                if _markdown_link(href, links[-1][1]):
                    r.text("[")
            elif tag in ("td", "th"):
                r.text(" ")
            elif tag in BLOCK:
                r.block(tag in PARAGRAPH)
        else:
            if tag == "blockquote":
                r.block(True)
                r.prefix = r.prefix[:-2]
            elif tag in ("ul", "ol"):
                r.block(True)
                if r.lists:
                    r.lists.pop()
            elif tag == "a":
                if links:
                    href, label = links.pop()
                    if _markdown_link(href, label):
                        r.text(f"]({href})")
            elif tag in ("td", "th"):
                r.text(" ")
            elif tag in BLOCK:
                r.block(tag in PARAGRAPH)
        index += 1
    return r.result()


def _markdown_link(href: str, label: str) -> bool:
    if not href or not label or len(href) > 2000:
        return False
    low = href.lower()
    if not low.startswith(("http://", "https://")):
        return False
    return href.rstrip("/") != label.rstrip("/") and low.split("://", 1)[-1].rstrip("/") != label.lower().rstrip("/")


def html_to_text(html: str) -> str:
    """The whole HTML body as plain text (blockquotes as "> " lines, signatures kept)."""
    document = Document(html)
    return render(document.events, [(0, len(document.events))], [])
