"""The private internals of aiosmtpd, flanker and peewee that our code overrides or calls are still the ones
it was written against (pyproject.toml pins these libraries below their next minor release).

Each check names the internal, the version its source was read in, and what of ours depends on it. When one
fails after an upgrade: read the library's new code, adapt ours (named in the message), then record the new
source's digest here.
"""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import aiosmtpd.smtp
import peewee
import pytest
from flanker.mime.message import part as flanker_part
from flanker.mime.message import scanner as flanker_scanner

from gateway.inbound.flanker_quiet import GIL_FREE_FROM, StrStream, _GilFreePattern

# (library, internal, how to get it, the digest of its source as written against, what depends on it)
SOURCES: list[tuple[str, str, Callable[[], Any], str, str]] = [
    ("aiosmtpd", "SMTP.__init__", lambda: aiosmtpd.smtp.SMTP.__init__, "8a9ca80f23ad9bf2",
     "GatewaySMTP sets line_length_limit before it, which sizes the stream reader, and wraps the commands of "
     "_smtp_methods, built here, with the no-progress bounds (gateway/smtp/protocol.py)"),
    ("aiosmtpd", "SMTP._handle_client", lambda: aiosmtpd.smtp.SMTP._handle_client, "0e4d096403af6c74",
     "GatewaySMTP._handle_client wraps it with the connection limit (gateway/smtp/protocol.py)"),
    ("aiosmtpd", "SMTP.smtp_DATA", lambda: aiosmtpd.smtp.SMTP.smtp_DATA, "3a33f30d3fd6d02f",
     "GatewaySMTP.smtp_DATA replaces it with our DATA reader, keeping its checks and replies "
     "(gateway/smtp/protocol.py)"),
    ("aiosmtpd", "SMTP._getaddr", lambda: aiosmtpd.smtp.SMTP._getaddr, "0aeb21c56ac1260e",
     "GatewaySMTP._getaddr replaces it with a cached parse that must give the same answers "
     "(gateway/smtp/protocol.py _parse_address)"),
    ("aiosmtpd", "SMTP.push", lambda: aiosmtpd.smtp.SMTP.push, "15f4f1de5e30c337",
     "GatewaySMTP.push rewords one of its fixed refusals (gateway/smtp/protocol.py)"),
    ("aiosmtpd", "SMTP._set_post_data_state", lambda: aiosmtpd.smtp.SMTP._set_post_data_state, "1dc8a8abca2a8164",
     "GatewaySMTP.smtp_DATA calls it after each mail (gateway/smtp/protocol.py)"),
    ("aiosmtpd", "SMTP._call_handler_hook", lambda: aiosmtpd.smtp.SMTP._call_handler_hook, "6ff23a6634ea0307",
     "GatewaySMTP.smtp_DATA calls it to run handle_DATA (gateway/smtp/protocol.py)"),
    ("aiosmtpd", "SMTP.smtp_MAIL", lambda: aiosmtpd.smtp.SMTP.smtp_MAIL, "80dd938e7791acfb",
     "GatewaySMTP.push recognises its SIZE refusal by its text (gateway/smtp/protocol.py "
     "_AIOSMTPD_SIZE_EXCEEDED)"),
    ("aiosmtpd", "SMTP.smtp_EHLO", lambda: aiosmtpd.smtp.SMTP.smtp_EHLO, "1d91592dd954c4cd",
     "GatewayHandler.handle_EHLO edits the lines it builds (gateway/smtp/handler.py)"),
    ("flanker", "scanner.TokensIterator", lambda: flanker_scanner.TokensIterator, "81bc8890562da2f0",
     "it wraps the mail in scanner.StringIO, which gateway/inbound/flanker_quiet.py replaces with StrStream"),
    ("flanker", "scanner.tokenize", lambda: flanker_scanner.tokenize, "683c3ba9d6bdc66d",
     "it scans with scanner._RE_TOKENIZER.finditer, which gateway/inbound/flanker_quiet.py wraps"),
    ("flanker", "part.Stream", lambda: flanker_part.Stream, "70234a19332a21f2",
     "gateway/inbound/parse.py reads a part's _container: _load_headers(), _body_start, end, stream, "
     "read_body()"),
    ("flanker", "part.MimePart.__init__", lambda: flanker_part.MimePart.__init__, "154581a0fe7e7107",
     "gateway/inbound/parse.py reads MimePart._container, set here"),
    ("peewee", "_ConnectionState", lambda: peewee._ConnectionState, "166004c4c8cee413",
     "storage/db.py using_connection saves and restores its fields (closed, conn, ctx, transactions, "
     "commit_callbacks)"),
    ("peewee", "Database.__init__", lambda: peewee.Database.__init__, "2be2784d7b285c56",
     "storage/db.py using_connection reads Database._state, set here"),
    ("peewee", "SqliteDatabase._connect", lambda: peewee.SqliteDatabase._connect, "2e30e43d031f01f0",
     "the group commit opens its writer connection with it (gateway/smtp/committer.py _connect)"),
]


def digest(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


@pytest.mark.parametrize("library, name, get, expected, used_by", SOURCES, ids=[f"{s[0]}:{s[1]}" for s in SOURCES])
def test_a_private_internal_we_rely_on_is_unchanged(library: str, name: str, get: Callable[[], Any],
                                                    expected: str, used_by: str) -> None:
    try:
        found = digest(get())
    except (AttributeError, OSError, TypeError) as e:
        pytest.fail(f"{library} {version(library)} no longer has {name} ({type(e).__name__}: {e}); {used_by}.")
    assert found == expected, (
        f"{library} {version(library)} changed {name} (source digest {found}, written against {expected}): "
        f"{used_by}. Read the new code, adapt ours, then record the new digest in tests/test_internals.py.")


def test_flanker_quiet_patches_are_in_place() -> None:
    # Importing the gateway's parser patched flanker's scanner: its stream class and its tokenizer.
    assert flanker_scanner.StringIO is StrStream, "flanker's scanner.StringIO is not our StrStream any more"
    tokenizer = flanker_scanner._RE_TOKENIZER
    assert isinstance(tokenizer, _GilFreePattern), "flanker's scanner._RE_TOKENIZER is not wrapped any more"
    # The wrapped pattern is the regex module's, which takes concurrent= (the GIL released while it scans).
    text = "Content-Type: text/plain\r\n\r\nHello\r\n" * 5000
    assert len(text) > GIL_FREE_FROM
    plain = [m.span() for m in tokenizer._pattern.finditer(text)]
    assert [m.span() for m in tokenizer.finditer(text)] == plain and plain


def test_peewee_database_keeps_its_connection_state_where_we_look() -> None:
    db = peewee.SqliteDatabase(":memory:")
    state = db._state
    for field in ("closed", "conn", "ctx", "transactions", "commit_callbacks"):
        assert hasattr(state, field), f"peewee's connection state has no {field!r} (storage/db.py using_connection)"
