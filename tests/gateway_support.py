"""Shared pieces of the gateway tests: the named mails of tests/emails, a real gateway on loopback
(GatewayThread), the pipeline run as the SMTP handler runs it (run_pipeline), a workspace with people and
their reply addresses, and a one-call SMTP client."""
from __future__ import annotations

import asyncio
import itertools
import re
import smtplib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Settings
from gateway.addresses import format_reply_address
from gateway.errors import Outcome
from gateway.inbound import pipeline
from gateway.inbound.mail import InboundMail
from gateway.smtp.committer import GroupCommitter
from gateway.smtp.listener import Gateway
from gateway.smtp.threads import WorkerThreads, close_connection, steps_on_loop
from storage.db import is_sqlite
from storage.files import FileStore
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


class GatewayThread:
    """The gateway on its own event loop in a background thread, like aiosmtpd's Controller: start() returns
    once it listens (see .host and .port); stop() closes it as serve() does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def host(self) -> str:
        assert self.gateway is not None
        return self.gateway.host

    @property
    def port(self) -> int:
        assert self.gateway is not None
        return self.gateway.port

    def start(self) -> GatewayThread:
        self._thread = threading.Thread(target=self._run, name="smtp-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.gateway = Gateway(self.settings)
            try:
                await self.gateway.start()
            except BaseException as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.gateway.close()

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)

    def __enter__(self) -> GatewayThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connect(self, **options: Any) -> smtplib.SMTP:
        """A client connected to this gateway that has said EHLO (smtplib's options: source_address, …)."""
        client = smtplib.SMTP(self.host, self.port, timeout=10, **options)
        client.ehlo("client.test")
        return client


def start_gateway(settings: Settings) -> GatewayThread:
    """A real gateway listening on a free loopback port: `with start_gateway(settings) as controller:` (or
    `controller.stop()` when done)."""
    return GatewayThread(settings).start()


def run_pipeline(mail: InboundMail) -> Outcome:
    """Runs mail through the pipeline as the SMTP handler does after DATA (the same driver, the group
    commit, worker threads, on the event loop when the handler would), without SMTP."""
    async def main() -> Outcome:
        loop = asyncio.get_running_loop()
        workers = WorkerThreads(2)

        def in_thread(fn: Any, *args: Any) -> Any:
            return loop.run_in_executor(workers, fn, *args)

        committer = GroupCommitter(FileStore(mail.settings.effective_files_dir), in_thread, on_loop=is_sqlite())
        committer.start()
        try:
            return await pipeline.run(mail, committer, in_thread, on_loop=steps_on_loop(mail))
        finally:
            await committer.close()
            await loop.run_in_executor(None, workers.shutdown)

    try:
        return asyncio.run(main())
    finally:
        close_connection()  # this thread's, used on the event loop; the next query opens it again


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


def smtp_send(gateway: GatewayThread, mail_from: str, rcpt: str, raw: bytes) -> int:
    """One mail to the gateway as another mail server sends it (its line ends made CRLF); the RCPT refusal's
    code, or DATA's."""
    with smtplib.SMTP(gateway.host, gateway.port, timeout=30) as client:
        client.ehlo("mx.sender.test")
        client.mail(mail_from)
        code, _ = client.rcpt(rcpt)
        if code != 250:
            return code
        code, _ = client.data(crlf(raw))
        return code


def reply_line(code: int, text: str) -> str:
    """The reply as the outcome classes spell it: '550 5.7.1 Sentence.' (smtplib joins lines with \\n)."""
    return f"{code} {' '.join(text.split())}"


def outcome_line(outcome: Any) -> str:
    return " ".join(outcome.smtp_reply.split())


def posts(thread: Thread) -> list[Message]:
    return list(Message.select().where(Message.thread == thread).order_by(Message.id))


def inbound_rows() -> list[InboundEmail]:
    return list(InboundEmail.select().order_by(InboundEmail.id))
