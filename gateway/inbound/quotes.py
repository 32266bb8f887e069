"""Recognising the lines that introduce quoted history in a plain-text reply: "On … wrote:" attributions
in many languages (also wrapped over several lines), Outlook's From/Sent/To/Subject header blocks and
"-----Original Message-----" / forwarded-message markers, and ">" quoted lines.

Every check looks at one line (or a few joined lines) of bounded length, with plain string operations and
anchored regular expressions that cannot backtrack badly, so hostile input stays linear."""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import TypeVar

T = TypeVar("T")

MAX_ATTRIBUTION = 400  # longer logical lines are never attributions
MAX_JOIN_LINES = 5  # an attribution wrapped by a mail client spans at most this many non-blank lines
MAX_CONTINUATION = 120  # each wrapped continuation line is short
CACHE = 2048  # recent answers kept per check: bodies repeat lines ("", ">", "--"), hostile ones a lot
CACHED_LENGTH = 400  # only lines up to this length are cached, so the caches stay small

# First word of "On <date>, <someone> wrote:" in the languages we know (lower case).
ON_WORDS = frozenset("on at am le el em il op den dnia dňa dne 在 às în vào pada στις на dana dňa في".split()) \
    | {"in message", "il giorno", "w dniu"}

# "wrote" at the end of an attribution (lower case); CJK ones need no word boundary.
END_VERBS = (
    "wrote", "writes", "said", "says", "wrote ----",
    "schrieb", "geschrieben", "schreef", "het volgende geschreven",
    "a écrit", "écrit", "escribió", "escreveu", "ha scritto", "scrisse",
    "skrev", "skriver", "kirjoitti", "napisał(a)", "napisał", "napisała", "pisze", "napsal", "napsal(a)",
    "написал(а)", "написал", "написала", "пишет", "пише", "написав", "написала(а)",
    "írta", "a scris", "yazdı", "έγραψε", "sent", "ha escrit", "va escriure", "đã viết", "napísal", "napísal(a)",
    "napsala", "napisao", "napisala", "je napisal", "je napisal(a)", "написа", "rašė", "rakstīja", "kirjutas",
    "skrifaði", "menulis", "كتب", "كتب:", "כתב", "כתב/ה", "נכתב", "напісаў", "nagsulat", "เขียนว่า", "نوشت",
    "wrote ---", "wrote --", "escribio", "skrev følgende", "kirjoitti viestin",
)
CJK_END_VERBS = ("写道", "寫道", "のメール", "書きました", "님이 작성:", "작성:")
# The verb in the middle: "Am 5. Juni 2017 um 12:22 schrieb Bob <b@x.org>:", "Bob <b@x.org> schrieb am …:".
MID_VERBS = (
    " schrieb ", " schreef ", " skrev ", " wrote ", " a écrit ", " escribió ", " escreveu ", " ha scritto ",
    " napisał(a) ", " написал ", " написал(а) ", " heeft ", " kirjoitti ", " writes ", " a scris ", " ha escrit ",
    " đã viết ", " napsal ", " napsal(a) ", " írta ", " yazdı ", " έγραψε ", " menulis ", " sent ",
)

_MID_VERB_WORDS = tuple(verb.strip() for verb in MID_VERBS)
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_TIME = re.compile(r"(?<!\d)\d{1,2}[:.h]\d\d(?!\d)")
_NUMERIC_DATE = re.compile(r"(?<!\d)\d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?!\d)")
_CJK_DATE = re.compile(r"\d{1,4}\s?[年月日]")
_DATE_FIRST = re.compile(r"(?:19|20)\d\d[-/]\d{1,2}[-/]\d{1,2}[ T]")
# An address: a character of the local part right before "@", then the domain: a dot after at least one
# character (within 255) and two characters that are not dots. Matched from each "@" (linear time).
_EMAIL_START = re.compile(r"(?<=[^\s@<>()\[\]\"'])@")
_DOMAIN = re.compile(r"[^\s@<>()\[\]\"']{0,258}")
_DOT_TLD = re.compile(r"\.[^.]{2}")
MAX_AT_SIGNS = 20
_SUPERCITE = re.compile(r"[A-Za-z0-9]{1,12}>(?:[ >]|$)")


def has_email(text: str) -> bool:
    """Whether text holds something shaped like an e-mail address (local@domain.tld)."""
    if "@" not in text:
        return False
    for seen, at in enumerate(_EMAIL_START.finditer(text)):
        domain = _DOMAIN.match(text, at.end()).group()  # type: ignore[union-attr]
        if _DOT_TLD.search(domain, 1, 258):
            return True
        if seen >= MAX_AT_SIGNS:
            return False
    return False


def is_quoted(line: str) -> bool:
    """A line quoted with ">" (also "Name>" supercite style)."""
    bare = line.lstrip(" \t")
    if bare.startswith(">"):
        return True
    return bool(bare) and bare[0].isalnum() and _SUPERCITE.match(bare[:16]) is not None


def unquote(line: str) -> str:
    """The line without its ">" quoting (any depth)."""
    bare = line.lstrip(" \t")
    while bare.startswith(">"):
        bare = bare[1:].lstrip(" \t")
    return bare


def cached(function: Callable[[str], T]) -> Callable[[str], T]:
    """Remember the answers of a check on one line; long lines are checked every time (never kept)."""
    remembered = lru_cache(maxsize=CACHE)(function)

    @wraps(function)
    def check(line: str) -> T:
        return remembered(line) if len(line) <= CACHED_LENGTH else function(line)

    check.cache_clear = remembered.cache_clear  # type: ignore[attr-defined]
    return check


_DIGIT = re.compile(r"\d")


def has_date(text: str) -> bool:
    if _DIGIT.search(text) is None:
        return False
    return bool(_YEAR.search(text) or _TIME.search(text) or _NUMERIC_DATE.search(text) or _CJK_DATE.search(text))


_ON_PHRASES = ("in message", "il giorno", "w dniu", "在", "wiadomość napisana przez")
_CJK_VERBS = tuple(verb.rstrip(":") for verb in CJK_END_VERBS)


def starts_with_on(low: str) -> bool:
    """Whether a lower-case line starts like an attribution ("on", "le", "am", "w dniu"…)."""
    return _starts_with_on(low)


def _starts_with_on(low: str) -> bool:
    first = low[:24].split(None, 1)
    if first and first[0].rstrip(",") in ON_WORDS:
        return True
    return low.startswith(_ON_PHRASES)


def _ends_with_verb(core: str) -> bool:
    if core.endswith(_CJK_VERBS):
        return True
    if not core.endswith(END_VERBS):
        return False
    for verb in END_VERBS:
        if core.endswith(verb):
            before = core[-len(verb) - 1: -len(verb)]
            if not before or not before.isalpha():
                return True
    return False


_ATTRIBUTION_STRIP = " \t-*_\u00a0"
_CORE_STRIP = " :：.-\u00a0"


@cached
def is_attribution(text: str) -> bool:
    """Whether one logical line is an "On <date>, <someone> wrote:" line (any supported language)."""
    s = text.strip(_ATTRIBUTION_STRIP)
    if not 6 <= len(s) <= MAX_ATTRIBUTION:
        return False
    low = s.lower()
    ends_colon = low.endswith((":", "："))
    core = low.rstrip(_CORE_STRIP)
    verb_end = _ends_with_verb(core)
    if not (ends_colon or verb_end or (low[0].isdigit() and _DATE_FIRST.match(low))):
        return False  # the common case: an ordinary line (only a date-first line needs neither)
    on_start = _starts_with_on(low)
    email = has_email(low)
    dated = has_date(low)
    via = " via " in low
    if verb_end and ((on_start and dated) or email or via or (dated and ends_colon)):
        return True
    if ends_colon and dated and (on_start or email):
        padded = " " + core + " "
        if any(verb in padded for verb in MID_VERBS):
            return True
    if ends_colon and email and dated and core.endswith(">") and (_YEAR.search(low) or _CJK_DATE.search(low)):
        return True  # Gmail in Russian, Japanese…: "пн, 5 июн. 2017 г. в 12:22, Bob <bob@x.org>:"
    if _DATE_FIRST.match(low) and (email or "gmt" in low) and len(s) <= 200:
        return True  # "2016-03-03 17:21 GMT+01:00 Some One", "2013/7/20 sam <sam@x.org>"
    if low.startswith("wiadomość napisana przez") and ends_colon:
        return True
    return False


def strong_attribution(text: str) -> bool:
    """An attribution that names an address, a year or a list ("via"): strong enough to cut the unquoted
    text below it as history ("At 10:30 Bob said:" followed by notes is not)."""
    low = text.lower()
    return has_email(low) or _YEAR.search(low) is not None \
        or " via " in low or _CJK_DATE.search(low) is not None


@cached
def starts_with_attribution(line: str) -> bool:
    """An attribution with the quoted text run on after it on the same line, as Yahoo's mobile apps write
    ("On Mon, Jun 5, 2017 at 12:22, Kim<kim@x.org> wrote:   The invoice is attached.")."""
    head = line[:MAX_ATTRIBUTION]
    if not _starts_with_on(head.strip(" \t-*").lower()):
        return False
    start = 0
    for _ in range(8):
        colon = head.find(":", start)
        if colon < 0:
            return False
        if head[colon + 1: colon + 2].isspace() and head[colon + 1:].strip() and is_attribution(head[: colon + 1]):
            return True
        start = colon + 1
    return False


@cached
def may_start_wrapped_attribution(line: str) -> bool:
    """Whether a line could be the first part of an attribution a mail client wrapped over lines."""
    s = line.strip(" \t-*")
    if not s or len(s) > 300 or s.endswith((":", "：")):
        return False
    low = s.lower()
    return _starts_with_on(low) or has_date(low) or "@" in low or low.endswith("<")


def continuation(line: str) -> str:
    """A wrapped continuation line with the quoting and dashes a client may put in front removed."""
    return line.lstrip(" \t>-")


def join_wrapped(lines: list[str], i: int) -> int:
    """If lines[i] starts an attribution wrapped over several lines, the index after its last line, else 0."""
    parts = [lines[i].strip()]
    opens_with_on = _starts_with_on(parts[0].lower())
    date_first = parts[0].strip(_ATTRIBUTION_STRIP)[:1].isdigit()  # may need no colon or verb
    blanks = 0
    count = 1
    j = i + 1
    while j < len(lines) and count < MAX_JOIN_LINES:
        piece = continuation(lines[j]).strip()
        if not piece:
            blanks += 1
            if blanks > 1:
                return 0
            j += 1
            continue
        if len(piece) > MAX_CONTINUATION:
            return 0
        if _starts_with_on(piece.lower()) and (opens_with_on or not parts[-1].lower().endswith(_MID_VERB_WORDS)):
            return 0  # a new "On …" line, unless it finishes "Kim <k@x.org> schrieb / am 5. Juni …:"
        parts.append(piece)
        count += 1
        j += 1
        if (date_first or _may_end_attribution(piece)) and is_attribution(" ".join(parts)):
            return j
    return 0


def _may_end_attribution(piece: str) -> bool:
    """Whether the joined lines ending with this piece can be an attribution: it ends with ":" or "wrote"
    (or is only punctuation: then the lines before decide). A cheap test before is_attribution."""
    low = piece.strip(_ATTRIBUTION_STRIP).lower()
    core = low.rstrip(_CORE_STRIP)
    return not core or low.endswith((":", "：")) or _ends_with_verb(core)


# Outlook-style header labels (lower case), by what they say.
HEADER_LABELS: dict[str, str] = {}
for kind, labels in {
    "from": "from von de da van fra från od от від 差出人 发件人 寄件者 expéditeur remitente afzender lähettäjä "
            "từ feladó من kimden από מאת dari šalje 보낸사람",
    "date": "sent date gesendet datum envoyé enviado enviada inviato data verzonden sendt skickat wysłano "
            "отправлено надіслано дата 送信日時 发送时间 寄件日期 日期 fecha dato päivämäärä lähetetty "
            "ngày gửi trimis dată elküldve dátum التاريخ odesláno gönderildi tarih στάλθηκε נשלח dikirim tanggal "
            "poslano изпратено enviat odoslané",
    "to": "to an à a para aan til till do кому 宛先 收件人 收件者 destinataire destinatario vastaanottaja "
          "đến tới către címzett إلى komu kime προς אל kepada prima до 받는사람",
    "subject": "subject betreff objet asunto assunto oggetto onderwerp emne ämne temat тема 件名 主题 主旨 aihe "
               "sujet subiect tárgy الموضوع předmět predmet konu θέμα נושא perihal subjek относно assumpte 제목",
    "cc": "cc bcc kopie kopia kopi копия 抄送 副本 cci másolat kopya κοιν",
    "other": "reply-to risposta antwort an importance priorität",
}.items():
    for label in labels.split():
        HEADER_LABELS[label] = kind
for label, kind in {
    "enviado el": "date", "enviada em": "date", "enviado em": "date", "répondre à": "other",
    "beantwoorden - aan": "other", "reply to": "other", "antwort an": "other", "envoyé le": "date",
    "date d'envoi": "date", "message du": "date", "copie à": "cc", "de la": "from", "chủ đề": "subject",
    "보낸 사람": "from", "보낸 날짜": "date", "받는 사람": "to", "per a": "to", "tarih": "date",
    "تاريخ الإرسال": "date", "data de envio": "date",
}.items():
    HEADER_LABELS[label] = kind


@cached
def header_kind(line: str) -> str | None:
    """The kind ("from", "date", "to", "subject", "cc", "other") of an Outlook-style header line, or None."""
    head = line[:60]
    colon = head.find(":")
    wide = head.find("：")
    if wide > 0 and (colon < 0 or wide < colon):
        colon = wide
    if colon <= 0:
        return None
    label = " ".join(head[:colon].strip(" \t*_>\u00a0\u202f").lower().split())
    if label not in HEADER_LABELS:
        return None
    value = line[colon + 1:].strip(" \t*_\u00a0")
    if not value and HEADER_LABELS[label] not in ("to", "cc", "subject"):
        return None
    return HEADER_LABELS[label]


_ONCE = frozenset({"from", "subject"})  # a second one starts another header block
MAX_HEADERS = 12


def header_block_end(lines: list[str], i: int) -> int:
    """If an Outlook header block (From + at least two of Sent/To/Subject) starts at lines[i], the index after
    it, else 0. Wrapped header values and single blank lines between headers are part of the block."""
    if header_kind(lines[i]) is None:
        return 0
    kinds: set[str] = set()
    headers = 0
    j = i
    last = i
    blank_run = 0
    since_header = 0
    while j < len(lines) and j - i < 40:
        line = lines[j]
        if not line.strip():
            blank_run += 1
            if blank_run > 1:
                break
            j += 1
            continue
        kind = header_kind(line)
        if kind is not None:
            if kind in kinds and kind in _ONCE:
                break  # a second header block starts
            if headers == MAX_HEADERS:
                return 0  # no mail client writes that many: a list of "Label: value" lines
            kinds.add(kind)
            headers += 1
            last = j
            since_header = 0
        else:
            since_header += 1
            if blank_run or since_header > 2 or headers == 0:
                break  # continuation lines follow a header directly
            last = j
        blank_run = 0
        j += 1
    if headers >= 3 and "from" in kinds and len(kinds & {"date", "to", "subject"}) >= 2:
        return last + 1
    return 0


_FORWARD_PHRASES = frozenset(
    """original message|forwarded message|reply message|forwarded e-mail|message d'origine|message original
    |message transféré|ursprüngliche nachricht|weitergeleitete nachricht|mensaje original|mensaje reenviado
    |mensagem original|mensagem encaminhada|messaggio originale|messaggio inoltrato|oorspronkelijk bericht
    |doorgestuurd bericht|origineel bericht|opprinnelig melding|videresendt melding|oprindelig meddelelse
    |original meddelelse|videresendt meddelelse|ursprungligt meddelande|vidarebefordrat meddelande
    |wiadomość oryginalna|oryginalna wiadomość|przekazana wiadomość|исходное сообщение|пересылаемое сообщение
    |переслане повідомлення|оригінальне повідомлення|元のメッセージ|転送されたメッセージ|原始邮件|转发的邮件
    |原始郵件|轉寄的郵件|alkuperäinen viesti|välitetty viesti|oprindelig besked|videresendt besked|message réexpédié
    |original-nachricht|originalnachricht|originele bericht|wiadomość przekazana dalej|původní zpráva|přeposlaná zpráva
    |pôvodná správa|preposlaná správa|eredeti üzenet|továbbított üzenet|mesaj original|mesajul original
    |mesaj redirecționat|mesaj redirectionat|orijinal mesaj|özgün ileti|iletilen ileti|αρχικό μήνυμα|προωθημένο μήνυμα
    |пересланное сообщение|исходное письмо|оригинално съобщение|препратено съобщение|izvorna poruka
    |proslijeđena poruka|izvirno sporočilo|posredovano sporočilo|originalus laiškas|persiųstas laiškas
    |sākotnējā ziņa|pārsūtīta ziņa|algne kiri|edastatud kiri|thư gốc|thư chuyển tiếp|tin nhắn gốc
    |tin nhắn đã chuyển tiếp|pesan asli|pesan terusan|الرسالة الأصلية|رسالة محولة|הודעה מקורית|הודעה שהועברה
    |원본 메시지|전달된 메시지|ข้อความต้นฉบับ|missatge original|missatge reenviat|upprunaleg skilaboð
    |forwarded email|forward message|original email|mensagem reencaminhada|messaggio di posta originale
    |ursprungliches meddelande|mensaje reenviado""".replace("\n", "").replace("    ", "").split("|")
)
_FORWARD_STARTS = (
    "begin forwarded message", "début du message transféré", "anfang der weitergeleiteten nachricht",
    "inicio del mensaje reenviado", "início da mensagem reencaminhada", "inizio messaggio inoltrato",
    "begin doorgestuurd bericht", "videresendt besked", "vidarebefordrat brev", "начало переадресованного",
    "転送されたメッセージ", "转发的邮件", "forwarded message:", "début du message réexpédié",
    "início da mensagem encaminhada",
    "inicio del mensaje reenviado", "begin van doorgestuurd bericht", "vidarebefordrat meddelande:",
    "videresendt meddelelse:", "videresendt melding:", "välitetty viesti:", "przekazana wiadomość:",
    "пересылаемое сообщение", "переслане повідомлення", "messaggio inoltrato:", "mensaje reenviado:",
    "weitergeleitete nachricht:", "message transféré:", "doorgestuurd bericht:",
)


@cached
def is_forward_marker(line: str) -> bool:
    """"-----Original Message-----", "---------- Forwarded message ---------", "Begin forwarded message:"…"""
    s = line.strip()
    if not s or len(s) > 120:
        return False
    low = s.lower()
    if "-" in low or "=" in low or "_" in low:
        if low.strip(" \t*_-=>").rstrip(" :") in _FORWARD_PHRASES:
            return True
    return low.lstrip(" >*").startswith(_FORWARD_STARTS)


# Words that make a marker a forward ("Forwarded message", "Message transféré"…) rather than the quoted
# original of a reply ("Original Message").
_FORWARD_WORDS = (
    "forward", "transféré", "réexpédié", "weitergeleitet", "reenviad", "encaminhad", "inoltrat", "doorgestuurd",
    "videresendt", "vidarebefordra", "välitetty", "przekazan", "пересыла", "переслан", "переадресован", "転送",
    "转发", "轉寄", "přeposlan", "preposlan", "továbbított", "redirecționat", "redirectionat", "iletilen",
    "προωθημένο", "препратено", "proslijeđen", "posredovan", "persiųst", "pārsūtīt", "edastatud",
    "chuyển tiếp", "terusan", "محولة", "שהועברה", "전달된", "reenviat",
)
FORWARD_SUBJECTS = ("fwd:", "fw:", "wg:", "tr:", "rv:", "doorst:", "vs:", "vb:", "enc:", "i:", "pd:", "fwd :",
                    "tr :", "转发:", "轉寄:", "転送:")


@cached
def is_forwarded_marker(line: str) -> bool:
    """A marker that starts a forwarded message ("---------- Forwarded message ---------", "Begin forwarded
    message:", "-------- Message transféré --------"), not a reply's "-----Original Message-----"."""
    if not is_forward_marker(line):
        return False
    low = line.lower()
    return any(word in low for word in _FORWARD_WORDS)
