"""Who is speaking: reply addresses resolved at RCPT time, and the authenticate_sender step at DATA time.

A reply is posted as the owner of its reply token, and only when the From address is the owner's own;
the token's audience (internal or not) decides the post's visibility. A client must still have Messages
access and every author must still be active. Behind a trusted MTA (TRUSTED_AUTHSERV_ID), a DMARC
failure it reports is refused. SENDER_CHECKS = dns adds the gateway's own SPF/DKIM/DMARC (mail_auth.py);
a mail that cannot show who sent it where that matters (reply@, a team member's address from another
envelope) is marked to be held until its sender confirms (mail.hold; hold.py). Rates: POSTS_PER_MINUTE per
person and REPLY_PLAIN_PER_HOUR per sender and network, counted where every gateway process sees them.
"""
from __future__ import annotations

import email.utils
import re

from config import Settings
from gateway.addresses import domain_of, parse_bounce_address, parse_reply_address
from gateway.errors import (
    AccessLost,
    DmarcFailed,
    NoRelay,
    NoSender,
    NotAuthenticated,
    RevokedReplyAddress,
    SeveralSenders,
    SlowDown,
    UnknownReplyAddress,
    UserDeactivated,
    WorkspaceArchived,
    WrongSender,
)
from gateway.inbound.mail import BOUNCE, PLAIN, REPLY, InboundMail, Recipient, Target
from gateway.inbound.mail_auth import evaluate, resolver_for
from gateway.inbound.parse import ParsedMail, references_of
from storage.db import database
from storage.episodes import episodes_by_root
from storage.held import CONFIRM
from storage.mail_log import NOTIFICATION, OutboxEmail
from storage.models import CLIENT, Membership, ReplyToken, Thread, User, Workspace
from storage.networks import network_of, peer_address
from storage.post_limits import may_post_now
from storage.rate_limits import hit as rate_hit
from storage.tokens import hash_secret

PLAIN_LOCAL_PART = "reply"  # reply@REPLY_DOMAIN: a reply address whose +TOKEN was lost on the way
_DMARC_FAIL = re.compile(r"\bdmarc\s*=\s*fail\b", re.IGNORECASE)


# --- RCPT time -----------------------------------------------------------------------------------------

def resolve_recipient(address: str, settings: Settings) -> Recipient:
    """What an RCPT TO address stands for; raises the refusal (NoRelay, UnknownReplyAddress, …) otherwise."""
    domain = settings.reply_domain.lower().rstrip(".")
    clean = (address or "").strip().strip("<>").strip().lower()
    if len(clean) > 320 or domain_of(clean) != domain:
        raise NoRelay()
    token = parse_reply_address(clean, domain)
    if token:
        return _reply_recipient(clean, token)
    bounce_token = parse_bounce_address(clean, domain)
    if bounce_token:
        row = OutboxEmail.select(OutboxEmail.id).where(OutboxEmail.bounce_token == bounce_token).first()
        if row is None:
            raise UnknownReplyAddress()
        return Recipient(clean, BOUNCE, token=bounce_token, outbox_email_id=row.id)
    if clean.partition("@")[0] == PLAIN_LOCAL_PART:
        return Recipient(clean, PLAIN)
    raise UnknownReplyAddress()


def _reply_recipient(address: str, token: str) -> Recipient:
    cursor = database.execute_sql(_token_sql(), (hash_secret(token),))
    rows = cursor.fetchall()
    if not rows:
        raise UnknownReplyAddress()
    revoked_at, internal, user_id, email, name, role, active, thread_id, workspace_id, access, archived = rows[0]
    if revoked_at is not None:
        raise RevokedReplyAddress()
    if archived is not None:
        raise WorkspaceArchived()
    if not active:
        raise UserDeactivated()
    if role == CLIENT and not access:
        raise AccessLost()
    user = User(id=user_id, email=email, name=name, role=role, active=True)
    thread = Thread(id=thread_id, workspace=workspace_id)
    return Recipient(address, REPLY, token=token, user_id=user_id, thread_id=thread_id,
                     internal=bool(internal) and role != CLIENT, user=user, thread=thread)


# RCPT runs for every mail: its one query is built once per kind of database and reused.
_TOKEN_SQL: dict[type, str] = {}


def _token_sql() -> str:
    """Token, owner, thread and (for a client) Messages access, in one statement."""
    kind = type(database.obj)
    sql = _TOKEN_SQL.get(kind)
    if sql is None:
        access = (Membership.select(Membership.messages_access)
                  .where((Membership.user == User.id) & (Membership.workspace == Thread.workspace)))
        archived = Workspace.select(Workspace.archived_at).where(Workspace.id == Thread.workspace)
        query = (ReplyToken.select(ReplyToken.revoked_at, ReplyToken.internal, User.id, User.email, User.name,
                                   User.role, User.active, Thread.id, Thread.workspace, access.alias("access"),
                                   archived.alias("archived"))
                 .join(User).switch(ReplyToken).join(Thread)
                 .where(ReplyToken.token_hash == "token"))
        sql, _ = query.sql()
        _TOKEN_SQL[kind] = sql
    return sql


def check_may_post(user: User, thread: Thread) -> None:
    """Raises UserDeactivated or AccessLost when user may no longer post to thread."""
    if not user.active:
        raise UserDeactivated()
    if user.role == CLIENT:
        granted = (Membership.select(Membership.id)
                   .where((Membership.user == user.id) & (Membership.workspace == thread.workspace_id)
                          & (Membership.messages_access == True))  # noqa: E712
                   .exists())
        if not granted:
            raise AccessLost()


# --- DATA time -----------------------------------------------------------------------------------------

def check_sender_headers(mail: InboundMail) -> None:
    """What every way in asks of From first: no DMARC fail said by a trusted MTA, one sender, and one at all."""
    parsed = mail.parsed
    assert parsed is not None
    if dmarc_failed(parsed, mail.settings.trusted_authserv_id):
        raise DmarcFailed()
    if names_several_senders(parsed):
        raise SeveralSenders(detail=clip_header(parsed.header("from")))
    if not mail.from_address:
        raise NoSender()


def authenticate_sender(mail: InboundMail) -> None:
    """Step: decide the threads the reply goes to, as whom, for which audience; refuse other senders."""
    parsed = mail.parsed
    assert parsed is not None
    check_sender_headers(mail)
    candidates = [r for r in mail.recipients if r.kind == REPLY]
    if not candidates and any(r.kind == PLAIN for r in mail.recipients):
        check_plain_rate(mail)
        candidates = recipients_from_references(parsed)
        if not candidates:
            raise UnknownReplyAddress(detail="reply@ without a reference to one of our notifications")
    if not candidates:
        raise UnknownReplyAddress()
    own = [r for r in candidates if r.user is not None and r.user.email == mail.from_address]
    if not own:
        raise WrongSender(detail=f"From {mail.from_address}")
    if mail.settings.sender_checks == "dns":
        check_sender_domain(mail, own)
    elif needs_proof(mail, own):
        # Without our own checks there is no pass to go on: the person confirms by email instead.
        mail.hold = CONFIRM
        mail.auth = f"sender checks off -> held for confirmation: {needs_proof(mail, own)}"
    by_thread: dict[int, Target] = {}
    for r in own:
        if r.kind == PLAIN:
            check_may_post(r.user, r.thread)
        known = by_thread.get(r.thread.id)
        # Two addresses of one person for one thread: the internal audience wins, so a reply that went
        # to an internal note's address can never reach the client.
        if known is None or (r.internal and not known.internal):
            by_thread[r.thread.id] = Target(thread=r.thread, author=r.user, internal=r.internal, dedup_key=r.token)
    check_post_rate(mail, own)
    mail.targets = list(by_thread.values())


def check_sender_domain(mail: InboundMail, own: list[Recipient]) -> None:
    """SPF, DKIM and DMARC of the From domain (SENDER_CHECKS = dns); the decision goes into the inbound log.

    - DMARC fail under a quarantine or reject policy: refused.
    - An SPF or DKIM fail with no aligned pass: refused (a reply token is one person's secret, not proof).
    - No aligned pass ("none": no records, no DNS): a client's token posts, logged as unauthenticated; a
      team member's token from another envelope sender, and reply@ without a token (a Message-ID in
      In-Reply-To proves nothing), are held until the person confirms by email (needs_proof, hold.py).
    """
    parsed = mail.parsed
    assert parsed is not None
    raw = bytes(mail.raw) if mail.raw else b""
    result = evaluate(resolver_for(mail.settings), raw, ip=peer_address(mail.peer), helo="",
                      mail_from=(mail.mail_from or "").strip().lower(), from_domain=domain_of(mail.from_address),
                      dkim_signatures=len(parsed.headers.get("dkim-signature", ())) if raw else 0)
    mail.auth = result.summary()
    if result.dmarc == "fail" and result.policy in ("quarantine", "reject"):
        mail.auth += " -> refused: DMARC policy"
        raise DmarcFailed(detail=mail.auth)
    if result.fails_outright:
        mail.auth += " -> refused: authentication failed"
        raise NotAuthenticated(detail=mail.auth)
    if result.aligned_pass:
        mail.auth += " -> authenticated"
        return
    why = needs_proof(mail, own)
    if why:
        mail.hold = CONFIRM
        mail.auth += f" -> held for confirmation: {why}"
        return
    mail.auth += " -> unauthenticated, accepted on the reply address"


def needs_proof(mail: InboundMail, own: list[Recipient]) -> str:
    """Why a mail without an aligned SPF/DKIM pass must be confirmed by its sender before it is posted, or "".

    A Message-ID in In-Reply-To (reply@, no token) is copied into every reply and forward: it names a person
    but proves nothing. A team member's address speaks for the agency (and posts internal notes), so it asks
    for the envelope sender to be the very address in From as well.
    """
    if any(r.kind == PLAIN for r in own):
        return "reply@ without a reply address's token"
    envelope_is_from = (mail.mail_from or "").strip().lower() == mail.from_address
    if any(r.user is not None and r.user.role != CLIENT for r in own) and not envelope_is_from:
        return "a team member's address, envelope sender is not From"
    return ""


def names_several_senders(parsed: ParsedMail) -> bool:
    """Whether the mail has several From headers, or one naming several mailboxes ("From: team@…, client@…"
    was taken as its first address: whoever wrote it, it claims to be from more than one person)."""
    values = parsed.headers.get("from", ())
    if len(values) > 1:
        return True
    if not values or "," not in values[0] and values[0].count("@") < 2:
        return False
    try:
        pairs = email.utils.getaddresses([values[0][:10_000]])
    except Exception:
        return False
    return sum(1 for _, address in pairs if "@" in address) > 1


def clip_header(value: str) -> str:
    return " ".join(value.split())[:200]


PLAIN_WINDOW = 3600.0  # reply_plain_per_hour counts over this many seconds


def check_plain_rate(mail: InboundMail) -> None:
    """reply@ is open to anyone: at most REPLY_PLAIN_PER_HOUR mails per sender address and per network,
    counted in the database, so that every gateway process sees the same counts."""
    limit = mail.settings.reply_plain_per_hour
    sender = (mail.mail_from or "<>").strip().lower()[:320]
    network = network_of(peer_address(mail.peer))
    # The network first: once it is over, a stranger's new sender addresses add no rows of their own.
    if not rate_hit(f"plain-network:{network}", limit, PLAIN_WINDOW) \
            or not rate_hit(f"plain-sender:{hash_secret(sender)}", limit, PLAIN_WINDOW):
        raise SlowDown(detail=f"reply@ from {sender} ({network})")


def check_post_rate(mail: InboundMail, own: list[Recipient]) -> None:
    """At most POSTS_PER_MINUTE posts per person, by email as on the web, counted from the posts themselves
    (every process sees them). A reply address is one person's, so this bounds each address as well."""
    limit = mail.settings.posts_per_minute
    for user_id in {r.user.id for r in own}:
        if not may_post_now(User(id=user_id), limit):
            raise SlowDown(detail=f"more than {limit} posts a minute from {mail.from_address}")


def dmarc_failed(parsed: ParsedMail, trusted_authserv_id: str) -> bool:
    """Whether the trusted MTA's Authentication-Results header says dmarc=fail.

    Only the first (topmost, so newest) header naming the trusted authserv-id counts: a sender can write
    any header it likes further down.
    """
    trusted = (trusted_authserv_id or "").strip().lower()
    if not trusted:
        return False
    for value in parsed.headers.get("authentication-results", ()):
        fields = value.split(";", 1)[0].split()
        if fields and fields[0].lower() == trusted:
            return bool(_DMARC_FAIL.search(value))
    return False


def recipients_from_references(parsed: ParsedMail) -> list[Recipient]:
    """For reply@REPLY_DOMAIN: the person and thread of the client-visible notification that In-Reply-To or
    References names (our Message-IDs carry a keyed digest, so they cannot be guessed, but they are copied
    into every reply, so notifications of internal notes are never answered this way)."""
    ids = references_of(parsed)
    if not ids:
        return []
    wanted = [f"<{i}>" for i in ids]
    rows: dict[str, OutboxEmail] = {}
    for row in (OutboxEmail.select(OutboxEmail, User, Thread).join(User).switch(OutboxEmail).join(Thread)
                .where(OutboxEmail.mail_message_id.in_(wanted) & (OutboxEmail.kind == NOTIFICATION))
                .order_by(OutboxEmail.id)):
        if row.mail_message_id is not None:  # always: the query matched it
            rows.setdefault(row.mail_message_id, row)  # a batch shares one Message-ID: its lead row
    # A client that keeps only the start of References still names the episode's root (never sent itself).
    roots = {e.root_message_id: e for e in episodes_by_root(wanted)}
    for mid in wanted:  # nearest reference first: the notification this mail answers
        found = rows.get(mid)
        if found is None and mid in roots:
            root = roots[mid]
            if root.internal:
                return []
            return [Recipient(f"reply ({mid})", PLAIN, token=f"root:{root.id}", user_id=root.recipient.id,
                              thread_id=root.thread.id, internal=False, user=root.recipient, thread=root.thread)]
        if found is None or found.recipient is None or found.thread is None:  # a notification has both
            continue
        # An internal note is only ever answered through its internal-audience reply address: without the
        # token a forged reference could post as a team member, and a plain post would reach the client.
        # So a mail answering one is refused, not matched to an older, client-visible notification further
        # back in its References.
        if found.internal:
            return []
        return [Recipient(f"reply ({mid})", PLAIN, token=f"mid:{found.id}", user_id=found.recipient.id,
                          thread_id=found.thread.id, internal=False, user=found.recipient, thread=found.thread)]
    return []
