"""Hands one email to the relay named by settings.relay_url, over aiosmtplib, and says how it went.

    smtp://[user:password@]host[:25]       STARTTLS when the relay offers it
    smtp+starttls://[user:password@]host[:587]   STARTTLS required
    smtps://[user:password@]host[:465]     implicit TLS

The relay's answer decides: a 5xx to MAIL FROM, RCPT TO or DATA is a PermanentFailure carrying the
relay's words; a 4xx, a refused or lost connection, a timeout, a failed login or a missing STARTTLS is a
TemporaryFailure (the first two are about this email; the others are about our setup, which someone can
fix, so the email waits instead of being lost). With no relay configured, the email is written as an
.eml file into DATA_DIR/outbox-mail and the log says where.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from config import Settings
from config.settings import make_private_dir
from gateway.outbound.render import wire_bytes
from storage.link_mail import EML_FOLDER

log = logging.getLogger(__name__)

SMTP_TIMEOUT = 60.0  # seconds for each step of the SMTP conversation (well below the outbox lease)
DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class DeliveryFailure(Exception):
    """The relay did not take the email. `code` is the SMTP code when the relay answered one."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class PermanentFailure(DeliveryFailure):
    """5xx: the relay refused this email for good; retrying will not help."""


class TemporaryFailure(DeliveryFailure):
    """4xx, connection, timeout or setup problem: try again later."""


@dataclass(frozen=True)
class Relay:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> Relay:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not a relay URL: {url!r}")
        return cls(scheme=scheme, host=parts.hostname, port=parts.port or DEFAULT_PORTS[scheme],
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None)


def to_bytes(mail: EmailMessage | bytes) -> bytes:
    """The mail as it goes on the wire: CRLF line ends."""
    if isinstance(mail, bytes):
        return mail
    return wire_bytes(mail)


def _describe(e: aiosmtplib.SMTPResponseException) -> str:
    return f"{e.code} {' '.join(str(e.message).split())}".strip()


async def send(mail: EmailMessage | bytes, envelope_from: str, recipients: list[str], settings: Settings,
               *, tls_context: ssl.SSLContext | None = None, eml_name: str | None = None) -> str:
    """Sends the mail; returns a short description of where it went (the relay's reply or the file).

    Raises PermanentFailure or TemporaryFailure. `tls_context` lets a caller trust a private CA;
    `eml_name` names the .eml file written when there is no relay (secret links, see storage/link_mail.py).
    """
    raw = to_bytes(mail)
    if not settings.relay_url:
        path = await asyncio.to_thread(write_eml, raw, settings, eml_name)
        log.info("no relay configured: wrote the email to %s for %s", path, ", ".join(recipients))
        return str(path)
    relay = Relay.parse(settings.relay_url)
    local_hostname = settings.effective_mail_from.rpartition("@")[2] or settings.reply_domain
    try:
        responses, reply = await aiosmtplib.send(
            raw, sender=envelope_from, recipients=recipients, hostname=relay.host, port=relay.port,
            username=relay.username, password=relay.password, local_hostname=local_hostname,
            timeout=SMTP_TIMEOUT, use_tls=relay.scheme == "smtps",
            start_tls=True if relay.scheme == "smtp+starttls" else (False if relay.scheme == "smtps" else None),
            tls_context=tls_context)
    except aiosmtplib.SMTPRecipientsRefused as e:
        worst = max(e.recipients, key=lambda r: r.code)
        cls = PermanentFailure if worst.code >= 500 else TemporaryFailure
        raise cls(_describe(worst), worst.code) from e
    except (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError) as e:
        # our setup (credentials, our name, the relay refusing us): fixable, so never lose the email
        raise TemporaryFailure(f"relay {relay.host}:{relay.port}: {_describe(e)}", e.code) from e
    except aiosmtplib.SMTPResponseException as e:  # MAIL FROM, DATA and others
        cls = PermanentFailure if e.code >= 500 else TemporaryFailure
        raise cls(_describe(e), e.code) from e
    except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as e:
        raise TemporaryFailure(f"relay {relay.host}:{relay.port}: {type(e).__name__}: {e}".strip()) from e
    failed = {addr: r for addr, r in responses.items() if r.code >= 400}
    if failed:  # only when some recipients were refused and others taken; we send one per email
        addr, r = next(iter(failed.items()))
        cls = PermanentFailure if r.code >= 500 else TemporaryFailure
        raise cls(f"{r.code} {r.message}", r.code)
    return reply


def write_eml(raw: bytes, settings: Settings, name: str | None = None) -> Path:
    """Writes raw as DATA_DIR/outbox-mail/<time>-<random>.eml, or under `name` (atomically, mode 0600) and
    returns the path."""
    folder = Path(settings.data_dir) / EML_FOLDER
    make_private_dir(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".eml")
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / (name or f"{stamp}-{Path(tmp).stem.removeprefix('.tmp-')}.eml")
    os.replace(tmp, path)
    return path.resolve()


__all__ = ["send", "PermanentFailure", "TemporaryFailure", "DeliveryFailure", "Relay", "write_eml", "to_bytes"]
