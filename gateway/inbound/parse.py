"""parse_mail: keep the raw mail, then read it into a ParsedMail that later steps can trust.

flanker parses first (fast, keeps the mail as one string); when it gives up on broken MIME, the standard
library's parser tries, and when both fail the mail is read as headers only. Every charset is decoded
with replacement, so no byte sequence can make a later step fail. The raw bytes are kept whatever the
outcome, so even a mail that crashes a step can be looked at: small mails in the database with the mail's
row, large ones in the file store (through mail.files) before anything else.
"""
from __future__ import annotations

import binascii
import codecs
import email
import email.header
import email.policy
import email.utils
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gateway.inbound.flanker_quiet import StrStream
from gateway.inbound.flanker_quiet import mime as flanker_mime
from gateway.inbound.mail import InboundMail
from gateway.inbound.parsed import MailPart, ParsedMail

log = logging.getLogger(__name__)

FlankerPart = Any  # flanker's MIME part objects (flanker ships no type hints)

MAX_DEPTH = 60  # MIME nesting followed; deeper parts are ignored (a real reply nests 3 or 4 deep)
MAX_PARTS = 2000  # leaf parts looked at; a reply never has more
MAX_HEADER_VALUE = 100_000  # characters kept of one header value
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_NUL = "\x00"
_HEADER_LINE = re.compile(rb"^[!-9;-~]{1,76}:")  # a header field name (RFC 5322 ftext) and a colon
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,900})>")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
# Labels that mean "Western European" to mail clients decode best as Windows-1252, as browsers do.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252",
                    "ascii": "cp1252", "ansi_x3.4-1968": "cp1252", "x-unknown": "utf-8", "unknown-8bit": "cp1252",
                    "ks_c_5601-1987": "cp949", "gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs"}


def parse_mail(mail: InboundMail) -> None:
    """Step 1: keep the raw mail, parse it, and note who it claims to be from.

    A raw mail of up to RAW_IN_DATABASE_MAX bytes is kept in the database, written with the mail's
    InboundEmail row whatever its outcome (gateway/inbound/store.py); a larger one goes to the file store
    now, before anything else."""
    from storage.mail_log import RAW_IN_DATABASE_MAX

    if len(mail.raw) <= RAW_IN_DATABASE_MAX:
        mail.raw_key, mail.size = hashlib.sha256(mail.raw).hexdigest(), len(mail.raw)
        mail.raw_in_database = True
    else:
        stored = mail.files.put_bytes(mail.raw)
        mail.raw_key, mail.size = stored.key, stored.size
        if len(mail.raw) >= RELEASE_RAW_FROM and isinstance(mail.raw, bytearray):
            # A big mail, now kept by the file sink: parsed from its text alone, so that the raw bytes and
            # their decoded copy are not both held through parsing.
            text, exact = _decode_raw(mail.raw)
            mail.raw.clear()  # the SMTP reader's buffer, shared with the envelope; nothing reads it after this
            key, files = stored.key, mail.files
            parsed = _parse_text(text, exact, lambda: text.encode("utf-8", "surrogateescape"))
            describe(mail, parsed, raw=lambda: files.read(key))
            return
    describe(mail, parse_bytes(mail.raw))


# Raw mails from this size on are released from memory once stored and decoded (see parse_mail).
RELEASE_RAW_FROM = 4 * 1024 * 1024


def describe(mail: InboundMail, parsed: ParsedMail, raw: Callable[[], bytes] | None = None) -> None:
    """Fills the header-derived fields of mail from parsed (shared with preview_reply); raw gives the raw
    bytes when mail.raw no longer holds them."""
    mail.parsed = parsed
    mail.subject = " ".join(clean(parsed.header("subject")[:2000]).split())[:1000]  # one line, whatever it held
    mail.message_id = message_id_of(parsed.header("message-id"))
    mail.message_id_hash = message_id_hash(mail.message_id, raw() if raw and not mail.message_id else mail.raw)
    mail.from_name, mail.from_address = sender_of(parsed)


# --- reading -----------------------------------------------------------------------------------------

def parse_bytes(raw: bytes | bytearray) -> ParsedMail:
    """Parses raw mail; never raises."""
    text, exact = _decode_raw(raw)
    return _parse_text(text, exact, lambda: raw.lstrip(b"\r\n"))


def _parse_text(text: str, exact: bool, raw: Callable[[], bytes | bytearray]) -> ParsedMail:
    """Parses the decoded mail (see _decode_raw); raw() gives its bytes for the fallback parsers."""
    if text[:1] in ("\r", "\n"):
        text = text.lstrip("\r\n")  # blank lines before the headers would leave the mail without any
    try:
        return _from_flanker(flanker_mime.from_string(text), exact)
    except Exception as e:  # flanker raises DecodingError, RecursionError, ValueError … on broken MIME
        flanker_error = f"{type(e).__name__}: {e}"
    data = raw()
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    try:
        parsed = _from_stdlib(email.message_from_bytes(data, policy=email.policy.compat32))
        parsed.defects.insert(0, f"flanker: {flanker_error}")
        return parsed
    except Exception as e:
        log.info("neither parser could read a mail (%s; stdlib: %s: %s)", flanker_error, type(e).__name__, e)
        parsed = ParsedMail(parser="headers", headers=_headers_only(data))
        parsed.defects.append(f"flanker: {flanker_error}")
        return parsed


def _decode_raw(raw: bytes | bytearray) -> tuple[str, bool]:
    """The raw mail as text for flanker. Valid UTF-8 (and so ASCII) is exact; anything else keeps its
    bytes as surrogates, which decode_text() turns back into bytes to decode with the part's charset."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), False


def _from_flanker(root: FlankerPart, exact: bool) -> ParsedMail:
    parsed = ParsedMail(parser="flanker")
    headers: dict[str, list[str]] = {}
    for name, value in root.headers.items():
        headers.setdefault(name.lower(), []).append(_header_text(value, exact))
    parsed.headers = headers
    ctype = root.content_type
    parsed.content_type = f"{ctype.main}/{ctype.sub}".lower()
    parsed.report_type = str(ctype.params.get("report-type", "")).lower()
    plain: list[str] = []
    html: list[str] = []
    for part in _walk(root):
        ptype = part.content_type
        main, sub = str(ptype.main).lower(), str(ptype.sub).lower()
        try:
            disposition = str(part.content_disposition[0] or "").lower()
            filename = part.detected_file_name or ""
        except Exception:
            disposition, filename = "", ""
        if sub == "delivery-status":
            parsed.delivery_status += _flanker_text(part, exact) + "\n"
            continue
        if main == "text" and sub in ("plain", "html") and not filename and disposition != "attachment":
            (plain if sub == "plain" else html).append(_flanker_text(part, exact))
            continue
        size, loader = _flanker_loader(part, exact)
        parsed.parts.append(MailPart(
            content_type=checked_content_type(f"{main}/{sub}"), filename=clean(str(filename)),
            disposition=disposition, content_id=_content_id(part.headers.get("Content-Id", "")),
            encoded_size=size, loader=loader))
    _set_bodies(parsed, plain, html)
    return parsed


def _set_bodies(parsed: ParsedMail, plain: list[str], html: list[str]) -> None:
    parsed.plain = "\n\n".join(plain).replace("\r\n", "\n") if plain else None
    parsed.html = "\n".join(html).replace("\r\n", "\n") if html else None


def _walk(root: FlankerPart) -> Iterator[FlankerPart]:
    """Leaf parts in document order, iteratively (no recursion, whatever the nesting)."""
    stack = [(root, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        ctype = part.content_type
        if ctype.is_multipart():
            if depth < MAX_DEPTH:
                stack.extend((child, depth + 1) for child in reversed(part.parts))
            continue
        seen += 1
        if seen > MAX_PARTS:
            return
        yield part


def _flanker_text(part: FlankerPart, exact: bool) -> str:
    try:
        body = part.body
    except Exception:
        body = None
    if body is None:
        return decode_text(_flanker_raw_body(part), _charset(part))
    if isinstance(body, bytes):
        return decode_text(body, _charset(part))
    return clean(body if exact else decode_text(body, _charset(part)))


CHUNK_CHARS = 1 << 20  # base64 characters decoded at a time
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]+")


def _flanker_loader(part: FlankerPart, exact: bool) -> tuple[int, Callable[[], Iterable[bytes]]]:
    """(encoded size, loader) of a flanker part: base64 bodies are decoded in chunks straight from the
    mail string; anything else is decoded whole by flanker, once asked for."""
    try:
        container = part._container
        container._load_headers()
        start, end = container._body_start, container.end + 1
        text = container.stream._text if isinstance(container.stream, StrStream) else None
        encoding = str(part.content_encoding.value).lower()
    except Exception:
        return 1, lambda: (_flanker_bytes(part, exact),)
    if text is not None and encoding == "base64" and not part.content_type.is_message_container():
        return max(0, end - start), lambda: _base64_chunks(text, start, end, part, exact)
    return max(0, end - start), lambda: (_flanker_bytes(part, exact),)


def _base64_chunks(text: str, start: int, end: int, part: FlankerPart, exact: bool) -> Iterator[bytes]:
    carry = b""
    try:
        for pos in range(start, end, CHUNK_CHARS):
            piece = carry + _NOT_BASE64.sub(b"", text[pos:min(end, pos + CHUNK_CHARS)].encode("ascii", "ignore"))
            usable = len(piece) - len(piece) % 4
            carry = piece[usable:]
            if usable:
                yield binascii.a2b_base64(piece[:usable])
        if len(carry) > 1:
            yield binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))
    except binascii.Error:  # broken base64: let flanker's recovery decode it whole
        yield _flanker_bytes(part, exact)


def _flanker_bytes(part: FlankerPart, exact: bool) -> bytes:
    ctype = part.content_type
    try:
        if ctype.is_message_container():
            return part.enclosed.to_string().encode("utf-8", "surrogateescape")
        body = part.body
    except Exception:
        return _flanker_raw_body(part)
    if body is None:
        return b""
    if isinstance(body, str):
        try:
            return body.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return body.encode("utf-8", "replace")
    return bytes(body)


def _flanker_raw_body(part: FlankerPart) -> bytes:
    """The part's body with only its transfer encoding undone, when flanker cannot decode it."""
    import base64
    import quopri

    try:
        raw = part._container.read_body()
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        cte = str(part.content_encoding.value).lower()
    except Exception:
        return b""
    try:
        if cte == "base64":
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", data) + b"===")
        if cte == "quoted-printable":
            return quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return data
    return data


def _charset(part: FlankerPart) -> str:
    try:
        return str(part.content_type.params.get("charset", "") or "")
    except Exception:
        return ""


def _content_id(value: object) -> str:
    text = str(value or "").strip()
    return text[1:-1].strip() if text.startswith("<") and text.endswith(">") else text


def _header_text(value: Any, exact: bool) -> str:  # value: a str, or flanker's (value, params)
    if not isinstance(value, str):
        # Content-Type and friends come back as (value, params); keep the value and its parameters.
        try:
            main = str(value[0])
            params = value[1]
            value = main + "".join(f'; {k}="{v}"' for k, v in params.items())
        except Exception:
            value = str(value)
    text = value[:MAX_HEADER_VALUE]
    return clean(text) if exact else clean(decode_text(text, ""))


def _from_stdlib(msg: email.message.Message) -> ParsedMail:
    parsed = ParsedMail(parser="stdlib")
    headers: dict[str, list[str]] = {}
    for name, value in msg.items():
        headers.setdefault(str(name).lower(), []).append(_stdlib_header(value))
    parsed.headers = headers
    parsed.content_type = msg.get_content_type()
    parsed.report_type = str(msg.get_param("report-type", "") or "").lower()
    parsed.defects = [type(d).__name__ for d in msg.defects]
    plain: list[str] = []
    html: list[str] = []
    stack = [(msg, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        if part.is_multipart():
            children = part.get_payload()
            if depth < MAX_DEPTH and isinstance(children, list):
                stack.extend((child, depth + 1) for child in reversed(children)
                             if isinstance(child, email.message.Message))
            continue
        seen += 1
        if seen > MAX_PARTS:
            break
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        try:
            filename = part.get_filename() or ""
        except Exception:
            filename = ""
        data = _payload_bytes(part)
        if ctype == "message/delivery-status":
            parsed.delivery_status += _stdlib_payload_text(part) + "\n"
            continue
        if ctype.startswith("multipart/"):
            ctype = "text/plain"  # a multipart the parser could not split: its body is text to read
        if ctype in ("text/plain", "text/html") and not filename and disposition != "attachment":
            text = decode_text(data, part.get_content_charset() or "")
            (plain if ctype == "text/plain" else html).append(text)
            continue
        parsed.parts.append(MailPart(
            content_type=checked_content_type(ctype), filename=clean(_stdlib_header(filename)),
            disposition=disposition, content_id=_content_id(part.get("Content-Id", "")), encoded_size=len(data),
            loader=functools.partial(_one_chunk, data)))
    _set_bodies(parsed, plain, html)
    return parsed


def _stdlib_payload_text(part: email.message.Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib reads delivery-status as a list of header blocks
        return "\n\n".join(str(block) for block in payload)
    return decode_text(_payload_bytes(part), part.get_content_charset() or "")


def _payload_bytes(part: email.message.Message) -> bytes:
    """A leaf part's body, transfer-decoded (the stdlib gives bytes for a leaf part, or None)."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _one_chunk(data: bytes) -> Iterable[bytes]:
    return (data,)


def _stdlib_header(value: object) -> str:
    try:
        chunks = email.header.decode_header(value)  # type: ignore[arg-type]
        text = "".join(decode_text(chunk, charset or "") if isinstance(chunk, bytes) else chunk
                       for chunk, charset in chunks)
    except Exception:
        text = str(value)
    return clean(text[:MAX_HEADER_VALUE])


def _headers_only(raw: bytes | bytearray) -> dict[str, list[str]]:
    """The header block read line by line: the last resort for mail neither parser could read."""
    headers: dict[str, list[str]] = {}
    block = re.split(rb"\r?\n\r?\n", raw[:1_000_000], maxsplit=1)[0]
    name = None
    for line in re.split(rb"\r?\n", block):
        if line[:1] in (b" ", b"\t") and name is not None:
            headers[name][-1] += " " + decode_text(line.strip(), "")
        elif _HEADER_LINE.match(line):
            key, _, value = line.partition(b":")
            name = key.decode("ascii", "replace").lower()
            headers.setdefault(name, []).append(decode_text(value.strip(), ""))
    return {k: [_stdlib_header(v) for v in vs] for k, vs in headers.items()}


# --- decoding ------------------------------------------------------------------------------------------

def decode_text(data: bytes | str, charset: str) -> str:
    """Text from bytes in a declared charset that may be wrong, unknown or missing; never raises.

    A str holding surrogate escapes (raw bytes that were not UTF-8) is turned back into its bytes first.
    """
    if isinstance(data, str):
        if not _SURROGATES.search(data):
            return clean(data)
        data = data.encode("utf-8", "surrogateescape")
    codec = _codec(charset)
    for name in (codec, "utf-8"):
        if name:
            try:
                return clean(data.decode(name))
            except (UnicodeDecodeError, LookupError):
                continue
    return clean(data.decode(codec or "cp1252", "replace"))


def _codec(charset: str) -> str:
    name = (charset or "").strip().strip('"').lower()
    if not name:
        return ""
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except LookupError:
        return ""
    # UTF-7 hides markup from filters and no mail client sends it for real text.
    return "" if info.name in ("utf-7", "rot-13") else info.name


def clean(text: str) -> str:
    """Text safe to store in any database column: no NUL, no lone surrogates."""
    if _SURROGATES.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text = _SURROGATES.sub("\ufffd", text)
    return text.replace(_NUL, "") if _NUL in text else text


def checked_content_type(value: str) -> str:
    value = (value or "").strip().lower()
    return value if _CONTENT_TYPE.match(value) else "application/octet-stream"


# --- identity -----------------------------------------------------------------------------------------

def message_id_of(value: str) -> str:
    """The Message-ID without angle brackets ("" when absent or unusable)."""
    match = _MESSAGE_ID.search(value or "")
    if match:
        return match.group(1)
    value = (value or "").strip()
    return value if value and len(value) <= 900 and " " not in value else ""


def message_id_hash(message_id: str, raw: bytes | bytearray) -> str:
    """What makes two deliveries "the same mail": the Message-ID, or when there is none, the mail's
    content without the trace headers that relays add on a retry (line ends normalized)."""
    if message_id:
        return hashlib.sha256(b"mid:" + message_id.encode("utf-8", "surrogateescape")).hexdigest()
    digest = hashlib.sha256(b"raw:")
    view = memoryview(raw)
    end = raw.find(b"\r\n\r\n")
    body_start = end + 4 if end >= 0 else (raw.find(b"\n\n") + 2 if raw.find(b"\n\n") >= 0 else len(raw))
    skipping = False
    for line in bytes(view[:body_start]).splitlines():
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                digest.update(line + b"\n")
            continue
        skipping = bool(_TRACE_HEADER.match(line))
        if not skipping and line:
            digest.update(line + b"\n")
    digest.update(b"\n")
    carry = b""
    for pos in range(body_start, len(raw), 1 << 20):  # the body in chunks, never copied whole
        chunk = carry + bytes(view[pos:pos + (1 << 20)])
        carry = b"\r" if chunk.endswith(b"\r") else b""
        digest.update((chunk[:-1] if carry else chunk).replace(b"\r\n", b"\n"))
    digest.update(carry)
    return digest.hexdigest()


_TRACE_HEADER = re.compile(rb"^(received|return-path|delivered-to|x-original-to|authentication-results"
                           rb"|arc-[a-z-]+|dkim-signature|x-received)\s*:", re.IGNORECASE)


def sender_of(parsed: ParsedMail) -> tuple[str, str]:
    """(display name, lower-case address) of the first From mailbox, ("", "") when there is none."""
    value = parsed.header("from")
    if not value or len(value) > 10_000:
        return "", ""
    return _sender_of_value(value)


@functools.lru_cache(maxsize=1024)  # the same people reply again and again; the stdlib parser is slow
def _sender_of_value(value: str) -> tuple[str, str]:
    try:
        pairs = email.utils.getaddresses([value])
    except Exception:
        return "", ""
    for name, address in pairs:
        address = address.strip().lower()
        if "@" in address and len(address) <= 320 and not any(c.isspace() for c in address):
            return clean(" ".join(name.split()))[:200], address
    return "", ""


def references_of(parsed: ParsedMail) -> list[str]:
    """Message-IDs named in In-Reply-To and References (without brackets), nearest first."""
    ids = _MESSAGE_ID.findall(parsed.header("in-reply-to")[:10_000])
    ids += reversed(_MESSAGE_ID.findall(parsed.header("references")[:50_000]))
    return list(dict.fromkeys(ids))[:50]  # in order, once each, linear in a stranger's long header

