"""return_date(): the day an out-of-office auto-reply says its writer is back, in the languages the reply
trimmer knows. The auto-replies below arrive on Thursday 3 December 2026."""
from __future__ import annotations

import datetime as dt

import pytest

from gateway.inbound.return_date import BACK, UNTIL, return_date

RECEIVED = dt.date(2026, 12, 3)
D = dt.date

CASES = [
    # English
    ("I am out of the office and will be back on 12 January.", D(2027, 1, 12), BACK),
    ("Thanks for your message. I'm returning Monday 7th, with limited access to email.", D(2026, 12, 7), BACK),
    ("I am away until 12/01/2027. For urgent matters call Bob.", D(2027, 1, 13), UNTIL),
    ("Out of office until January 5, 2027 and will respond then.", D(2027, 1, 6), UNTIL),
    ("I'll be back in the office on Monday, December 14th.", D(2026, 12, 14), BACK),
    ("I return on 2027-01-04.", D(2027, 1, 4), BACK),
    ("I'm on leave, back Monday.", D(2026, 12, 7), BACK),
    ("I am on holiday from 20 December to 4 January, without email.", D(2027, 1, 5), UNTIL),
    ("I'll be back in the office on Monday, 5 January.", D(2027, 1, 5), BACK),
    # German
    ("Ich bin bis zum 12.01. nicht im Büro.", D(2027, 1, 13), UNTIL),
    ("Vielen Dank. Ich bin ab dem 4. Januar 2027 wieder erreichbar.", D(2027, 1, 4), BACK),
    # ... the date before the phrase
    ("Ich bin am 14. Dezember zurück.", D(2026, 12, 14), BACK),
    ("Ich bin am Montag, den 14. Dezember zurück.", D(2026, 12, 14), BACK),
    ("Ich bin ab dem 5. Januar wieder im Büro.", D(2027, 1, 5), BACK),
    ("Ab Montag, dem 4. Januar bin ich wieder erreichbar.", D(2027, 1, 4), BACK),
    ("Ich bin ab 20. Dezember im Urlaub und ab 5. Januar wieder da.", D(2027, 1, 5), BACK),
    ("Ich bin ab 20. Dezember im Urlaub.", None, None),  # the day they leave, not the day they are back
    ("Ich bin bis einschließlich 18. Dezember im Urlaub.", D(2026, 12, 19), UNTIL),
    # French
    ("Je suis absent jusqu'au 12 janvier inclus.", D(2027, 1, 13), UNTIL),
    ("Je serai de retour le lundi 4 janvier.", D(2027, 1, 4), BACK),
    ("Je serai de retour le 5 janvier.", D(2027, 1, 5), BACK),
    ("Je suis en congés jusqu’au 1er janvier.", D(2027, 1, 2), UNTIL),
    ("Je suis absente du 21 décembre au 3 janvier.", D(2027, 1, 4), UNTIL),
    # Spanish
    ("Estaré fuera de la oficina hasta el 12 de enero.", D(2027, 1, 13), UNTIL),
    ("Estaré de vuelta el lunes 4 de enero.", D(2027, 1, 4), BACK),
    ("Estoy de vacaciones del 20 de diciembre al 6 de enero.", D(2027, 1, 7), UNTIL),
    # Dutch
    ("Ik ben afwezig tot en met 8 januari.", D(2027, 1, 9), UNTIL),
    ("Ik ben weer aanwezig op maandag 11 januari.", D(2027, 1, 11), BACK),
    ("Ik ben vanaf 5 januari weer aanwezig.", D(2027, 1, 5), BACK),
    ("Ik ben op maandag 4 januari weer op kantoor.", D(2027, 1, 4), BACK),
    ("Ik ben vanaf 20 december afwezig.", None, None),  # the day they leave
    # Portuguese
    ("Estou fora do escritório até 15 de dezembro.", D(2026, 12, 16), UNTIL),
    ("Estarei de volta em 7 de janeiro.", D(2027, 1, 7), BACK),
    # Italian
    ("Sono fuori ufficio fino al 10 gennaio.", D(2027, 1, 11), UNTIL),
    ("Rientro il 7 gennaio 2027.", D(2027, 1, 7), BACK),
    ("Sono in ferie dal 22 dicembre al 6 gennaio.", D(2027, 1, 7), UNTIL),
    # No return date, or none that can be one
    ("I am currently out of the office with limited access to email.", None, None),
    ("Thank you for your email. I will get back to you as soon as possible.", None, None),
    ("I was away from 1 December; back on 1 December 2026.", None, None),  # in the past
    ("Back on 12 January 2030.", None, None),  # more than a year ahead: not a return date
    ("Call me until 18:00 on 0151 2345 678.", None, None),
]


@pytest.mark.parametrize(("text", "back_on", "said"), CASES, ids=[c[0][:40] for c in CASES])
def test_return_date(text: str, back_on: dt.date | None, said: str | None):
    found = return_date(text, RECEIVED)
    if back_on is None:
        assert found is None, found
        return
    assert found is not None, text
    assert (found.back_on, found.said) == (back_on, said)


def test_until_names_the_last_day_away():
    found = return_date("Away until 12 January.", RECEIVED)
    assert found is not None and found.last_day_away == D(2027, 1, 12) and found.back_on == D(2027, 1, 13)


def test_day_without_year_is_the_next_one():
    assert return_date("Back on 2 December.", RECEIVED).back_on == D(2027, 12, 2)  # type: ignore[union-attr]
    assert return_date("Zurück am 02.12.", RECEIVED).back_on == D(2027, 12, 2)  # type: ignore[union-attr]


def test_a_text_full_of_return_phrases_is_read_only_so_far():
    # A hostile auto-reply: thousands of "until" with nothing readable after them, then a date: not read.
    text = "until then " * 2000 + "back on 12 January."
    assert return_date(text, RECEIVED) is None
    assert return_date("until then " * 3 + "back on 12 January.", RECEIVED).back_on == D(2027, 1, 12)  # type: ignore[union-attr]
