"""A real SMTP relay on loopback for the outbound tests: an aiosmtpd Controller whose handler keeps every
mail it is handed (envelope, raw bytes, parsed mail) and can refuse chosen recipients or be slow; and one
round of the outbox worker at an injected moment (send_due)."""
from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from procs import free_port

from config import Settings
from gateway.outbound.worker import OutboxWorker


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    mail: EmailMessage
    tls: bool = False
    auth_data: object = None

    def text(self) -> str:
        part = self.mail.get_body(("plain",))
        return part.get_content() if part else ""

    def html(self) -> str:
        part = self.mail.get_body(("html",))
        return part.get_content() if part else ""


class Keeper:
    """aiosmtpd handler: answers RCPT with `refuse[address]` when set, keeps every DATA."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}
        self.rcpt_attempts: list[str] = []
        self.data_delay = 0.0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        with self.lock:
            self.rcpt_attempts.append(address.lower())
            answer = self.refuse.get(address.lower())
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        raw = envelope.original_content or envelope.content
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, [r.lower() for r in envelope.rcpt_tos], raw, mail,
                                          tls=server.transport.get_extra_info("ssl_object") is not None,
                                          auth_data=session.auth_data))
        return "250 2.0.0 kept"


class CapturingRelay:
    """`with CapturingRelay() as relay:` a started relay; relay.url for WORKRATE_RELAY_URL.

    Extra keyword arguments go to aiosmtpd's Controller/SMTP (ssl_context, tls_context, authenticator, …).
    """

    def __init__(self, port: int | None = None, **smtp_options: object) -> None:
        self.port = port or free_port()
        self.keeper = Keeper()
        self.controller: Controller | None = None
        self.smtp_options = smtp_options

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> CapturingRelay:
        self.controller = Controller(self.keeper, hostname="127.0.0.1", port=self.port, **self.smtp_options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> CapturingRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def received(self) -> list[Received]:
        with self.keeper.lock:
            return list(self.keeper.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address.lower() in r.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.received) < count:
            time.sleep(0.05)
        return self.received


def new_part(text: str) -> str:
    """A notification's text without the earlier messages it repeats for context."""
    return text.split("Earlier in this conversation", 1)[0]


def send_due(settings: Settings, now: dt.datetime | None = None, **options: object) -> int:
    """One worker round at `now`, as `workrate worker` would do it; how many emails it sent."""
    worker = OutboxWorker(settings, **options)  # type: ignore[arg-type]
    try:
        return asyncio.run(worker.run_once(now))
    finally:
        worker.close()
