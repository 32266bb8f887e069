"""What became of an inbound mail, as objects that carry their SMTP reply.

Every outcome has a reply code, an enhanced status code (RFC 3463), a sentence a person understands
and a short machine word (`reason`) recorded on the InboundEmail row:

- `Accepted`   250: the reply was posted.
- `Dropped`    250: recorded, nothing else happens (auto-replies, bounces, our own loop, duplicates).
               Never a rejection: answering those with 5xx would make mail servers send more mail.
- `Rejected`   5xx: refused for good, with the reason in the sentence.
- `Deferred`   4xx: not stored; the sender's server retries later.

The steps raise these (Salmon's SMTPError, Mailman's DiscardMessage/RejectMessage); only
gateway/smtp/ turns them into wire text, through `smtp_reply`. Tests assert against `.code` and
`.text` of these classes, never against retyped strings.

If you add a new error, you need to
* subclass the right outcome below and give it `code`, `status`, `reason` and a `text` a person
  understands (ASCII, one line, no personal data: it goes back to the sender's mail server);
* add a mail to tests/emails/ and a case to tests/test_pipeline.py (and, when it can happen at an
  SMTP verb, to tests/test_smtp_gateway.py);
* if it is raised at RCPT time, make gateway/smtp/handler.py's handle_RCPT catch it (it catches InboundError).
"""
from __future__ import annotations

import re

from storage.mail_log import ACCEPTED, DEFERRED, DROPPED, REJECTED

_UNSAFE_REPLY_CHARS = re.compile(r"[\x00-\x1f\x7f]+")


class Outcome:
    """The result of one DATA transaction (or one refused RCPT)."""

    outcome: str = ACCEPTED
    code: int = 250
    status: str = "2.0.0"
    reason: str = "posted"
    text: str = "Thank you, your reply was posted."

    def __init__(self, text: str | None = None, *, detail: str = "") -> None:
        if text is not None:
            self.text = text
        # `detail` is for the log and the InboundEmail row only; it never goes on the wire.
        self.detail = detail

    @property
    def smtp_reply(self) -> str:
        """The single reply line, e.g. '550 5.7.1 Sentence.' (control characters removed)."""
        return f"{self.code} {self.status} {_UNSAFE_REPLY_CHARS.sub(' ', self.text)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.smtp_reply!r}>"


class Accepted(Outcome):
    """The reply was committed as a post (or several, one per thread)."""


class InboundError(Outcome, Exception):
    """Base of every outcome other than Accepted; raised by pipeline steps and RCPT checks."""

    def __init__(self, text: str | None = None, *, detail: str = "") -> None:
        Outcome.__init__(self, text, detail=detail)
        Exception.__init__(self, self.smtp_reply)


# --- Dropped: answered 250, recorded, no further effect ---------------------------------------------

class Dropped(InboundError):
    outcome = DROPPED
    code = 250
    status = "2.0.0"
    reason = "dropped"
    text = "Received, but it is not posted."


class AutoReply(Dropped):
    reason = "auto_reply"
    text = "Received; automatic replies are not posted."


class ClientAway(AutoReply):
    """A client contact's out-of-office reply: not posted; the team is shown that they are away
    (gateway/inbound/away.py). Its sender is told exactly what any auto-reply is told."""

    reason = "away"


class Bounce(Dropped):
    reason = "bounce"
    text = "Received; delivery reports are recorded, not posted."


class OwnLoop(Dropped):
    reason = "loop"
    text = "Received; mail sent by WorkRate itself is not posted again."


class Duplicate(Dropped):
    reason = "duplicate"
    text = "Received; this reply was already posted."


class Held(Dropped):
    """Stored, not posted: kept in storage/held.py (store.py record_row writes it with the mail's row)."""

    reason = "held"
    hold_kind = ""


class HeldForConfirmation(Held):
    reason = "held_confirm"
    hold_kind = "confirm"
    text = ("Received; it is posted once its sender confirms it, with the link we have emailed to them, "
            "because this mail could not be shown to come from its sender.")


class HeldAsLoop(Held):
    reason = "held_loop"
    hold_kind = "loop"
    text = ("Received but held, not posted: this sender wrote into this conversation by email many times in a "
            "few minutes, which looks like a mail loop. The team can see it in the mail log.")


# --- Rejected: 5xx ----------------------------------------------------------------------------------

class Rejected(InboundError):
    outcome = REJECTED
    code = 550
    status = "5.7.1"
    reason = "rejected"
    text = "This mail cannot be posted."


class UnknownReplyAddress(Rejected):
    status = "5.1.1"
    reason = "unknown_address"
    text = ("This reply address is not known here. Please reply to a recent notification from "
            "WorkRate, or post in the web app.")


class RevokedReplyAddress(Rejected):
    status = "5.1.1"
    reason = "revoked_address"
    text = ("This reply address is no longer valid. Please reply to a recent notification from "
            "WorkRate, or post in the web app.")


class NoRelay(Rejected):
    status = "5.1.1"
    reason = "no_relay"
    text = "This server only receives replies to WorkRate notifications; it does not relay mail to other addresses."


class UserDeactivated(Rejected):
    reason = "deactivated"
    text = "The account this reply address belongs to is deactivated, so replies to it cannot be posted."


class AccessLost(Rejected):
    reason = "access_lost"
    text = ("The person this reply address belongs to no longer has access to Messages in this workspace, "
            "so the reply cannot be posted.")


class WorkspaceArchived(Rejected):
    reason = "archived"
    text = ("This conversation is archived, so replies to it are no longer posted. Please contact the agency "
            "another way if you need them.")


class WrongSender(Rejected):
    reason = "wrong_sender"
    text = ("This reply address belongs to someone else: replies are only posted when they come from "
            "the address the notification was sent to.")


class NoSender(Rejected):
    reason = "no_sender"
    text = "This mail has no readable From address, so we cannot tell who wrote it."


class SeveralSenders(Rejected):
    status = "5.7.1"
    reason = "several_senders"
    text = "This mail names several senders in From; a reply is posted only when it comes from one person."


class NotAuthenticated(Rejected):
    status = "5.7.1"
    reason = "not_authenticated"
    text = ("This mail failed its sender domain's SPF or DKIM check, or could not be shown to come from "
            "its sender, so it is not posted. Please reply from your usual mail account.")


class DmarcFailed(Rejected):
    status = "5.7.1"
    reason = "dmarc_fail"
    text = "This mail failed the sender domain's DMARC check, so we cannot trust who sent it."


class EmptyReply(Rejected):
    status = "5.6.0"
    reason = "empty"
    text = ("Your reply has no text of its own once the quoted notification is removed, and no attachment. "
            "Please write your answer above the quoted text.")


class ReplyTooLong(Rejected):
    status = "5.6.0"
    reason = "too_long"
    text = "Your reply is longer than a message can be (100,000 characters). Please shorten it or attach it as a file."


class TooLarge(Rejected):
    code = 552
    status = "5.3.4"
    reason = "too_large"
    text = "This mail is larger than this server accepts. Please send smaller attachments."


class TooManyAttachments(Rejected):
    code = 552
    status = "5.3.4"
    reason = "too_many_attachments"
    text = "This mail has more attachments than a reply can carry (100). Please send fewer files at once."


class LineTooLong(Rejected):
    status = "5.6.0"
    reason = "line_too_long"
    text = "A line of this mail is longer than this server accepts, so it cannot be read."


class NotPostable(Rejected):
    reason = "not_postable"
    text = "This reply cannot be posted."


class OverQuota(Rejected):
    code = 552
    status = "5.2.2"
    reason = "over_quota"
    text = "The files of this reply would go over the storage allowed here; please share a link instead."


# --- Deferred: 451, the sender's server retries -------------------------------------------------------

class Deferred(InboundError):
    outcome = DEFERRED
    code = 451
    status = "4.3.0"
    reason = "error"
    text = "Your reply could not be stored just now; your mail server will try again."


class DatabaseBusy(Deferred):
    reason = "database"
    text = "Our database is busy just now; your mail server will try again shortly."


class ProcessingTimeout(Deferred):
    reason = "timeout"
    text = "Processing this mail took too long; your mail server will try again later."


class TooManyRecipients(Deferred):
    code = 452
    status = "4.5.3"
    reason = "too_many_recipients"
    text = "Too many recipients in one mail; please send the rest separately."


class TooManyConnections(Deferred):
    code = 421
    status = "4.3.2"
    reason = "busy"
    text = "Too many connections just now; please try again later."


class TooManyFromYou(Deferred):
    """SMTP_CONNECTIONS_PER_PEER connections from this address are open already."""

    code = 421
    status = "4.7.0"
    reason = "busy_peer"
    text = "Too many connections from your address at once; please use fewer and try again later."


class NoProgress(Deferred):
    """A connection that delivered no mail for SMTP_IDLE_SESSION_SECONDS or SMTP_COMMANDS_PER_MAIL commands."""

    code = 421
    status = "4.7.0"
    reason = "no_progress"
    text = "This connection has sent no mail for too long; please connect again when you have mail to send."


class ShuttingDown(Deferred):
    code = 421
    status = "4.3.2"
    reason = "shutdown"
    text = "This server is restarting; please try again shortly."


class SlowDown(Deferred):
    """Too many mails in a short time from one sender, network or reply address (gateway/inbound/authenticate.py)."""

    status = "4.7.1"
    reason = "slow_down"
    text = "Too many mails in a short time; please slow down, your mail server will try again later."
