"""Markdown to safe HTML: the one function that turns a message's text into what pages and emails show.

markdown-it-py renders CommonMark (bare web addresses become links through linkify-it-py) without passing
raw HTML through; nh3 (the Rust ammonia sanitizer) then keeps a small allow-list of tags and attributes,
so `<script>`, `onerror=`, `javascript:` links and `<svg onload>` never survive.
"""
from __future__ import annotations

import functools
import re

import nh3
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from mdit_py_plugins.container import container_plugin

ALLOWED_TAGS = {
    "p", "br", "strong", "b", "em", "i", "u", "s", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "mark", "details", "summary",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}

# Where linkify-it's pretest can match at all: a schema (http:, https:, ftp:, mailto:, //), "@", localhost
# or a dot followed by a letter or digit (www., a TLD, an IP address). Its own pretest is one large
# case-insensitive regular expression that costs more than the rest of the rendering; this one is a
# superset that rules out most prose far sooner.
_MAYBE_LINK = re.compile(r"(?:https?|ftp|mailto):|//|@|localhost|\.[^\W_]", re.IGNORECASE)
_DOT_WORD = re.compile(r"\.[^\W_]")
_SCHEMES = ("http", "https", "ftp", "mailto")


def _maybe_link(text: str) -> bool:
    """Whether _MAYBE_LINK matches, faster: ASCII text is searched without a case-insensitive regex."""
    if not text.isascii():  # case-insensitive matching has Unicode cases (K is the Kelvin sign's)
        return bool(_MAYBE_LINK.search(text))
    if "@" in text or "//" in text or _DOT_WORD.search(text):
        return True
    lowered = text.lower()
    if "localhost" in lowered:
        return True
    colon = lowered.find(":")
    while colon >= 0:
        if lowered.endswith(_SCHEMES, 0, colon):
            return True
        colon = lowered.find(":", colon + 1)
    return False


class _QuickLinkify(LinkifyIt):
    def pretest(self, text: str) -> bool:
        return _maybe_link(text) and super().pretest(text)


_md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True}).enable("linkify")
_md.linkify = _QuickLinkify()

# A forwarded message posted from email (gateway/inbound/forwards.py) is a ":::" container whose first
# line is "Forwarded message…": it renders as a collapsed <details> block with that line as its summary.
FORWARD_SUMMARY = "forwarded message"


def _forward_container(params: str, *args: object) -> bool:
    return params.strip().lower().startswith(FORWARD_SUMMARY)


def _render_forward(self: object, tokens: list, idx: int, options: object, env: object) -> str:
    token = tokens[idx]
    if token.nesting == 1:
        return f"<details><summary>{escapeHtml(token.info.strip())}</summary>\n"
    return "</details>\n"


container_plugin(_md, "forward", validate=_forward_container, render=_render_forward)


def sanitize_html(html: str) -> str:
    """Keeps only harmless tags and attributes; links get rel=noopener noreferrer nofollow."""
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow")


def render_markdown(text: str) -> str:
    """Markdown source to sanitized HTML."""
    text = text or ""
    plain = _plain_html(text)
    return plain if plain is not None else _rendered(text)


@functools.lru_cache(maxsize=32)
def _rendered(text: str) -> str:
    # Remembered for a while: the SMTP gateway renders a long reply in a worker thread ahead of storing
    # it (render_ahead), so that the event loop, which stores it, finds it done.
    return sanitize_html(_md.render(text))


def slow_to_render(text: str, budget: int = 2000) -> bool:
    """Whether rendering text is long enough and not plain enough that Markdown parsing is costly."""
    return len(text) > budget and _plain_html(text) is None


# Most replies are plain prose: no character Markdown gives a meaning to, no line that could start a
# block, nothing a link could be made of. Their HTML is known without parsing: paragraphs split at blank
# lines, lines joined by <br> (breaks=True), spaces around lines dropped, exactly what markdown-it and nh3
# make of them (tests/test_performance_paths.py compares the two on generated text), at a fraction of the
# cost of parsing.
_NOT_PLAIN = re.compile(r"[^\w \n.,;:?!'\"()/%$+=-]|_")
_PLAIN_ASCII = re.compile(r"[A-Za-z0-9 \n.,;:?!'\"()/%$+=-]*")  # the same set for ASCII text, quicker
_PARAGRAPH_BREAK = re.compile(r"\n(?: *\n)+")
_PLAIN_START = frozenset("\"'(")


@functools.lru_cache(maxsize=16)  # the gateway asks slow_to_render(), then renders, the same text
def _plain_html(text: str) -> str | None:
    """The HTML of plain prose, or None when text needs the Markdown parser."""
    plain = _PLAIN_ASCII.fullmatch(text) is not None if text.isascii() else _NOT_PLAIN.search(text) is None
    if not plain or _maybe_link(text):
        return None
    paragraphs = []
    for block in _PARAGRAPH_BREAK.split(text):
        if not block.strip(" "):  # blank lines before the first paragraph or after the last
            continue
        if block.startswith("    "):  # four spaces: an indented code block
            return None
        lines = [line.strip(" ") for line in block.split("\n")]
        for line in lines:
            if not (line[:1].isalpha() or line[:1] in _PLAIN_START):  # "1.", "-", "=" … could start a block
                return None
        paragraphs.append("<p>" + "<br>\n".join(lines) + "</p>\n")
    return "".join(paragraphs)
