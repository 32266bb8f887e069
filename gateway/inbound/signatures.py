"""Recognising signatures in a plain-text reply: the "-- " delimiter, separator lines, mobile sign-offs
("Sent from my iPhone", "Get Outlook for iOS", in many languages) and a "-Name" sign-off line.
Each check looks at one line of bounded length. (Signatures learned per sender: learned_signatures.py.)"""
from __future__ import annotations

import re

from gateway.inbound.quotes import cached

# Characters a separator line is made of ("-----", "_____", "=====", "ᐧ" from mail-tracking images…).
DELIMITER_CHARS = frozenset("-_=+~#*ᐧ—–•·")
_DELIMITER_STRING = "".join(sorted(DELIMITER_CHARS))
SHORT_DELIMITERS = frozenset({"ᐧ", "—", "--", "–"})

# Sign-offs mail apps append (lower case, start of line).
MOBILE_PREFIXES = (
    "sent from my ", "sent from ", "sent via ", "sent with ", "sent by ", "sent using ", "sent on my ",
    "get outlook for ", "get outlook", "envoyé depuis ", "envoyé de mon ", "envoyé à partir de ",
    "von meinem ", "gesendet von meinem ", "gesendet mit ", "gesendet von ", "gesendet aus ", "envoyé avec ",
    "inviato con ", "enviado con ", "enviado com ", "skickat med ", "sendt med ", "lähetetty laitteesta ",
    "wysłane przy użyciu ", "отправлено через ", "trimis de pe ", "gửi từ ", "odesláno z ", "elküldve ",
    "diese nachricht wurde von ",
    "inviato da ", "inviato dal mio ", "sendt fra min ", "sendt fra ", "enviado do meu ", "enviado de meu ",
    "enviado desde mi ", "enviado desde ", "enviado de mi ", "verzonden met ", "verzonden vanaf ",
    "verstuurd vanaf mijn ", "verstuurd vanaf ", "verstuurd met ", "skickat från min ", "skickat från ",
    "från min ", "sendt fra min ", "wysłane z ", "wysłano z ", "отправлено с ", "отправлено из ",
    "надіслано з ", "從我的 ", "从我的", "发自我的", "發自我的", "lähetetty ",
)
# Prefixes that are also ordinary words ("From my point of view…"): only with a device named.
DEVICE_PREFIXES = ("from my ",)
DEVICES = frozenset(
    "iphone ipad ipod android mobile phone cell cellphone blackberry galaxy samsung htc pixel huawei nokia "
    "tablet smartphone kindle xperia oneplus xiaomi motorola".split()
)
MOBILE_SUFFIXES = ("から送信", "から送信しました")
# Words that make a sentence after the sign-off part of it ("…, please excuse any typos.").
EXCUSES = ("excuse", "typo", "brevity", "pardon", "autocorrect", "spelling", "sorry", "entschuldig",
           "excusez", "disculp", "scusa", "kürze", "kurz")

_MD_LINK = re.compile(r"\[([^\[\]\n]{0,200})\]\([^)\s]{0,500}\)")  # a label holds no "[": linear time
_ANGLE_LINK = re.compile(r"<[^<>\s]{0,500}>|https?://\S{0,500}")
_DASH_NAME = re.compile(r"-{1,4}[A-Za-z][\w.'’]*(?: [\w.'’]+){0,3}")
_WORD_FROM_MOBILE = re.compile(r"\w{1,30} from mobile\b")
_SPLIT = re.compile(r"[,.;!]\s|[,;!]$|\.$| - ")


_ALL_PREFIXES = MOBILE_PREFIXES + DEVICE_PREFIXES


def is_sig_delimiter(line: str) -> bool:
    """The usenet signature delimiter "-- " (also without its space)."""
    return line.rstrip("\r\n") in ("-- ", "--") or line.strip() == "--"


def is_delimiter(line: str) -> bool:
    """A line made only of separator characters ("_______", "-----", "***", "ᐧ")."""
    s = line.strip()
    if not s or len(s) > 200:
        return False
    if s.strip(_DELIMITER_STRING):
        return False
    return len(s) >= 3 or s in SHORT_DELIMITERS


@cached
def is_mobile_signoff(line: str) -> bool:
    """"Sent from my iPhone", "Get Outlook for iOS", "Envoyé depuis mon iPhone", "(Sent from mobile device)"…"""
    s = line.strip()
    if not s or len(s) > 200:
        return False
    if "[" in s:
        s = _MD_LINK.sub(r"\1", s)
    if "<" in s or "http" in s:
        s = _ANGLE_LINK.sub(" ", s)
    s = s.strip(" \t()<>[]*_").lower()
    if not s or not (s.startswith(_ALL_PREFIXES) or s.endswith(MOBILE_SUFFIXES) or " from mobile" in s):
        return False
    if s.endswith(MOBILE_SUFFIXES) and len(s) <= 40:
        return True
    if _WORD_FROM_MOBILE.match(s) and len(s.split()) <= 4:
        return True
    for prefix in DEVICE_PREFIXES:
        if s.startswith(prefix):
            rest = s[len(prefix):]
            return len(rest.split()) <= 4 and any(word in DEVICES for word in re.split(r"[\s,.]+", rest))
    for prefix in MOBILE_PREFIXES:
        if s.startswith(prefix):
            return _short_signoff(s[len(prefix):])
    return False


def _short_signoff(rest: str) -> bool:
    match = _SPLIT.search(rest)
    head, tail = (rest[: match.start()], rest[match.end():]) if match else (rest, "")
    if len(head.split()) > 7:
        return False
    tail = tail.strip()
    return not tail or any(word in tail for word in EXCUSES)


def is_dash_name(line: str) -> bool:
    """A "-Name" sign-off line ("-Abhishek Kona", "----Arpit"); a "- item" bullet has a space after the dash."""
    s = line.strip()
    return len(s) <= 40 and _DASH_NAME.fullmatch(s) is not None

