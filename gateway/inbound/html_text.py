"""HTML mail bodies as a small tree (stdlib html.parser), their quoted part found from the structure
mail clients leave, and the rest rendered as plain text that keeps paragraphs, lists and links."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from gateway.markers import HTML_MARKER_ID_PREFIX

# Elements with no content and no end tag.
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# Elements whose content is never shown.
HIDDEN = frozenset("head script style title template noscript object iframe svg math xml".split())
# Elements that start and end a block of text.
BLOCK = frozenset(
    "address article aside blockquote center dd details dialog dir div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main menu nav ol p pre section summary table tbody thead tfoot tr ul "
    "body html caption".split()
)
# Blocks that are separated from their neighbours by a blank line.
PARAGRAPH = frozenset("p h1 h2 h3 h4 h5 h6 ul ol dl pre table blockquote".split())
# An open element closed implicitly when one of these opens (the common HTML cases only).
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
MAX_DEPTH = 400  # deeper nesting is flattened: hostile mail nests thousands of levels

_SPACE = re.compile(r"[ \t\r\n\f\u00a0\u200b]+")
_BORDER_TOP = re.compile(r"border-top\s*:\s*(?:solid|1pt|1px)", re.IGNORECASE)


@dataclass(eq=False)
class Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)
    parent: Node | None = None


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root")
        self.stack: list[Node] = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        closes = AUTO_CLOSE
        while len(self.stack) > 1 and tag in closes.get(self.stack[-1].tag, ()):
            self.stack.pop()
        node = Node(tag, {k.lower(): (v or "") for k, v in attrs[:50]}, parent=self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID and len(self.stack) < MAX_DEPTH:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k.lower(): (v or "") for k, v in attrs[:50]}, parent=self.stack[-1])
        self.stack[-1].children.append(node)

    def handle_endtag(self, tag: str) -> None:
        # Close up to the nearest open element of that name; a stray end tag is ignored.
        for i in range(len(self.stack) - 1, max(0, len(self.stack) - 60), -1):
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
    except Exception:  # html.parser is tolerant, but an assertion on odd markup must not lose the mail
        pass
    return builder.root


def _classes(node: Node) -> set[str]:
    return set(node.attrs.get("class", "").lower().split())


def quote_kind(node: Node) -> str | None:
    """Why this element starts the quoted part (a name for logs and tests), or None."""
    tag, attrs = node.tag, node.attrs
    node_id = attrs.get("id", "")
    if node_id.startswith(HTML_MARKER_ID_PREFIX):
        return "workrate-marker"
    classes = _classes(node)
    if "gmail_quote" in classes or "gmail_quote_container" in classes:
        return "gmail"
    if "yahoo_quoted" in classes or node_id.startswith("yahoo_quoted"):
        return "yahoo"
    if "protonmail_quote" in classes:
        return "protonmail"
    if "moz-cite-prefix" in classes:
        return "thunderbird"
    if node_id in ("divRplyFwdMsg", "x_divRplyFwdMsg") or node_id.endswith("_divRplyFwdMsg"):
        return "outlook"
    if node_id in ("appendonsend", "mail-editor-reference-message-container"):
        return "outlook"
    if tag == "blockquote" and attrs.get("type", "").lower() == "cite":
        return "cite"
    if tag == "div" and "zmail_extra" in classes:
        return "zoho"
    if tag in ("div", "p") and _BORDER_TOP.search(attrs.get("style", "")[:500]) and not _text_is_long(node):
        return "outlook"
    if tag == "hr" and attrs.get("id", "") == "stopSpelling":
        return "outlook"
    return None


def _text_is_long(node: Node) -> bool:
    """An Outlook separator div holds only the header block; a border-top box with a long text is content."""
    total = 0
    stack: list[Node | str] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
            if total > 2000:
                return True
        else:
            stack.extend(item.children)
    return False


class _Renderer:
    """Renders a tree to text: blocks on their own lines, blank lines between paragraphs, list bullets,
    links as `text (url)` unless the text is the url, blockquotes prefixed with "> "."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.prefix = ""
        self.pending_blank = False
        self.list_stack: list[list[int | str]] = []

    def _flush(self) -> None:
        text = _SPACE.sub(" ", "".join(self.current)).strip()
        self.current = []
        if text:
            if self.pending_blank and self.lines and self.lines[-1].strip(" >"):
                self.lines.append(self.prefix.rstrip())
            self.pending_blank = False
            self.lines.append(self.prefix + text)

    def block(self, blank: bool) -> None:
        self._flush()
        if blank:
            self.pending_blank = True

    def text(self, data: str) -> None:
        self.current.append(data)

    def br(self) -> None:
        text = _SPACE.sub(" ", "".join(self.current)).strip()
        self.current = []
        if self.pending_blank and self.lines and self.lines[-1].strip(" >") and text:
            self.lines.append(self.prefix.rstrip())
        self.pending_blank = False
        self.lines.append(self.prefix + text if text else self.prefix.rstrip())

    def pre(self, data: str) -> None:
        self._flush()
        for line in data.split("\n"):
            self.lines.append(self.prefix + line.rstrip())

    def result(self) -> str:
        self._flush()
        out: list[str] = []
        for line in self.lines:
            if not line.strip(" >") and out and not out[-1].strip(" >"):
                continue  # collapse runs of blank lines
            out.append(line)
        while out and not out[-1].strip(" >"):
            out.pop()
        while out and not out[0].strip(" >"):
            out.pop(0)
        return "\n".join(out)


def _render(node: Node, r: _Renderer, stop: Node | None) -> bool:
    """Render node's children; returns False once `stop` is reached (everything from it on is left out)."""
    # Iterative walk: hostile mail nests deeply, so no recursion.
    stack: list[tuple[Node | str, bool]] = [(child, False) for child in reversed(node.children)]
    while stack:
        item, closing = stack.pop()
        if isinstance(item, str):
            r.text(item)
            continue
        if item is stop:
            return False
        tag = item.tag
        if closing:
            if tag == "blockquote":
                r.block(True)
                r.prefix = r.prefix[:-2]
                r.pending_blank = True
            elif tag in ("ul", "ol"):
                r.block(True)
                if r.list_stack:
                    r.list_stack.pop()
            elif tag == "a":
                href = item.attrs.get("href", "").strip()
                label = _link_label(item)
                if href and not href.lower().startswith(("mailto:", "javascript:", "#", "cid:")) \
                        and label and href.rstrip("/") != label.strip().rstrip("/"):
                    r.text(f" ({href})")
            elif tag in BLOCK or tag in ("td", "th"):
                r.block(tag in PARAGRAPH)
            continue
        if tag in HIDDEN or tag.startswith("o:") or _hidden_style(item):
            if stop is not None and _contains(item, stop):
                return False
            continue
        if tag == "br":
            r.br()
            continue
        if tag == "hr":
            r.block(True)
            continue
        if tag == "img":
            alt = item.attrs.get("alt", "").strip()
            if alt and len(alt) < 200:
                r.text(alt)
            continue
        if tag == "pre":
            r.block(True)
            r.pre(_plain(item))
            r.block(True)
            continue
        if tag == "blockquote":
            r.block(True)
            r.prefix += "> "
        elif tag in ("ul", "ol"):
            r.block(not r.list_stack)
            r.list_stack.append([tag, 0])
        elif tag == "li":
            r.block(False)
            if r.list_stack:
                kind = r.list_stack[-1]
                kind[1] = int(kind[1]) + 1
                depth = "  " * (len(r.list_stack) - 1)
                r.text(f"{depth}{kind[1]}. " if kind[0] == "ol" else f"{depth}- ")
            else:
                r.text("- ")
        elif tag in BLOCK or tag in ("td", "th"):
            r.block(tag in PARAGRAPH)
        elif tag in ("td", "th"):
            r.text(" ")
        stack.append((item, True))
        stack.extend((child, False) for child in reversed(item.children))
    return True


def _hidden_style(node: Node) -> bool:
    style = node.attrs.get("style", "")[:300].replace(" ", "").lower()
    return "display:none" in style and not node.attrs.get("id", "").startswith(HTML_MARKER_ID_PREFIX)


def _contains(node: Node, target: Node) -> bool:
    p: Node | None = target
    while p is not None:
        if p is node:
            return True
        p = p.parent
    return False


def _plain(node: Node) -> str:
    parts: list[str] = []
    stack: list[Node | str] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif item.tag == "br":
            parts.append("\n")
        else:
            stack.extend(reversed(item.children))
    return "".join(parts).strip("\n")


def _link_label(node: Node) -> str:
    return _SPACE.sub(" ", _plain(node)).strip()


def render(root: Node, stop: Node | None = None) -> str:
    """The text of the document, or of the part before `stop` when given."""
    r = _Renderer()
    _render(root, r, stop)
    return r.result()


def first_quote(root: Node) -> Node | None:
    """The first element, in document order, that starts the quoted part; our own marker wins."""
    first: Node | None = None
    stack: list[Node | str] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            continue
        kind = quote_kind(item) if item is not root else None
        if kind == "workrate-marker":
            return item
        if kind and first is None:
            first = item
            # keep walking only to find our marker, which wins
        if kind is None or kind == "workrate-marker":
            stack.extend(reversed(item.children))
        else:
            stack.extend(reversed(item.children))
    return first


def html_to_text(html: str) -> str:
    """The whole HTML body as plain text (blockquotes as "> " lines)."""
    return render(parse_html(html))
