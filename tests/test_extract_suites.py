"""Every reply-parser test suite in ../shared/corpora (read in place, skipped when absent) passes through
`workrate trim`'s function, as a plain body and as a whole mail: each case gives the suite's expected reply,
or falls under one of the listed semantic differences below.

A difference is decided by a rule on the kind of input and output (never by a case's name), and each rule
checks that our reply is what our semantics say, so a listed case still fails when we get it wrong."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import SHARED, shared_path

from gateway.inbound.footers import is_closing
from gateway.inbound.preview import preview_reply
from gateway.inbound.signatures import is_dash_name

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))  # after the project: bench/web.py is no package
from reply_accuracy import Case, load_corpus, normalise  # noqa: E402

# suite -> cases it holds; reply-trimmer and email-reply-parser must match exactly (no difference allowed).
SUITES = {
    "reply-trimmer": 64, "email-reply-parser": 21, "crisp-email-reply-parser": 37,
    "willdurand-emailreplyparser": 39, "quotequail": 15, "mailstrip": 5, "mail-parser-reply": 1,
    "webridge-email-reply-parser": 5, "webridge-combinations": 1716,
}
EXACT_SUITES = {"reply-trimmer", "email-reply-parser"}


def _lines(text: str) -> list[str]:
    return [line for line in normalise(text).split("\n") if line.strip()]


Lines = list[str]


def _closing_kept(want: Lines, ours: Lines, source: str) -> tuple[Lines, Lines] | None:
    # ours ends with the closing paragraph the writer typed ("Best regards," + a name, at most 4 lines).
    at = next((n for n in range(len(ours) - 1, max(len(ours) - 5, -1), -1) if is_closing(ours[n])), None)
    return None if at is None or ours[:at] == ours else (want, ours[:at])


def _context_quotes_kept(want: Lines, ours: Lines, source: str) -> tuple[Lines, Lines] | None:
    # ours keeps the quote it answers between the lines of the reply (only ">" lines more than expected).
    def unquoted(lines: Lines) -> Lines:
        return [line for line in lines if not line.lstrip().startswith(">")]

    answered = len(unquoted(ours)) < len(ours) and not ours[-1].lstrip().startswith(">")  # never a trailing quote
    return (unquoted(want), unquoted(ours)) if answered else None


def _signature_only_kept(want: Lines, ours: Lines, source: str) -> tuple[Lines, Lines] | None:
    # the suite expects nothing; ours keeps the lines the writer sent (each one a line of the input).
    return (want, []) if not want and ours and all(line in source for line in ours) else None


def _dash_name_cut(want: Lines, ours: Lines, source: str) -> tuple[Lines, Lines] | None:
    # the suite keeps a "-Name" sign-off line at the end; ours is the reply without it.
    return (want[:-1], ours) if want and is_dash_name(want[-1]) else None


def _dash_delimiter_cut(want: Lines, ours: Lines, source: str) -> tuple[Lines, Lines] | None:
    # the suite keeps a signature set off by a one-dash line ("—"); ours ends the reply at that line.
    cut = next((n for n, line in enumerate(want) if line.strip() in ("—", "–")), None)
    return None if cut is None else (want[:cut], ours)


@dataclass(frozen=True)
class Difference:
    reason: str
    undo: Callable[[Lines, Lines, str], tuple[Lines, Lines] | None]  # (expected, ours) with the difference undone


# Where a suite's expectation and our semantics differ on purpose: one rule per kind of input. A case may
# need two of them (a closing under an inline answer); after undoing them, ours must be the expected reply.
DIFFERENCES = {
    "closing": Difference("a closing typed by the writer ('Best regards,' + name) stays; webridge and crisp "
                          "cut it as a signature", _closing_kept),
    "inline answer": Difference("text below a quote that has quotes of its own is an inline answer: the quotes "
                                "between stay as context; willdurand and webridge drop the first one",
                                _context_quotes_kept),
    "signature only": Difference("a mail whose only text is a signature block (no '--') is posted as written, "
                                 "never emptied; webridge expects an empty reply", _signature_only_kept),
    "-Name line": Difference("a '-Name' sign-off line after the text goes; crisp keeps it", _dash_name_cut),
    "one-dash delimiter": Difference("a line of one dash ('—') sets off the signature below it; crisp keeps it",
                                     _dash_delimiter_cut),
}
MAX_DIFFERENCES = 2  # rules one case may need together


def as_mail(case: Case) -> bytes:
    """The case's body as a whole mail (text/plain, or text/html for an HTML case)."""
    message = EmailMessage()
    message["From"] = "Bob Stone <bob@acme.test>"
    message["To"] = "reply@reply.test"
    message["Subject"] = "Re: the brief"
    if case.plain is not None:
        message.set_content(case.plain.replace("\r\n", "\n"), charset="utf-8")
    else:
        message.set_content(case.html or "", subtype="html", charset="utf-8")
    return bytes(message)


def verdict(case: Case, ours: str) -> str | None:
    """None when ours is the expected reply, else the names of the differences that explain it ("" for none)."""
    if normalise(ours) == normalise(case.expected):
        return None
    source = normalise(case.plain or "")

    def explain(want: Lines, got: Lines, used: tuple[str, ...]) -> tuple[str, ...] | None:
        if used and want == got:
            return used
        if len(used) == MAX_DIFFERENCES:
            return None
        for name, rule in DIFFERENCES.items():
            undone = rule.undo(want, got, source) if name not in used else None
            if undone is not None and undone != (want, got):
                found = explain(*undone, (*used, name))
                if found:
                    return found
        return None

    return " + ".join(explain(_lines(case.expected), _lines(ours), ()) or ())


@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_through_workrate_trim(suite):
    # Behaviour: every case of the suite, as a plain body and as a whole mail, gives the expected reply through
    # `workrate trim`'s function, or one of our listed differences explains it; the two exact suites match.
    folder = shared_path("corpora", suite)
    cases = load_corpus(folder)
    assert len(cases) == SUITES[suite]
    failures, differences = [], {}
    for case in cases:
        body = case.plain if case.plain is not None else case.html or ""
        for form, data in (("plain", body.encode()), ("mail", as_mail(case))):
            if form == "plain" and case.plain is None:
                continue  # an HTML case only comes as a mail
            found = verdict(case, preview_reply(data))
            if found is None:
                continue
            if found and suite not in EXACT_SUITES:
                differences.setdefault(found, set()).add(case.name)
            else:
                failures.append(f"{case.name} ({form})")
    assert not failures, f"{len(failures)} of {len(cases)} cases fail: {failures[:20]}"
    print(suite, {name: len(names) for name, names in differences.items()})


def test_suites_are_in_place_or_skipped():
    # The suites are read where they are; the test above skips cleanly when ../shared is absent.
    if not SHARED.exists():
        pytest.skip("../shared is absent")
    assert all((SHARED / "corpora" / suite).is_dir() for suite in SUITES)
