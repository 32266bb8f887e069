"""Signatures learned per sender: a block of lines that ends two or more of one sender's accepted mails is
cut from their next ones, even without a "-- " delimiter.

trailing_blocks() lists the blocks at the end of a reply that could be a signature, each with a key (a hash
of its words); the gateway stores the keys of accepted mail (storage/learned_signatures.py) and
cut_learned() cuts the longest block whose key that sender has repeated."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from gateway.inbound.extract import Trimmed
from gateway.inbound.footers import is_closing

MAX_BLOCK_LINES = 8  # non-blank lines of a trailing block that is remembered
MAX_BLOCK_CHARS = 600
MIN_BLOCK_LINES = 2  # a single repeated line ("Kim") is a closing, not a signature
_MD_LINK = re.compile(r"\[([^\[\]\n]{0,200})\]\([^)\s]{0,500}\)")  # a label holds no "[": linear time
_SCHEME = re.compile(r"\b(?:https?://|mailto:)", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class TrailingBlock:
    """A block of lines at the end of a reply that could be its signature."""

    start: int  # where it starts in the reply's text (without its trailing whitespace)
    text: str  # the lines as written
    key: str  # SHA-256 of its normalised words: what recognises it in the sender's next mail


def _normalised(line: str) -> str:
    """A line's words only, lower case: whitespace, Markdown marks, punctuation, a link's scheme and a
    Markdown link's target do not count, so the block reads the same from the plain-text and the HTML part."""
    line = _SCHEME.sub(" ", _MD_LINK.sub(r"\1", line)) if "[" in line or ":" in line else line
    return " ".join(_WORD.findall(line.replace("_", " ").casefold()))


def trailing_blocks(text: str) -> list[TrailingBlock]:
    """The candidate signature blocks at the end of a reply's text, longest first: each runs to the end
    and starts after a blank line or after a closing line ("Thanks,"), holds MIN_BLOCK_LINES to
    MAX_BLOCK_LINES lines with words (at most MAX_BLOCK_CHARS characters), no quote, and leaves some text
    above it. Only the text's last lines are looked at, whatever its length."""
    text = text.rstrip()
    lines = text.rsplit("\n", MAX_BLOCK_LINES * 3)  # lines[0] holds the rest of the text above
    blocks: list[TrailingBlock] = []
    words: list[str] = []
    chars = 0
    for i in range(len(lines) - 1, 0, -1):
        line = lines[i]
        chars += len(line) + 1
        if chars > MAX_BLOCK_CHARS or line.lstrip().startswith((">", "```", ":::")):
            break
        normal = _normalised(line)
        if normal:
            words.append(normal)
        if len(words) > MAX_BLOCK_LINES:
            break
        if not normal or len(words) < MIN_BLOCK_LINES or is_closing(line):
            continue
        above = lines[i - 1]
        if above.strip() and not is_closing(above[-200:]):
            continue
        if not any(_WORD.search(earlier) for earlier in lines[:i]):
            continue
        key = hashlib.sha256("\n".join(reversed(words)).encode()).hexdigest()
        blocks.append(TrailingBlock(len(text) - chars + 1, text[len(text) - chars + 1:], key))
    blocks.reverse()
    return blocks


def cut_learned(text: str, learned: set[str] | frozenset[str]) -> tuple[str, str] | None:
    """(the text without it, the block) for the longest trailing block whose key is learned, else None."""
    if not learned:
        return None
    for block in trailing_blocks(text):
        if block.key in learned:
            return text[: block.start].rstrip(), block.text
    return None


def cut_from(result: Trimmed, learned: frozenset[str]) -> tuple[Trimmed, list[TrailingBlock]]:
    """The reply with the sender's longest learned block cut (it goes first in what was trimmed), and the
    blocks to remember from this mail when it is accepted: none when a learned block was cut or the mail
    is a forward alone (its text is the forwarded message's, not the sender's)."""
    if result.forward is not None and result.forward.alone:
        return result, []
    cut = cut_learned(result.text, learned)
    if cut is None:
        return result, trailing_blocks(result.text)
    text, block = cut
    trimmed = f"{block}\n\n{result.trimmed}" if result.trimmed else block
    return replace(result, text=text, trimmed=trimmed), []
