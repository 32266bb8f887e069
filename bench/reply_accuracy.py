"""Reply-trimming accuracy on folders of cases, ours against email-reply-parser in the same run.

Usage: python bench/reply_accuracy.py --corpus ../shared/corpora/reply-trimmer [--corpus DIR ...] [--verbose]

A corpus folder holds NAME.input.txt (a body) or NAME.input.eml (a whole mail) and NAME.expected.txt,
directly or under cases/. Texts are compared after normalising line ends, trailing spaces and outer blank
lines. Prints, per corpus: cases, exact matches, mean similarity (difflib ratio) and ms per message.
"""
from __future__ import annotations

import argparse
import difflib
import email
import email.policy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from email_reply_parser import EmailReplyParser  # noqa: E402

from gateway.inbound.extract import reply_from_parts  # noqa: E402

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
        txt, eml = base / f"{name}.input.txt", base / f"{name}.input.eml"
        if txt.exists():
            cases.append(Case(name, txt.read_text(encoding="utf-8", errors="replace"), None, expected))
        elif eml.exists():
            plain, html = mail_bodies(eml.read_bytes())
            cases.append(Case(name, plain, html, expected))
    return cases


def ours(case: Case) -> str:
    return reply_from_parts(case.plain, case.html).text


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
    start = time.perf_counter()
    for _ in range(REPEAT_FOR_TIMING):
        for case in cases:
            trimmer(case)
    ms = (time.perf_counter() - start) * 1000 / max(1, len(cases) * REPEAT_FOR_TIMING)
    return Score(exact, ratio / max(1, len(cases)), ms, failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", action="append", required=True, type=Path, help="a folder of cases")
    parser.add_argument("--verbose", action="store_true", help="list our failures with a diff")
    args = parser.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
