"""Secrets kept out of logs and of the inbound log's columns: reply tokens are cut to a short hint.

A reply address reply+TOKEN@domain lets whoever holds it post as its owner, so the full token is never
written anywhere but into the mail that carries it. The first few characters stay, so that a person
reading the log can still tell two addresses apart.
"""
from __future__ import annotations

import logging
import re

HINT_LENGTH = 4
_TOKEN_IN_ADDRESS = re.compile(r"(?i)\b((?:reply|bounce)\+)([0-9a-f]{4})[0-9a-f]{12,60}(?=@|\b)")
_LOGIN_PATH = re.compile(r"(/login/)([A-Za-z0-9_-]{4})[A-Za-z0-9_-]{16,}")


def redact(text: str) -> str:
    """text with every reply/bounce token and sign-in link secret cut to its first characters + '…'."""
    if not text or ("+" not in text and "/login/" not in text):
        return text
    text = _TOKEN_IN_ADDRESS.sub(lambda m: f"{m.group(1)}{m.group(2)}\u2026", text)
    return _LOGIN_PATH.sub(lambda m: f"{m.group(1)}{m.group(2)}\u2026", text)


_installed = False


def install_log_redaction() -> None:
    """Makes every log record of this process go through redact() (idempotent).

    A record factory rather than a handler filter: it holds for every handler, including ones that
    libraries or tests add later.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


__all__ = ["redact", "install_log_redaction"]
