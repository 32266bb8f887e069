"""The shared reply-parser suites (../shared/corpora) and the semantic differences between their expectations
and ours: one table of rules, each decided by the kind of input and output (never by a case's name), and
each checking that our reply is what our semantics say. Used by bench/reply_accuracy.py --shared and
tests/test_extract_suites.py."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reply_accuracy import Case, normalise

from gateway.inbound.footers import is_closing
from gateway.inbound.signatures import is_dash_name

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


def _forward_kept(want: Lines, ours: Lines, source: str) -> tuple[Lines, Lines] | None:
    # ours ends with the forwarded message as a collapsed block (":::" container) holding the forwarded
    # text; the reply above it, or the forwarded text when nothing was written above, is the expected reply.
    at = next((n for n, line in enumerate(ours) if line.startswith(":::") and "Forwarded message" in line), None)
    if at is None or not ours[-1].strip(":") == "":
        return None
    if at:
        return want, ours[:at]
    body = [line for line in ours[at + 1:-1] if not line.startswith(("**From:**", "**Date:**", "**Subject:**"))]
    return want, body


@dataclass(frozen=True)
class Difference:
    reason: str
    undo: Callable[[Lines, Lines, str], tuple[Lines, Lines] | None]  # (expected, ours) with the difference undone
    in_exact_suites: bool = False  # also allowed where the reply itself must match exactly


# Where a suite's expectation and our semantics differ on purpose: one rule per kind of input. A case may
# need two of them (a closing under an inline answer); after undoing them, ours must be the expected reply.
DIFFERENCES = {
    "forwarded message": Difference("a forward is content: the forwarded message is posted below the note as a "
                                    "collapsed block; quotequail cuts it like a quote, and Discourse's reply "
                                    "(the note) is still exact", _forward_kept, in_exact_suites=True),
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
