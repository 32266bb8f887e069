"""Shared pieces of the gateway tests: the named mails of tests/emails, a real gateway on loopback, a
workspace with people and their reply addresses, and a one-call SMTP client."""
from __future__ import annotations

import itertools
import re
import smtplib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Settings
from gateway.addresses import format_reply_address
from gateway.server import GatewayThread, make_controller
from storage.mail_log import InboundEmail
from storage.models import Message, Thread, User, Workspace
from storage.tokens import reply_token_for

EMAILS = Path(__file__).resolve().parent / "emails"
_ids = itertools.count(1)


def eml(name: str, *, to: str = "", sender: str = "bob@acme.test", message_id: str | None = None) -> bytes:
    """The named mail from tests/emails with its placeholders filled, with CRLF line ends as on the wire."""
    raw = (EMAILS / name).read_bytes()
    if message_id is None:
        message_id = f"{name.removesuffix('.eml')}.{next(_ids)}.{id(raw)}@client.test"
    raw = (raw.replace(b"%%TO%%", to.encode()).replace(b"%%FROM%%", sender.encode())
           .replace(b"%%MESSAGE_ID%%", message_id.encode()))
    return crlf(raw)


def crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)


@dataclass
class People:
    """Acme Co's workspace: Kim (team), Bob (client with access), Eve (client without), their addresses."""

    workspace: Workspace
    thread: Thread
    kim: User
    bob: User
    eve: User
    settings: Settings

    def address(self, user: User, internal: bool = False, thread: Thread | None = None) -> str:
        token = reply_token_for(user, thread or self.thread, internal=internal, secret_key=self.settings.secret_key)
        return format_reply_address(token.token, self.settings.reply_domain)

    @property
    def bob_address(self) -> str:
        return self.address(self.bob)


def start_gateway(settings: Settings) -> GatewayThread:
    return make_controller(settings).start()


def send(port: int, raw: bytes, rcpts: list[str] | str, sender: str = "bob@acme.test",
         host: str = "127.0.0.1") -> tuple[int, str]:
    """One SMTP transaction; returns the code and text of the first refusal, or of the final reply."""
    rcpts = [rcpts] if isinstance(rcpts, str) else rcpts
    client = smtplib.SMTP(host, port, timeout=60)
    try:
        client.ehlo("client.test")
        code, text = client.mail(sender)
        if code >= 400:
            return code, text.decode()
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code >= 400:
                return code, text.decode()
        code, text = client.data(raw)
        return code, text.decode()
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def reply_line(code: int, text: str) -> str:
    """The reply as the outcome classes spell it: '550 5.7.1 Sentence.' (smtplib joins lines with \\n)."""
    return f"{code} {' '.join(text.split())}"


def outcome_line(outcome: Any) -> str:
    return " ".join(outcome.smtp_reply.split())


def posts(thread: Thread) -> list[Message]:
    return list(Message.select().where(Message.thread == thread).order_by(Message.id))


def inbound_rows() -> list[InboundEmail]:
    return list(InboundEmail.select().order_by(InboundEmail.id))
