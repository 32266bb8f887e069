"""Reply-trimming accuracy on folders of cases, ours against email-reply-parser in the same run.

Usage: python bench/reply_accuracy.py --corpus ../shared/corpora/reply-trimmer [--corpus DIR ...] [--verbose]
       python bench/reply_accuracy.py --shared ../shared/corpora   (every shared suite in one Markdown table:
                                                    exact, within a listed difference, ms per message)
       python bench/reply_accuracy.py --stress     (1 MB hostile bodies: ms for ours and the baseline,
                                                    their ratio, and whether ours stays under 100 ms)

A corpus folder holds NAME.input.txt (a body), NAME.input.html (an HTML-only body) or NAME.input.eml
(a whole mail) and NAME.expected.txt, directly or under cases/. Texts are compared after normalising line
ends, trailing spaces and outer blank lines. Prints, per corpus: cases, exact matches, mean similarity
(difflib ratio) and ms per message, for our trimmer and email-reply-parser, and the ratio.
"""
from __future__ import annotations

import argparse
import difflib
import email
import email.policy
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from email_reply_parser import EmailReplyParser  # noqa: E402

from gateway.inbound.extract import clear_caches, reply_from_parts  # noqa: E402
from gateway.inbound.learned_signatures import cut_from  # noqa: E402

REPEAT_FOR_TIMING = 5  # each case is trimmed this many times; the timing is the mean


@dataclass(frozen=True)
class Case:
    name: str
    plain: str | None
    html: str | None
    expected: str


def normalise(text: str) -> str:
    """CRLF/CR → LF, trailing whitespace stripped from each line, outer blank lines dropped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def mail_bodies(raw: bytes) -> tuple[str | None, str | None]:
    """The first text/plain and text/html bodies of a whole mail (attachments skipped)."""
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    plain = html = None
    for part in mail.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        try:
            body = part.get_content()
        except (LookupError, ValueError):
            body = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
        if kind == "text/plain" and plain is None:
            plain = body
        elif kind == "text/html" and html is None:
            html = body
    return plain, html


def load_corpus(folder: Path) -> list[Case]:
    """Every case of a corpus folder, sorted by name."""
    base = folder / "cases" if (folder / "cases").is_dir() else folder
    cases = []
    for expected_path in sorted(base.glob("*.expected.txt")):
        name = expected_path.name[: -len(".expected.txt")]
        expected = expected_path.read_text(encoding="utf-8", errors="replace")
        txt, html, eml = (base / f"{name}.input.{ext}" for ext in ("txt", "html", "eml"))
        if txt.exists():
            cases.append(Case(name, txt.read_text(encoding="utf-8", errors="replace"), None, expected))
        elif html.exists():
            cases.append(Case(name, None, html.read_text(encoding="utf-8", errors="replace"), expected))
        elif eml.exists():
            plain, html = mail_bodies(eml.read_bytes())
            cases.append(Case(name, plain, html, expected))
    return cases


def ours(case: Case) -> str:
    return reply_from_parts(case.plain, case.html).text


def ours_with_learned(case: Case) -> str:
    """What the gateway's step does: the reply, then a sender's learned signatures looked for (a key that
    matches nothing, so every trailing block is examined)."""
    return cut_from(reply_from_parts(case.plain, case.html), frozenset({"0" * 64}))[0].text


def baseline(case: Case) -> str:
    from gateway.inbound.extract import html_to_text

    body = case.plain if case.plain is not None else html_to_text(case.html or "")
    return EmailReplyParser.parse_reply(body)


@dataclass(frozen=True)
class Score:
    exact: int
    similarity: float
    ms: float
    failures: list[tuple[str, str, str]]


def score(cases: list[Case], trimmer: Callable[[Case], str]) -> Score:
    exact, ratio, failures = 0, 0.0, []
    for case in cases:
        got, want = normalise(trimmer(case)), normalise(case.expected)
        if got == want:
            exact += 1
        else:
            failures.append((case.name, want, got))
        ratio += difflib.SequenceMatcher(None, got, want, autojunk=False).ratio()
    elapsed = 0.0
    for _ in range(REPEAT_FOR_TIMING):
        clear_caches()  # each pass starts cold, as a fresh process would
        start = time.perf_counter()
        for case in cases:
            trimmer(case)
        elapsed += time.perf_counter() - start
    ms = elapsed * 1000 / max(1, len(cases) * REPEAT_FOR_TIMING)
    return Score(exact, ratio / max(1, len(cases)), ms, failures)


MB = 1_000_000
LIMIT_MS = 100  # the limit for any 1 MB input
BASELINE_TIMEOUT = 10  # seconds the baseline gets per stress input before it is reported as "> limit"
STRESS_REPEAT = 5  # each stress input is trimmed this many times (cold caches); the best time is reported


def stress_inputs() -> dict[str, tuple[str | None, str | None]]:
    """Hostile bodies of about 1 MB each, as (plain, html)."""
    rng = random.Random(7)
    attribution_like = "".join(
        f"On {rng.randint(1, 28)} Jun 2017 at 12:{rng.randint(10, 59)} Kim{rng.randint(0, 99999)} <kim@a.test>\n"
        for _ in range(MB // 45))
    attribution = "On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n"
    quote_line = "> a line of the long quoted history, again and again\n"
    return {
        "quote lines (20k)": ("Thanks!\n\n" + attribution + quote_line * (MB // 52), None),
        "answer below 20k quote lines": (attribution + quote_line * (MB // 52) + "\nMy answer.\n\n-- \nBob\n", None),
        "ordinary text lines": ("Hello there, this is just some ordinary text in a reply\n" * (MB // 56), None),
        "attribution-like lines": (attribution_like, None),
        "one 1 MB line": ("x" * MB, None),
        "'On ' repeated, 'wrote:'": ("On " * (MB // 3) + "wrote:", None),
        "header-like lines": ("From: a\nSent: b\n" * (MB // 16), None),
        "'a:' lines (header label)": ("a:\n" * (MB // 3), None),
        "separator lines": ("text\n-----\n" * (MB // 11), None),
        "1-char lines (500k)": ("a\n" * (MB // 2), None),
        "'@' lines (500k)": ("@\n" * (MB // 2), None),
        "supercite lines (333k)": ("a>\n" * (MB // 3), None),
        "'>' lines (500k)": ("hi\n" + ">\n" * (MB // 2), None),
        "blank lines (1M)": ("hi" + "\n" * MB + "there", None),
        "deep '>' quoting": ((">" * 2000 + " x\n") * 400, None),
        "fence lines": ("```\n" * (MB // 4), None),
        "sentences ending ':' (800 ch)": (("a. " * 266 + "x:\n") * (MB // 800), None),
        "'a-----b c d-----' lines": ("a-----b c d-----\n" * (MB // 17), None),
        "contact-like lines": (("Tel: +44 20 7946 0958\nwww.x.test\n\n" * (MB // 35)), None),
        "HTML bold words": (None, "<p>" + "<b>x</b> " * (MB // 9)),
        "HTML quote (45k elements)": (None, "<div>hi</div><blockquote type=cite>"
                                      + "<div>quoted line</div>" * (MB // 22) + "</blockquote>"),
        "HTML quote after 500 KB new": (None, "<div>" + "new text " * (MB // 18) + "</div>"
                                        + '<div class="gmail_quote">' + "<div>old</div>" * (MB // 28) + "</div>"),
        "HTML text paragraph": (None, "<p>hi " + "word " * (MB // 5)),
        "HTML unclosed links": (None, '<a href="https://x.test/">hi ' * (MB // 31)),
        "HTML nested links": (None, '<a href="https://x.test/"><span>hi ' * (MB // 33)),
        "HTML line breaks (200k)": (None, "a<br>" * (MB // 5)),
        "HTML nested divs (100k)": (None, "<div>" * 100_000 + "hi" + "</div>" * 100_000),
        "HTML unclosed comments": (None, "<p>hi</p>" + "<!--" * (MB // 4)),
        "HTML stray end tags": (None, "<p>hi</p>" + "</x " * (MB // 4)),
        "HTML '<' only": (None, "<p>hi</p>" + "<" * MB),
        "HTML character references": (None, "<p>hi</p>" + "&#65;" * (MB // 5)),
    }


def _time_ms(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def stress() -> None:
    """Print ms per hostile input for ours and for the baseline (run in a child process with a time limit),
    their ratio, and whether ours is under the issue's limit. The baseline converts HTML with our
    html_to_text, then runs email-reply-parser."""
    print(f"{'stress input (about 1 MB)':<30} {'ours ms':>8} {'baseline ms':>12} {'ours/base':>10} "
          f"{'< ' + str(LIMIT_MS) + ' ms':>9}")
    slow = 0
    for name, (plain, html) in stress_inputs().items():
        case = Case(name, plain, html, "")
        mine = min(_time_ms(lambda case=case: (clear_caches(), ours_with_learned(case))) for _ in range(STRESS_REPEAT))
        slow += mine >= LIMIT_MS
        verdict = "yes" if mine < LIMIT_MS else "NO"
        try:
            out = subprocess.run([sys.executable, __file__, "--baseline-stress", name], capture_output=True,
                                 text=True, timeout=BASELINE_TIMEOUT, check=True)
            base = float(out.stdout.strip())
            print(f"{name:<30} {mine:>8.1f} {base:>12.1f} {mine / base:>10.3f} {verdict:>9}")
        except subprocess.TimeoutExpired:
            limit = BASELINE_TIMEOUT * 1000
            print(f"{name:<30} {mine:>8.1f} {'>' + str(limit):>12} {'<' + f'{mine / limit:.4f}':>10} {verdict:>9}")
    print(f"{len(stress_inputs()) - slow} of {len(stress_inputs())} inputs under {LIMIT_MS} ms")


def shared_table(root: Path) -> None:
    """One Markdown table: per shared suite, cases, ours exact, ours exact or within a listed semantic
    difference (bench/reply_suites.py), email-reply-parser exact, and ms per message for both."""
    from reply_suites import SUITES, verdict

    print("| suite | cases | WorkRate exact | WorkRate within listed differences | email-reply-parser exact "
          "| WorkRate ms/msg | email-reply-parser ms/msg |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals = [0, 0, 0, 0]
    for suite in SUITES:
        cases = load_corpus(root / suite)
        if not cases:
            print(f"{root / suite}: no cases found", file=sys.stderr)
            continue
        mine, base = score(cases, ours), score(cases, baseline)
        within = sum(verdict(case, ours(case)) != "" for case in cases)
        for n, value in enumerate((len(cases), mine.exact, within, base.exact)):
            totals[n] += value
        print(f"| {suite} | {len(cases)} | {mine.exact} | {within} | {base.exact} | {mine.ms:.3f} | {base.ms:.3f} |")
    print(f"| all | {totals[0]} | {totals[1]} | {totals[2]} | {totals[3]} | | |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", action="append", default=[], type=Path, help="a folder of cases")
    parser.add_argument("--verbose", action="store_true", help="list our failures with a diff")
    parser.add_argument("--stress", action="store_true", help="time 1 MB hostile bodies")
    parser.add_argument("--shared", type=Path, help="the shared corpora folder: every suite in one table")
    parser.add_argument("--baseline-stress", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_stress:
        plain, html = stress_inputs()[args.baseline_stress]
        print(min(_time_ms(lambda: baseline(Case("", plain, html, ""))) for _ in range(STRESS_REPEAT)))
        return 0
    if not args.corpus and not args.stress and not args.shared:
        parser.error("give --corpus DIR (one or more), --shared DIR and/or --stress")
    if args.shared:
        shared_table(args.shared)
        if not args.corpus and not args.stress:
            return 0
    print(f"{'corpus':<24} {'trimmer':<20} {'cases':>5} {'exact':>5} {'similarity':>10} {'ms/msg':>8}")
    for folder in args.corpus:
        cases = load_corpus(folder)
        if not cases:
            print(f"{folder}: no cases found", file=sys.stderr)
            continue
        mine, base = score(cases, ours), score(cases, baseline)
        label = folder.name
        print(f"{label:<24} {'workrate':<20} {len(cases):>5} {mine.exact:>5} {mine.similarity:>10.3f} {mine.ms:>8.3f}")
        print(f"{label:<24} {'email-reply-parser':<20} {len(cases):>5} {base.exact:>5} "
              f"{base.similarity:>10.3f} {base.ms:>8.3f}")
        ratio_exact = mine.exact / base.exact if base.exact else float("inf")
        ratio_ms = mine.ms / base.ms if base.ms else float("inf")
        print(f"{label:<24} {'ratio ours/baseline':<20} {'':>5} {ratio_exact:>5.2f} "
              f"{mine.similarity / max(base.similarity, 1e-9):>10.2f} {ratio_ms:>8.2f}")
        if args.verbose:
            for name, want, got in mine.failures:
                print(f"\n--- FAIL {label}/{name}")
                diff = difflib.unified_diff(want.split("\n"), got.split("\n"), "expected", "ours", lineterm="")
                print("\n".join(diff))
    if args.stress:
        stress()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
