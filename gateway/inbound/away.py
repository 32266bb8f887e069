"""note_client_away: a client contact's out-of-office reply is not posted; it notes that they are away.

Only a mail that would be posted as theirs notes it: the same authenticate_sender as a reply (their own
reply address, From their own address, Messages access, the sender checks), so nobody else can set a
contact away. Any other auto-reply is dropped as before, and never refused (an auto-responder answered
with a refusal writes yet another mail). The note is written with the mail's row in the inbound log
(store.py record_row calls write_away), and its return date is read off the text in a worker thread
(read_return_date: dateparser's first use of a language takes a while) before that. Nobody is notified.
"""
from __future__ import annotations

import logging

from gateway.errors import AutoReply, ClientAway, Outcome, Rejected, SlowDown
from gateway.inbound.authenticate import authenticate_sender
from gateway.inbound.extract import reply_from_parts
from gateway.inbound.mail import InboundMail
from gateway.inbound.return_date import UNTIL, return_date
from storage.away import record_away
from storage.models import CLIENT

log = logging.getLogger(__name__)


def note_client_away(mail: InboundMail) -> None:
    """Step: an out-of-office reply (marked by drop_automatic_mail) from a client contact -> ClientAway, any
    other -> AutoReply; both answered 250 and not posted."""
    if not mail.out_of_office:
        return
    try:
        authenticate_sender(mail)
    except (Rejected, SlowDown) as e:
        raise AutoReply(detail=f"not noted as away: {e.reason} {e.detail}".strip()[:300]) from e
    if mail.hold:  # a reply would be held for the sender to confirm: not proven theirs, so not noted
        raise AutoReply(detail=f"not noted as away: unconfirmed sender ({mail.hold})"[:300])
    clients = sorted({t.author.id for t in mail.targets if t.author.role == CLIENT})
    if not clients:
        raise AutoReply(detail="not from a client contact")
    mail.away_user_ids = clients
    raise ClientAway(detail="no return date given")


def read_return_date(mail: InboundMail, outcome: Outcome) -> None:
    """The return date the auto-reply gives, onto mail (and into the outcome's detail, for the inbound log)."""
    parsed = mail.parsed
    assert parsed is not None
    try:
        text = reply_from_parts(parsed.plain, parsed.html, parsed.header("subject")).post_text
        found = return_date(f"{mail.subject}\n{text}", mail.received_at.date())
    except Exception:  # the contact is away all the same, with no date: never a 451 for an auto-reply
        log.exception("could not read the return date of an auto-reply from %s", mail.from_address)
        return
    if found is None:
        return
    mail.away_back_on, mail.away_said_until = found.back_on, found.said == UNTIL
    outcome.detail = f"back on {found.back_on.isoformat()} ({' '.join(found.phrase.split())})"[:300]


def write_away(mail: InboundMail, inbound_email_id: int) -> None:
    """Notes the mail's client contacts as away, in the transaction that writes its inbound log row."""
    for user_id in mail.away_user_ids:
        record_away(user_id, since=mail.received_at, back_on=mail.away_back_on, said_until=mail.away_said_until,
                    inbound_email_id=inbound_email_id)
