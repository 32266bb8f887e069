"""DKIM signing of outgoing mail with dkimpy, when settings.dkim_key_file names a PEM private key."""
from __future__ import annotations

import threading
from pathlib import Path

import dkim as dkimpy

from config import Settings

# Headers a receiver shows or relies on; signed when present (From always is).
SIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "Reply-To", "In-Reply-To", "References", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted",
)

_cache: dict[tuple[str, float], bytes] = {}
_lock = threading.Lock()


class DkimConfigError(RuntimeError):
    """The configured DKIM key cannot be read or used; the message says which file and why."""


def _key(path: str) -> bytes:
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
        with _lock:
            if (path, mtime) not in _cache:
                _cache.clear()
                _cache[(path, mtime)] = p.read_bytes()
            return _cache[(path, mtime)]
    except OSError as e:
        raise DkimConfigError(f"cannot read the DKIM key {path}: {e.strerror or e}") from e


def signing_domain(settings: Settings) -> str:
    return (settings.dkim_domain or settings.effective_mail_from.rpartition("@")[2]).lower()


def sign(raw_mail: bytes, settings: Settings) -> bytes:
    """raw_mail with a DKIM-Signature header on top, or unchanged when no key is configured."""
    if not settings.dkim_key_file:
        return raw_mail
    header_block = raw_mail.split(b"\r\n\r\n", 1)[0].lower()
    include = [h.encode() for h in SIGNED_HEADERS
               if h == "From" or b"\r\n" + h.lower().encode() + b":" in b"\r\n" + header_block]
    try:
        signature = dkimpy.sign(raw_mail, settings.dkim_selector.encode(), signing_domain(settings).encode(),
                                _key(settings.dkim_key_file), include_headers=include,
                                canonicalize=(b"relaxed", b"relaxed"))
    except dkimpy.DKIMException as e:
        raise DkimConfigError(f"cannot sign with the DKIM key {settings.dkim_key_file}: {e}") from e
    return signature + raw_mail
