"""return_date(): the day an out-of-office auto-reply says its writer is back, or None.

A small table of return phrases per language ("back on", "bis zum", "jusqu'au", ...) finds where the date
is; dateparser reads the words that follow, in that phrase's language (it knows the month and weekday
names, "5th", "1er", "12 de enero"). Numeric dates are read here: "12.01." is a time of day to dateparser,
and an agency's clients write day first. Only dates from the day of the auto-reply up to a year later are
taken: anything else is another date the text happens to mention ("since 1 December", a phone number).

The languages are those the reply trimmer knows (gateway/inbound/quotes.py and signatures.py).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

SCAN_CHARS = 4000  # an auto-reply says when its writer is back near its start
FRAGMENT_CHARS = 60  # the words after a return phrase that may hold its date
LATEST = dt.timedelta(days=366)  # a return date further off is not one
_MAX_TRIES = 8  # return phrases tried: a text full of "until" costs no more than this many reads
_MAX_WORDS = 5  # a date in words: "lundi 4 janvier 2027", "the 12th of January"

BACK = "back"  # the phrase names the first day back ("back on 12 January")
UNTIL = "until"  # the phrase names the last day away ("until 12 January"): back the day after

_ = r"\s+"
# (language, kind, phrase). A phrase ends where its date begins; the first phrase in the text wins.
_PHRASES: list[tuple[str, str, str]] = [
    ("en", BACK, r"\b(?:(?:be|am|'ll\s+be|will\s+be)\s+)?back(?:\s+(?:in|at)\s+(?:the|my)\s+(?:office|desk))?"
                 r"(?:\s+(?:on|from))?"),
    ("en", BACK, r"\breturn(?:ing|s)?(?:\s+to\s+(?:the|my)\s+(?:office|desk|work))?(?:\s+(?:on|from))?"),
    ("en", BACK, r"\b(?:in\s+the\s+office|available)\s+again(?:\s+(?:on|from))?"),
    ("en", UNTIL, r"\b(?:until|till|through|thru)(?:\s+and\s+including)?"),
    ("en", UNTIL, r"\bfrom(?:\s+[\w,.]+){1,4}?\s+(?:to|-|–)"),  # "from 20 December to 4 January"
    ("de", BACK, r"\b(?:zurück|wieder\s+(?:im\s+büro|erreichbar|da|verfügbar))(?:\s+(?:am|ab))?(?:\s+dem)?"),
    # The date before the phrase: "am 14. Dezember zurück", "ab dem 5. Januar wieder im Büro" (only when the
    # return word follows in the same sentence before another date phrase: "ab 20. Dezember im Urlaub" is not).
    ("de", BACK, r"\b(?:am|ab)(?:\s+dem|\s+\w+,?\s+de[nm](?=\s+\d))?"
                 r"(?=(?:(?!\b(?:am|ab|bis)\b)[^!?\n]){0,50}?\b(?:zurück|wieder)\b)"),
    ("de", UNTIL, r"\bbis(?:\s+(?:einschließlich|einschl\.|inkl\.|inklusive))?(?:\s+(?:zum|am|einschließlich))?"),
    ("fr", BACK, r"\b(?:de\s+retour|retour|je\s+reviendrai|rentrerai)(?:\s+(?:le|au\s+bureau\s+le|à\s+partir\s+du))?"),
    ("fr", UNTIL, r"\bjusqu['’]\s*(?:au|à|a)(?:\s+(?:inclus|le))?"),
    ("fr", UNTIL, r"\bdu(?:\s+[\w,.]+){1,4}?\s+au"),  # "du 20 décembre au 4 janvier"
    ("es", BACK, r"\b(?:de\s+vuelta|de\s+regreso|regreso|volveré|vuelvo|regresaré)"
                 r"(?:\s+(?:el|a\s+la\s+oficina\s+el))?"),
    ("es", UNTIL, r"\bhasta(?:\s+el)?(?:\s+día)?"),
    ("es", UNTIL, r"\bdel(?:\s+[\w,.]+){1,4}?\s+al"),  # "del 20 de diciembre al 4 de enero"
    ("nl", BACK, r"\b(?:terug|weer\s+(?:aanwezig|bereikbaar|beschikbaar|op\s+kantoor))(?:\s+(?:op|vanaf))?"),
    ("nl", UNTIL, r"\b(?:tot\s+en\s+met|t/m|tot)"),
    # "vanaf 5 januari weer aanwezig": only with the return word after it ("vanaf 20 december afwezig" is not)
    ("nl", BACK, r"\b(?:vanaf|op)(?=(?:(?!\b(?:vanaf|op|tot)\b)[^!?\n]){0,50}?\b(?:weer|terug)\b)"),
    ("pt", BACK, r"\b(?:de\s+volta|regresso|retorno|volto|voltarei|retornarei)(?:\s+(?:em|a|no\s+dia|dia|na))?"),
    ("pt", UNTIL, r"\baté(?:\s+(?:o\s+dia|dia|ao\s+dia|a|o))?"),
    ("it", BACK, r"\b(?:di\s+ritorno|rientro|rientrerò|tornerò|torno|sarò\s+di\s+nuovo\s+in\s+ufficio)"
                 r"(?:\s+(?:il|dal|lunedì))?"),
    ("it", UNTIL, r"\bfino\s+(?:al|a|a\s+tutto\s+il|all['’])"),
    ("it", UNTIL, r"\bdal(?:\s+[\w,.]+){1,4}?\s+al"),  # "dal 20 dicembre al 4 gennaio"
]
_PHRASE = re.compile("|".join(f"(?P<p{i}>{p})" for i, (_l, _k, p) in enumerate(_PHRASES)), re.IGNORECASE)
# Day first, then month, then an optional year: 12.01., 12/01/2027, 12-1-27, 2027-01-12 (ISO, below).
_NUMERIC = re.compile(r"^\W{0,3}(?:\w+,?\s+)?(?:(?:den|le|el|il|op|em|o)\s+)?"
                      r"(\d{1,2})[./-](\d{1,2})\.?(?:[./-](\d{2,4}))?(?!\d)")
_ISO = re.compile(r"^\W{0,3}(\d{4})-(\d{2})-(\d{2})(?!\d)")


@dataclass(frozen=True)
class ReturnDate:
    back_on: dt.date  # the first day back
    said: str  # BACK or UNTIL: how the text put it (for showing it the way the client wrote it)
    phrase: str  # the words it was read from, for the inbound log

    @property
    def last_day_away(self) -> dt.date:
        return self.back_on - dt.timedelta(days=1)


def return_date(text: str, received: dt.date) -> ReturnDate | None:
    """When the writer of an auto-reply received on `received` is back, as the text says; None when it does
    not say (or says it in a way we do not read)."""
    text = " ".join(text[:SCAN_CHARS].split())
    for tries, match in enumerate(_PHRASE.finditer(text)):
        if tries >= _MAX_TRIES:
            break
        index = int((match.lastgroup or "p0")[1:])
        language, kind, _pattern = _PHRASES[index]
        fragment = text[match.end():match.end() + FRAGMENT_CHARS]
        day = _read_date(fragment, language, received)
        if day is None:
            continue
        back_on = day + dt.timedelta(days=1) if kind == UNTIL else day
        return ReturnDate(back_on=back_on, said=kind, phrase=(match.group(0) + fragment)[:120])
    return None


def _read_date(fragment: str, language: str, received: dt.date) -> dt.date | None:
    if not fragment[:1].isspace() and fragment[:1] not in (":", ","):
        return None  # the phrase was the start of a longer word
    day = _numeric_date(fragment, received)
    if day is None:
        day = _words_date(fragment, language, received)
    if day is None or not received <= day <= received + LATEST:
        return None
    return day


def _numeric_date(fragment: str, received: dt.date) -> dt.date | None:
    iso = _ISO.match(fragment)
    if iso:
        return _date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    found = _NUMERIC.match(fragment)
    if not found:
        return None
    first, second = int(found.group(1)), int(found.group(2))
    day, month = (second, first) if second > 12 >= first else (first, second)  # 01/31: written month first
    if found.group(3):
        year = int(found.group(3))
        return _date(year + 2000 if year < 100 else year, month, day)
    this_year = _date(received.year, month, day)  # no year: the next such day
    if this_year is not None and this_year >= received:
        return this_year
    return _date(received.year + 1, month, day)


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _words_date(fragment: str, language: str, received: dt.date) -> dt.date | None:
    # Imported when first needed: dateparser builds large tables, and most mail is no auto-reply.
    from dateparser import parse
    from dateparser.search import search_dates

    base = dt.datetime.combine(received, dt.time(12))
    settings: dict[str, Any] = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": base, "DATE_ORDER": "DMY",
                                "REQUIRE_PARTS": ["day"]}
    head = fragment.strip(" :,")
    found = search_dates(head, languages=[language], settings=settings)
    if found:
        words, when = found[0]
        if len(head[:max(head.find(words), 0)].split()) <= 1:  # right after the phrase ("el lunes 4"), not later
            return when.date()
    # search_dates misses some forms parse() reads ("1er janvier"): the first few words, longest first.
    words = head.split(" ")[:_MAX_WORDS]
    for count in range(len(words), 0, -1):
        candidate = " ".join(words[:count]).rstrip(".,;:!")
        if not candidate:
            continue
        when = parse(candidate, languages=[language], settings=settings)
        if when is not None:
            return when.date()
    # A weekday alone ("back Monday"): the next one after the day of the auto-reply.
    weekday = parse(words[0].rstrip(".,;:!"), languages=[language], settings={**settings, "REQUIRE_PARTS": []})
    if weekday is not None and dt.timedelta(0) < weekday.date() - received <= dt.timedelta(days=7):
        return weekday.date()
    return None
