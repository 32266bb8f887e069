"""Forwarded mail is content: a message forwarded into the thread under a short note (or alone) is posted
with the note, as a collapsed "Forwarded message" block holding its from, date, subject and text.

read_forward() reads the forwarded part of a plain-text body (the marker, the header block, the text) and
Forward.markdown() writes it as a Markdown container (":::"), which storage/rendering.py renders as
<details><summary>; in a plain-text email it reads as what it is."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.inbound.quotes import FORWARD_SUBJECTS, header_block_end, header_kind, is_forward_marker, unquote

MAX_FORWARD_CHARS = 200_000  # of the forwarded text kept in the block
MAX_HEADER_VALUE = 300
MAX_HEADER_SEARCH = 10  # lines after the marker where its header block may start
SUMMARY = "Forwarded message"
_COLON_RUN = re.compile(r"^[ \t]*(:{3,})", re.MULTILINE)


@dataclass(frozen=True)
class Forward:
    sender: str
    date: str
    subject: str
    text: str  # the forwarded message's own text, its quotes and signature trimmed
    alone: bool = False  # nothing was written above it (the reply's text is then the forwarded text)

    @property
    def empty(self) -> bool:
        """A bare marker line with nothing forwarded under it: no block is made of it."""
        return not (self.sender or self.date or self.subject or self.text.strip())

    def markdown(self) -> str:
        """The block as Markdown: a ":::" container whose first line is the summary."""
        fence = ":" * max(3, 1 + max((len(run) for run in _COLON_RUN.findall(self.text)), default=0))
        summary = f"{SUMMARY}: {self.subject}" if self.subject else SUMMARY
        head = [f"**{label}:** {_inline(value)}" for label, value in
                (("From", self.sender), ("Date", self.date), ("Subject", self.subject)) if value]
        opening = f"{fence} {' '.join(summary.split())[:MAX_HEADER_VALUE]}"
        parts = [opening, "\n".join(head), self.text.strip("\n"), fence]
        return "\n\n".join(part for part in parts if part)


def _inline(value: str) -> str:
    """A header value on one line, with the characters Markdown would read as markup escaped."""
    value = " ".join(value.split())[:MAX_HEADER_VALUE]
    return re.sub(r"([\\`*_\[\]])", r"\\\1", value)


def is_forward_subject(value: str) -> bool:
    return value.strip(" *_").lower().startswith(FORWARD_SUBJECTS)


def read_forward(lines: list[str], start: int, end: int, trim: Callable[[str], str]) -> Forward:
    """The forwarded message in lines[start:end], which start with its marker or its header block. Lines
    quoted as a whole ("> Begin forwarded message:") are read unquoted; `trim` trims its text."""
    part = lines[start:end]
    if part and part[0].lstrip().startswith(">"):
        part = [unquote(line) if line.lstrip().startswith(">") else line for line in part]
    i = 1 if part and is_forward_marker(part[0]) else 0
    headers: dict[str, str] = {}
    for j in range(i, min(len(part), i + MAX_HEADER_SEARCH)):
        block = header_block_end(part, j) if part[j].strip() else 0
        if block:
            headers = _header_values(part[j:block])
            i = block
            break
        if part[j].strip() and header_kind(part[j]) is None:
            break  # text, not a header block
    body = "\n".join(part[i:])[:MAX_FORWARD_CHARS]
    return Forward(headers.get("from", ""), headers.get("date", ""), headers.get("subject", ""), trim(body).strip("\n"))


def _header_values(block: list[str]) -> dict[str, str]:
    """The values of a header block's From, Date and Subject (a wrapped value joined)."""
    values: dict[str, str] = {}
    current = None
    for line in block:
        if not line.strip():
            current = None
            continue
        kind = header_kind(line)
        if kind is not None:
            current = kind
            colon = min((k for k in (line.find(":"), line.find("：")) if k >= 0), default=-1)
            if kind not in values:
                values[kind] = line[colon + 1:].replace("**", "").strip(" \t*_\u00a0")  # bold from HTML
            else:
                current = None
        elif current in values:
            values[current] = f"{values[current]} {line.strip()}"
    return values
