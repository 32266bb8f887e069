"""Every reply-parser test suite in ../shared/corpora (read in place, skipped when absent) passes through
`workrate trim`'s function, as a plain body and as a whole mail: each case gives the suite's expected reply,
or falls under one of the semantic differences listed in bench/reply_suites.py.

A difference is decided by a rule on the kind of input and output (never by a case's name), and each rule
checks that our reply is what our semantics say, so a listed case still fails when we get it wrong."""
from __future__ import annotations

import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import SHARED, shared_path

from gateway.inbound.preview import preview_reply

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))  # after the project: bench/web.py is no package
from reply_accuracy import Case, load_corpus  # noqa: E402
from reply_suites import DIFFERENCES, EXACT_SUITES, SUITES, verdict  # noqa: E402


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
            if found and (suite not in EXACT_SUITES or all(DIFFERENCES[name].in_exact_suites
                                                             for name in found.split(" + "))):
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
