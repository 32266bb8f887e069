"""Reply extraction on the shared corpora other trimmers test themselves with (../shared/corpora): every case
of reply-trimmer (Discourse's fixtures) and email-reply-parser (GitHub's and Zapier's) gives exactly the
expected reply. Skipped cleanly where ../shared is not on the machine; corpus files are only read in place."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import SHARED, shared_path

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))  # after the project: bench/web.py is no package
from reply_accuracy import load_corpus, normalise, ours  # noqa: E402

CORPORA = {"reply-trimmer": 64, "email-reply-parser": 21}


def _case_ids() -> list[object]:
    params: list[object] = []
    for corpus in CORPORA:
        folder = SHARED / "corpora" / corpus
        names = [case.name for case in load_corpus(folder)] if folder.is_dir() else []
        params += [pytest.param(corpus, name, id=f"{corpus}/{name}") for name in names]
        if not names:
            params.append(pytest.param(corpus, None, id=f"{corpus}/absent"))
    return params


@pytest.mark.parametrize("corpus", list(CORPORA))
def test_corpus_is_complete(corpus):
    # Behaviour: the whole corpus is read (every case has its input and expected text).
    assert len(load_corpus(shared_path("corpora", corpus))) == CORPORA[corpus]


@pytest.mark.parametrize("corpus, name", _case_ids())
def test_corpus_case(corpus, name):
    # Behaviour: our trimmer gives the corpus's expected reply exactly (after its README's normalisation).
    folder = shared_path("corpora", corpus)
    if name is None:
        pytest.skip(f"{folder} has no cases")
    case = next(case for case in load_corpus(folder) if case.name == name)
    assert normalise(ours(case)) == normalise(case.expected)
