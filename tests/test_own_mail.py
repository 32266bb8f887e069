"""What of a trimmed part may be restored into a message: never a quote of our own email (its reply address,
links and context), always the writer's own signature above it (gateway/inbound/own_mail.py)."""
from __future__ import annotations

import pytest

from gateway.inbound.own_mail import restorable_part

SIGNATURE = "--\nBob Stone\nAcme"


@pytest.mark.parametrize("quote", [
    # Gmail's attribution on one line, and wrapped after "<"
    "On Thu, Dec 3, 2026 at 10:00 AM WorkRate <reply+SECRET@reply.test> wrote:\n> ##- Please type your reply"
    " above this line -##",
    "On Thu, Dec 3, 2026 at 10:00 AM WorkRate <\nreply+SECRET@reply.test> wrote:\n> hello",
    "On Thu, Dec 3, 2026 at 10:00 AM WorkRate\n<reply+SECRET@reply.test> wrote:\n> hello",
    # Outlook's header block, and a quote with no attribution: our marker alone
    "From: WorkRate <reply+SECRET@reply.test>\nSent: Thursday\nSubject: Acme Co",
    "> ##- Please type your reply above this line -##\n> Open: http://app.test/login/SECRET",
    # a link to the product, whatever the quote depth
    ">> see https://APP.test/w/acme#m-3",
])
def test_the_writers_signature_stays_and_our_email_goes(quote: str) -> None:
    part = restorable_part(f"{SIGNATURE}\n{quote}", reply_domain="reply.test", base_url="https://app.test")
    assert part == SIGNATURE


def test_a_trimmed_part_without_our_email_is_restored_whole() -> None:
    trimmed = f"{SIGNATURE}\n\nOn Mon, Kim <kim@agency.test> wrote:\n> the plan"
    assert restorable_part(trimmed + "\n\n", reply_domain="reply.test", base_url="http://app.test") == trimmed


def test_only_our_email_leaves_nothing() -> None:
    assert restorable_part("On Mon, WorkRate <reply+x@reply.test> wrote:\n> hi", reply_domain="reply.test",
                           base_url="") == ""
