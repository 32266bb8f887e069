"""InboundMail: one received mail on its way through the pipeline (a typed version of Mailman's msgdata).

The SMTP handler fills the envelope fields; each step then fills the fields listed under its name, in the
order the steps run (see gateway/inbound/pipeline.py STEPS). A step reads only fields filled before it.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config import Settings
from gateway.inbound.files import FileSink, WriteNow
from gateway.inbound.parsed import ParsedMail
from storage.files import FileStore

if TYPE_CHECKING:
    from storage.posting import NewAttachment

# RCPT kinds
REPLY = "reply"  # reply+TOKEN@REPLY_DOMAIN
BOUNCE = "bounce"  # bounce+TOKEN@REPLY_DOMAIN (the envelope sender of our notifications)
PLAIN = "plain"  # reply@REPLY_DOMAIN: the plus part was lost; threads are found from In-Reply-To


@dataclass(frozen=True)
class Recipient:
    """An RCPT TO address the gateway accepted, and what it stands for."""

    address: str
    kind: str
    token: str = ""  # the reply or bounce token, lower-case
    user_id: int | None = None  # reply: the token's owner
    thread_id: int | None = None  # reply: the token's thread
    internal: bool = False  # reply: an internal-audience token
    outbox_email_id: int | None = None  # bounce: the notification that bounced
    user: Any = field(default=None, compare=False, repr=False)  # reply: the owner (storage.models.User)
    thread: Any = field(default=None, compare=False, repr=False)  # reply: storage.models.Thread


@dataclass(frozen=True)
class Target:
    """A thread the reply is posted to, by whom, for which audience (one per thread)."""

    thread: Any  # storage.models.Thread
    author: Any  # storage.models.User
    internal: bool
    dedup_key: str  # InboundEmail.reply_token: with message_id_hash, posted at most once


@dataclass
class InboundMail:
    # --- the envelope: set by the SMTP handler (gateway/smtp/handler.py)
    raw: bytes | bytearray  # exactly as received (the SMTP reader hands over its buffer without a copy)
    settings: Settings
    mail_from: str = ""
    recipients: list[Recipient] = field(default_factory=list)
    peer: str = ""
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    deadline: float = field(default_factory=lambda: time.monotonic() + 3600)  # time.monotonic() limit
    # Where the steps put raw mail and attachments (gateway/inbound/files.py); by default, written at once.
    files: FileSink = field(init=False, repr=False)

    # --- parse_mail
    raw_key: str | None = None  # the raw bytes' key (SHA-256): storage.mail_log.read_raw_mail reads them
    raw_in_database: bool = False  # kept in the raw_mail table, with the mail's row (store.py), not as a file
    size: int = 0
    parsed: ParsedMail | None = None
    subject: str = ""
    message_id: str = ""  # without angle brackets; "" when the mail has none
    message_id_hash: str = ""  # the Message-ID's hash, or the content's when there is none
    from_name: str = ""
    from_address: str = ""  # lower-case; "" when the From header has no usable address

    # --- drop_automatic_mail
    outbox_email_id: int | None = None  # a bounce: the notification it is about
    out_of_office: bool = False  # an auto-reply that may say its writer is away (decided by note_client_away)

    # --- note_client_away (gateway/inbound/away.py)
    away_user_ids: list[int] = field(default_factory=list)  # client contacts to note as away with the outcome
    away_back_on: dt.date | None = None  # their return date, when the auto-reply gives one
    away_said_until: bool = False  # it gave it as "until" the day before away_back_on

    # --- authenticate_sender
    targets: list[Target] = field(default_factory=list)
    auth: str = ""  # SPF/DKIM/DMARC results and the decision (SENDER_CHECKS = dns), for the inbound log
    hold: str = ""  # "confirm": posted only once its sender confirms by email (gateway/inbound/hold.py)

    # --- extract_reply_text
    text: str = ""  # the new text of the reply (Markdown-safe plain text)
    trimmed: str = ""  # what was cut: quotes, signatures
    # blocks ending the reply, as (key, text): remembered for the sender once the mail is posted (store.py)
    signature_blocks: list[tuple[str, str]] = field(default_factory=list)

    # --- collect_attachments
    attachments: list[NewAttachment] = field(default_factory=list)

    @property
    def reply_tokens(self) -> list[str]:
        return [r.token for r in self.recipients if r.kind == REPLY]

    @property
    def rcpt_to(self) -> str:
        return ", ".join(r.address for r in self.recipients)

    def __post_init__(self) -> None:
        self.files = WriteNow(FileStore(self.settings.effective_files_dir))

    def time_left(self) -> float:
        return self.deadline - time.monotonic()
