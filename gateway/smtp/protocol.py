"""GatewaySMTP: aiosmtpd's SMTP protocol with what it leaves to the application.

A connection limit, overall and per peer (421 beyond it, and while shutting down); a bound on the time and
commands a connection may use without delivering a mail (NOOP cannot hold it open for ever); lines up to
MAX_LINE_LENGTH, our own wording for aiosmtpd's fixed refusals, cached address parsing, and a DATA reader of
our own: it reads whole runs of lines at a time into one buffer, enforces the size and line limits (reading
and dropping the rest of a refused mail), and lets other connections run while a large mail streams in. The
hooks themselves are in handler.py. Internals of aiosmtpd overridden here are checked by
tests/test_internals.py.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, Protocol, cast

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from gateway.errors import LineTooLong, NoProgress, Outcome, ShuttingDown, TooLarge, TooManyConnections, TooManyFromYou
from gateway.smtp.threads import Gate, peer_key

log = logging.getLogger(__name__)

IDENT = "WorkRate Messages ESMTP"
YIELD_EVERY = 256 * 1024  # bytes of DATA read before letting the event loop serve other connections
# aiosmtpd's own refusal of MAIL FROM with SIZE= above the limit, reworded as a sentence.
_AIOSMTPD_SIZE_EXCEEDED = "552 Error: message size exceeds fixed maximum message size"


class Handler(Protocol):
    """What GatewaySMTP needs of its handler besides aiosmtpd's hooks (handler.py GatewayHandler)."""

    async def record_unread(self, session: Session | None, envelope: Envelope | None, outcome: Outcome) -> None:
        """Records a DATA transaction refused while it was read (too large, line too long)."""


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with the gateway's limits and wording."""

    def __init__(self, handler: Handler, *, gate: Gate, line_length_limit: int, idle_seconds: float = 600.0,
                 commands_per_mail: int = 100, **kwargs: Any) -> None:
        # aiosmtpd sizes its stream reader from this attribute in __init__; RFC 5321's 1,000 octets is too
        # little for the one-line HTML that real mail carries.
        self.line_length_limit = line_length_limit
        self._gate = gate
        self._gateway_handler = handler
        super().__init__(handler, **kwargs)
        # aiosmtpd's silence timeout restarts with every command, so a NOOP now and then would hold the
        # connection for ever: these bounds restart only when a mail is delivered.
        self._idle_seconds = idle_seconds
        self._commands_per_mail = commands_per_mail
        self._progress_at = 0.0
        self._commands_left = commands_per_mail
        self._smtp_methods = {verb: self._bounded(method) for verb, method in self._smtp_methods.items()}

    def _progressed(self) -> None:
        """A mail was delivered (or the connection opened): the no-progress bounds start again."""
        self._progress_at = self.loop.time()
        self._commands_left = self._commands_per_mail

    def _bounded(self, method: Any) -> Any:
        async def command(arg: str | None) -> None:
            self._commands_left -= 1
            if self._commands_left < 0 or self.loop.time() - self._progress_at > self._idle_seconds:
                log.info("closed a connection from %s that delivered no mail for too long",
                         self.session.peer if self.session else "?")
                try:
                    await SMTP.push(self, NoProgress().smtp_reply)
                finally:
                    if self.transport is not None:
                        self.transport.close()
                return
            await method(arg)
        return command

    async def _handle_client(self) -> None:
        gate = self._gate
        key = peer_key(self.session.peer if self.session else "")
        refusal: Outcome | None = None
        if gate.closing:
            refusal = ShuttingDown()
        elif len(gate.connections) >= gate.limit:
            refusal = TooManyConnections()
        elif gate.by_peer[key] >= gate.per_peer:
            refusal = TooManyFromYou()
        if refusal is not None:
            log.warning("refused a connection from %s: %s", self.session.peer if self.session else "?",
                        refusal.reason)
            try:
                await SMTP.push(self, refusal.smtp_reply)
            finally:
                if self.transport is not None:
                    self.transport.close()
            return
        gate.connections.add(self)
        gate.by_peer[key] += 1
        self._progressed()
        try:
            await super()._handle_client()
        finally:
            gate.connections.discard(self)
            gate.by_peer[key] -= 1
            if gate.by_peer[key] <= 0:
                del gate.by_peer[key]

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the mail in large pieces into one buffer (one await per piece instead of
        one per line): RFC 5321 dot-unstuffing, the size and line limits (the rest of the mail is read and
        dropped, then refused), a pause between large pieces."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._gate.receiving += 1  # the group commit waits a moment for this mail (committer.py)
        try:
            content, refusal = await self._read_data()
        except asyncio.CancelledError:
            self._writer.close()
            raise
        finally:
            self._gate.receiving -= 1
        if refusal is not None:
            await self._gateway_handler.record_unread(self.session, self.envelope, refusal)
            self._set_post_data_state()
            self._progressed()
            await SMTP.push(self, refusal.smtp_reply)
            return
        # The reader's buffer itself, without a copy: a bytearray, which the pipeline reads like bytes.
        self.envelope.content = self.envelope.original_content = cast(bytes, content)
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        self._progressed()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytearray, Outcome | None]:
        """The mail up to the line ".", dot-unstuffed, or the refusal it earned.

        Reads up to each ".\\r\\n" (whole runs of lines, since few lines end with a dot; at most the reader's
        limit at a time) and checks whether that dot starts a line. Lines never become objects: lengths
        are measured between the newlines bytes.find finds.
        """
        reader = self._reader
        limit = self.data_size_limit
        line_limit = self.line_length_limit
        content = bytearray()
        refusal: Outcome | None = None
        size = 0
        tail = b"\r\n"  # the last two bytes read: the DATA command's line end at first
        line_length = 0  # bytes of the line under way, up to the end of what was read
        while True:
            try:
                piece = await reader.readuntil(b".\r\n")
                dot = len(piece) - 3
                final = (piece[dot - 2:dot] if dot >= 2 else (tail + piece[:dot])[-2:]) == b"\r\n"
                if final:
                    piece = piece[:dot]  # the end of the mail: a line holding only "."
            except asyncio.LimitOverrunError as e:
                piece = await reader.readexactly(e.consumed)
                final = False
            size += len(piece)
            first = piece.find(b"\n")
            if first < 0:
                line_length += len(piece)
            else:
                if line_length + first > line_limit or _has_long_line(piece, first, line_limit):
                    refusal = refusal or LineTooLong()
                line_length = len(piece) - piece.rfind(b"\n") - 1
            if line_length > line_limit:
                refusal = refusal or LineTooLong()
            if refusal is None and limit and size > limit:
                refusal = TooLarge()
            if refusal is not None:
                content = bytearray()  # the rest is read and dropped
            else:
                # Dot-unstuffing (RFC 5321 4.5.2): a line's leading dot goes, also when the line starts
                # on the boundary between two pieces.
                body = piece.replace(b"\r\n.", b"\r\n") if b"\r\n." in piece else piece
                if tail == b"\r\n" and body[:1] == b".":
                    body = body[1:]
                elif tail[-1:] == b"\r" and body[:2] == b"\n.":
                    body = b"\n" + body[2:]
                content += body
            if final:
                return content, refusal
            tail = (tail + piece[-2:])[-2:]
            if len(piece) >= YIELD_EVERY:
                await asyncio.sleep(0)  # let other connections run while a large mail streams in

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing for MAIL FROM and RCPT TO, remembered per argument: the stdlib parser
        it uses (and the class aiosmtpd defines on every call) cost more than the rest of the command."""
        addr, rest, local_part = _parse_address(arg)
        if addr is not None and self.local_part_limit and local_part > self.local_part_limit:
            return None, None
        return addr, rest

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith(_AIOSMTPD_SIZE_EXCEEDED):
            status = TooLarge().smtp_reply  # MAIL FROM … SIZE= above the limit
        await super().push(status)


@functools.lru_cache(maxsize=4096)
def _parse_address(arg: str) -> tuple[str | None, str | None, int]:
    """(address, rest of the argument, length of the local part) as aiosmtpd's SMTP._getaddr finds them."""
    if not arg:
        return "", "", 0
    try:
        if arg.lstrip().startswith("<"):
            angle, rest = get_angle_addr(arg)
            addr = angle.addr_spec
        else:
            spec, rest = get_addr_spec(arg)
            addr = spec.addr_spec
    except HeaderParseError:
        return None, None, 0
    return addr, rest, len(addr.rpartition("@")[0])


def _has_long_line(piece: bytes, first: int, line_limit: int) -> bool:
    """Whether a line that starts and ends inside piece (between its first and last newline) is longer than
    line_limit bytes; split only when the span could hold one."""
    last = piece.rfind(b"\n")
    if last - first - 1 <= line_limit:
        return False
    return max(map(len, piece[first + 1:last].split(b"\n"))) > line_limit
