"""What parse.py makes of a mail: ParsedMail and its MailParts, the same whichever parser read it."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class MailPart:
    """A leaf MIME part that is not body text: an attachment, an inline image, a report.

    Its bytes are decoded when asked for, in chunks for large base64 parts, so that a big attachment goes
    to the file store without ever being whole in memory.
    """

    content_type: str  # lower-case type/subtype, checked; application/octet-stream when unusable
    filename: str  # as the sender declared it (decoded, unsafe: never use as a path)
    disposition: str  # "attachment", "inline" or ""
    content_id: str  # without angle brackets, "" when none
    encoded_size: int  # characters of the part's body as sent (0: an empty part)
    loader: Callable[[], Iterable[bytes]] = field(repr=False, default=lambda: ())

    def chunks(self) -> Iterable[bytes]:
        return self.loader()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks())


@dataclass
class ParsedMail:
    """What the steps need from a mail, decoded and cleaned, whichever parser read it."""

    headers: dict[str, list[str]] = field(default_factory=dict)  # lower-case name -> decoded values, in order
    plain: str | None = None  # every inline text/plain part, joined
    html: str | None = None  # every inline text/html part, joined
    parts: list[MailPart] = field(default_factory=list)
    content_type: str = "text/plain"  # of the whole mail
    report_type: str = ""  # multipart/report's report-type parameter
    delivery_status: str = ""  # text of message/delivery-status parts (bounces)
    parser: str = "flanker"  # which parser read it: flanker, stdlib or headers
    defects: list[str] = field(default_factory=list)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""
