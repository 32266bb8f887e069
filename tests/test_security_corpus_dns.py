"""SENDER_CHECKS = dns against the shared incoming corpus (Discourse's fixtures, ../shared/corpora/incoming)
with DNS answering nothing (no SPF, DKIM key or DMARC record: "none", as for a domain that publishes none):
every fixture must get the outcome it gets with the checks off, so that turning them on refuses no
legitimate mail. (Real mail with real records is covered by tests/test_security_sender.py's zone data.)"""
from __future__ import annotations

from typing import Any

import pytest
import test_incoming_corpus as corpus
from dns_fake import ZoneResolver

from gateway.inbound.mail_auth import use_resolver


@pytest.mark.parametrize("entry", corpus._cases())
def test_incoming_corpus_with_sender_checks_and_no_dns_answers(entry: Any, settings: Any, people: Any,
                                                               make: Any) -> None:
    settings = settings.replace(sender_checks="dns")
    silent = ZoneResolver({})
    for domain in ("reply.test", "bar.com"):  # the two settings the corpus test runs the gateway with
        use_resolver(settings.replace(trusted_authserv_id=corpus.TRUSTED_AUTHSERV_ID, reply_domain=domain), silent)
    corpus.test_incoming_corpus(entry, settings, people, make)
    # A fixture we deliberately drop before authentication (the corpus test's DIVERGENCES) asks nothing.
    if entry is not None and entry["outcome"] == "post" and entry["file"] not in corpus.DIVERGENCES:
        assert silent.asked, "the checks ran"  # SPF and DMARC were looked up, and found nothing
