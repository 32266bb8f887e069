"""Imports flanker without the noise: ply's yacc "Symbol ... is unreachable" warnings (logged while
flanker builds its address grammar) and the DeprecationWarnings of the old modules it imports.

Every gateway module imports flanker through here: `from gateway.inbound.flanker_quiet import mime`.
"""
from __future__ import annotations

import logging
import warnings

# flanker hands ply this logger as the yacc error log; it only ever carries grammar-table chatter.
_PLY_LOGGERS = ("flanker.addresslib._parser.parser", "ply", "flanker.addresslib._parser.lexer")


def _import_quietly() -> object:
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


mime = _import_quietly()

__all__ = ["mime"]
