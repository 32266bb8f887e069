"""note_client_away: a client contact's out-of-office reply is not posted; it notes that they are away.

Only a mail that would be posted as theirs notes it: the same authenticate_sender as a reply (their own
reply address, From their own address, Messages access, the sender checks), so nobody else can set a
contact away. Sieve-style vacation responders answer the envelope sender instead, our bounce+TOKEN@
address: such a reply notes its writer only when the token is that of a notification sent to that very
contact and From is their address (authenticate_bounce_reply: the same checks, the bounce token standing in
for the reply token; both are secrets only that contact's mailbox received). Any other auto-reply is
dropped as before, and never refused (an auto-responder answered with a refusal writes yet another mail).
The note is written with the mail's row in the inbound log (store.py record_row calls write_away), and its
return date is read off the text in a worker thread (read_return_date: dateparser's first use of a language
takes a while) before that. Nobody is notified.
"""
from __future__ import annotations

import logging

from gateway.errors import (
    AutoReply,
    ClientAway,
    Outcome,
    Rejected,
    SlowDown,
    WorkspaceArchived,
    WrongSender,
)
from gateway.inbound.authenticate import (
    authenticate_sender,
    check_may_post,
    check_sender_domain,
    check_sender_headers,
)
from gateway.inbound.extract import reply_from_parts
from gateway.inbound.mail import BOUNCE, InboundMail, Recipient, Target
from gateway.inbound.return_date import UNTIL, return_date
from storage.away import record_away
from storage.mail_log import NOTIFICATION, OutboxEmail
from storage.models import CLIENT, Thread, User, Workspace

log = logging.getLogger(__name__)


def note_client_away(mail: InboundMail) -> None:
    """Step: an out-of-office reply (marked by drop_automatic_mail) from a client contact -> ClientAway, any
    other -> AutoReply; both answered 250 and not posted."""
    if not mail.out_of_office:
        return
    try:
        if any(r.kind != BOUNCE for r in mail.recipients):
            authenticate_sender(mail)
        else:
            authenticate_bounce_reply(mail)
    except (Rejected, SlowDown) as e:
        raise AutoReply(detail=f"not noted as away: {e.reason} {e.detail}".strip()[:300]) from e
    if mail.hold:  # a reply would be held for the sender to confirm: not proven theirs, so not noted
        raise AutoReply(detail=f"not noted as away: unconfirmed sender ({mail.hold})"[:300])
    clients = sorted({t.author.id for t in mail.targets if t.author.role == CLIENT})
    if not clients:
        raise AutoReply(detail="not from a client contact")
    mail.away_user_ids = clients
    raise ClientAway(detail="no return date given")


def authenticate_bounce_reply(mail: InboundMail) -> None:
    """An auto-reply sent to our notifications' bounce addresses only: its targets are the client contacts
    those notifications went to, when From is that contact's own address (the address the email went to as
    well); otherwise the refusal authenticate_sender would give (here only logged: the mail is dropped)."""
    check_sender_headers(mail)
    tokens = {r.outbox_email_id: r for r in mail.recipients if r.kind == BOUNCE and r.outbox_email_id}
    rows = (OutboxEmail.select(OutboxEmail, User, Thread).join(User).switch(OutboxEmail).join(Thread)
            .where(OutboxEmail.id.in_(list(tokens)) & (OutboxEmail.kind == NOTIFICATION)
                   & (OutboxEmail.internal == False)))  # noqa: E712
    own = []
    for row in rows:
        user, thread = row.recipient, row.thread
        if user is None or thread is None or user.role != CLIENT or user.email != mail.from_address \
                or row.to_address.strip().lower() != mail.from_address:
            continue
        own.append(Recipient(tokens[row.id].address, BOUNCE, token=tokens[row.id].token, user_id=user.id,
                             thread_id=thread.id, outbox_email_id=row.id, user=user, thread=thread))
    if not own:
        raise WrongSender(detail=f"From {mail.from_address} (bounce address)")
    if mail.settings.sender_checks == "dns":
        check_sender_domain(mail, own)
    by_thread: dict[int, Target] = {}
    for r in own:
        check_may_post(r.user, r.thread)
        archived = Workspace.select(Workspace.archived_at).where(Workspace.id == r.thread.workspace_id).scalar()
        if archived is not None:
            raise WorkspaceArchived()
        by_thread.setdefault(r.thread.id, Target(thread=r.thread, author=r.user, internal=False, dedup_key=r.token))
    mail.targets = list(by_thread.values())


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
