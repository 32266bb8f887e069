"""Imports flanker without the noise: ply's yacc "Symbol ... is unreachable" warnings (logged while
flanker builds its address grammar) and the DeprecationWarnings of the old modules it imports.

It also gives flanker's scanner a lighter stream over the mail: flanker wraps the whole mail in an
io.StringIO, which copies it into up to four bytes per character; StrStream reads the string in place.
And the scanner's pass over the whole mail releases the GIL, so that a big mail does not stall the SMTP
event loop. Both replace private parts of flanker's scanner, checked by tests/test_internals.py.

Every gateway module imports flanker through here: `from gateway.inbound.flanker_quiet import mime`.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

# flanker hands ply this logger as the yacc error log; it only ever carries grammar-table chatter.
_PLY_LOGGERS = ("flanker.addresslib._parser.parser", "ply", "flanker.addresslib._parser.lexer")


def _import_quietly() -> Any:  # flanker ships no type hints
    saved = {name: logging.getLogger(name).level for name in _PLY_LOGGERS}
    for name in _PLY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from flanker import mime as flanker_mime
            from flanker.mime.message import errors as _errors  # noqa: F401
    finally:
        for name, level in saved.items():
            if name != _PLY_LOGGERS[0]:
                logging.getLogger(name).setLevel(level)
    # flanker logs "Failed to get attached message" and similar with tracebacks on hostile mail; the
    # gateway handles those cases itself, so keep flanker's own logging to real errors.
    logging.getLogger("flanker").setLevel(logging.ERROR)
    return flanker_mime


class StrStream:
    """The part of io.StringIO that flanker's scanner uses (seek, tell, read, line iteration), reading the
    string it was given without copying it."""

    __slots__ = ("_text", "_pos")

    def __init__(self, text: str = "") -> None:
        self._text = text
        self._pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        base = 0 if whence == 0 else self._pos if whence == 1 else len(self._text)
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> str:
        start = self._pos
        end = len(self._text) if size is None or size < 0 else min(len(self._text), start + size)
        self._pos = max(start, end)
        return self._text[start:end]

    def readline(self, size: int | None = -1) -> str:
        start = self._pos
        newline = self._text.find("\n", start)
        end = len(self._text) if newline < 0 else newline + 1
        if size is not None and size >= 0:
            end = min(end, start + size)
        self._pos = end
        return self._text[start:end]

    def __iter__(self) -> StrStream:
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


mime = _import_quietly()
from flanker.mime.message import scanner as _scanner  # noqa: E402  (after the quiet import above)

_scanner.StringIO = StrStream


# Below this many characters the scan is brief, and releasing and taking back the GIL at every match
# would cost more than it saves.
GIL_FREE_FROM = 64 * 1024


class _GilFreePattern:
    """flanker's tokenizer pattern, matched with the GIL released (the regex module's concurrent=True):
    its scan over the whole mail is one C call, which would otherwise keep every other thread, the SMTP
    event loop included, waiting until it ends."""

    __slots__ = ("_pattern",)

    def __init__(self, pattern: Any) -> None:  # a compiled pattern of the regex module, as flanker made it
        self._pattern = pattern

    def finditer(self, string: str, *args: Any, **kwargs: Any) -> Any:
        if len(string) > GIL_FREE_FROM:
            kwargs.setdefault("concurrent", True)
        return self._pattern.finditer(string, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pattern, name)


_scanner._RE_TOKENIZER = _GilFreePattern(_scanner._RE_TOKENIZER)

__all__ = ["mime"]
