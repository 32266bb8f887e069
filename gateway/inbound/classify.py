"""drop_automatic_mail: mail that no person wrote is recorded and answered 250, never posted or refused.

Auto-replies, delivery reports and our own notifications coming back are Dropped, not Rejected: a
refusal would make their mail servers write yet another mail ("never reply to bounced emails",
Discourse's processor.rb). The predicates are pure and return values, like flanker's bounce.detect();
the step decides. The heuristics follow Discourse's `is_auto_generated?`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from gateway.errors import AutoReply, Bounce, OwnLoop
from gateway.inbound.mail import BOUNCE, InboundMail
from gateway.inbound.parse import ParsedMail
from gateway.markers import LOOP_HEADER

log = logging.getLogger(__name__)

# Header names set by auto-responders and robots. X-Auto-Response-Suppress is not one of them: Outlook
# puts it on ordinary mail written by people.
_AUTO_HEADER_NAME = re.compile(
    r"^(?:x-)?(?:[a-z0-9-]*-)?auto[-_]?(?:reply|replied|respond|responder|response|generated|submitted)"
    r"(?:-[a-z0-9-]*)?$|^x-(?:mail-autoreply|autoreply-from|ms-exchange-inbox-rules-loop|ms-exchange-generated-"
    r"message-source|holidayreply|machinegenerated)$")
_NOT_AUTO_HEADER_NAME = re.compile(r"^x-auto-response-suppress$")
_PRECEDENCE = re.compile(r"\b(?:bulk|junk|list|auto[_-]?reply)\b", re.IGNORECASE)
_ROBOT_SENDER = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|noreply[-_.][^@]*)@", re.IGNORECASE)
_BOUNCE_SENDER = re.compile(r"^(?:mailer[-_]?daemon|post[-_]?master|mail[-_]?delivery[-_]?(?:system|subsystem))@",
                            re.IGNORECASE)
# Subjects of out-of-office and automatic replies, in the languages our clients write in. Anchored at
# the start: a person's reply starts with "Re:", an auto-reply puts its own words first.
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[\s_-]*(?:reply|response|answer)\b|autoreply\b|out[\s-]+of[\s-]+(?:the[\s-]+)?office\b"
    r"|automatische[\s-]+antwort|abwesenheitsnotiz|abwesend\b|r[ée]ponse[\s-]+automatique|absen(?:t|ce)[\s-]+du[\s-]+bureau"
    r"|respuesta[\s-]+autom[áa]tica|fuera[\s-]+de[\s-]+la[\s-]+oficina|risposta[\s-]+automatica|fuori[\s-]+sede"
    r"|automatisch[\s-]+antwoord|resposta[\s-]+autom[áa]tica|ausente\b|autosvar|automatisk[\s-]+svar"
    r"|automaattinen[\s-]+vastaus|odpowied[źz][\s-]+automatyczna|automatick[áa][\s-]+odpov[ěe]ď"
    r"|автоматический[\s-]+ответ|otomatik[\s-]+yan[ıi]t|自动回复|自動回覆|自動応答|自動返信|자동[\s-]*응답)",
    re.IGNORECASE)
_UNDELIVERED_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:ed|able)|delivery[\s-]+(?:status[\s-]+notification|failure|has[\s-]+failed)|"
    r"returned[\s-]+mail|mail[\s-]+delivery[\s-]+failed|failure[\s-]+notice|non[\s-]?remis|unzustellbar)",
    re.IGNORECASE)
_DSN_STATUS = re.compile(r"^\s*status\s*:\s*([245])\.(\d{1,3})\.(\d{1,3})", re.IGNORECASE | re.MULTILINE)
_DSN_ACTION = re.compile(r"^\s*action\s*:\s*([a-z]+)", re.IGNORECASE | re.MULTILINE)
_DSN_DIAGNOSTIC = re.compile(r"^\s*diagnostic-code\s*:\s*(.{1,300})", re.IGNORECASE | re.MULTILINE)
_TEXT_ENHANCED_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_TEXT_REPLY_CODE = re.compile(r"(?<![\w.])([45])[0-5]\d(?=[\s-])")


@dataclass(frozen=True)
class BounceReport:
    """What a delivery report says (flanker's bounce.Result, reduced to what we act on)."""

    failed: bool  # delivery failed for good (Action: failed), as opposed to delayed or delivered
    hard: bool  # a permanent (5.x.x) failure: the address does not work
    status: str  # the enhanced status code, "" when none was found
    diagnostic: str  # the reporting server's own words, shortened


# What auto_reply_kind() tells apart: only a person's own auto-responder says the person is away.
OUT_OF_OFFICE = "out_of_office"  # vacation notices, auto-responders (RFC 3834 Auto-Submitted, X-Autoreply, subject)
MASS_MAIL = "mass_mail"  # Precedence: bulk, junk or list
ROBOT = "robot"  # a no-reply sender
READ_RECEIPT = "read_receipt"  # a message disposition notification: the person is there
_NOT_AWAY_PRECEDENCE = re.compile(r"\b(?:bulk|junk|list)\b", re.IGNORECASE)


def auto_reply_kind(parsed: ParsedMail, from_address: str = "") -> str | None:
    """Which kind of program wrote the mail (OUT_OF_OFFICE, MASS_MAIL, ROBOT, READ_RECEIPT), or None: a person."""
    headers = parsed.headers
    precedence = headers.get("precedence", ())
    if any(_NOT_AWAY_PRECEDENCE.search(v) for v in precedence):
        return MASS_MAIL
    if from_address and _ROBOT_SENDER.match(from_address):
        return ROBOT
    if parsed.content_type == "multipart/report" and parsed.report_type == "disposition-notification":
        return READ_RECEIPT
    submitted = headers.get("auto-submitted")
    if submitted and any(not v.strip().lower().startswith("no") for v in submitted):
        return OUT_OF_OFFICE
    if any(_PRECEDENCE.search(v) for v in precedence):
        return OUT_OF_OFFICE  # Precedence: auto_reply
    for name, values in headers.items():
        if _AUTO_HEADER_NAME.match(name) and not _NOT_AUTO_HEADER_NAME.match(name) and name != "auto-submitted":
            if any(v.strip().lower() not in ("no", "false", "0") for v in values):
                return OUT_OF_OFFICE
    return OUT_OF_OFFICE if _AUTO_SUBJECT.match(parsed.header("subject")[:500]) else None


def detect_bounce(parsed: ParsedMail, envelope_sender: str = "", from_address: str = "") -> BounceReport | None:
    """The delivery report this mail is, or None when it is not one."""
    if parsed.content_type == "multipart/report" and parsed.report_type == "delivery-status" \
            or parsed.delivery_status:
        return _dsn_report(parsed.delivery_status)
    null_sender = envelope_sender.strip().strip("<>").strip() == ""
    robot = bool(from_address and _BOUNCE_SENDER.match(from_address))
    failed_rcpts = bool(parsed.headers.get("x-failed-recipients"))
    if failed_rcpts or robot or (null_sender and _UNDELIVERED_SUBJECT.match(parsed.header("subject")[:500])):
        return _text_report(parsed.plain or parsed.html or "")
    return None


def _dsn_report(status_text: str) -> BounceReport:
    actions = [a.lower() for a in _DSN_ACTION.findall(status_text)]
    statuses = _DSN_STATUS.findall(status_text)
    failed = "failed" in actions or (not actions and any(s[0] in "45" for s in statuses))
    hard = failed and any(s[0] == "5" for s in statuses)
    status = ".".join(statuses[0]) if statuses else ""
    diagnostic = _DSN_DIAGNOSTIC.search(status_text)
    return BounceReport(failed=failed, hard=hard, status=status,
                        diagnostic=diagnostic.group(1).strip() if diagnostic else "")


def _text_report(body: str) -> BounceReport:
    """A bounce written for people (qmail, Exchange): the first status code it quotes, if any."""
    body = body[:20_000]
    enhanced = _TEXT_ENHANCED_STATUS.search(body)
    if enhanced:
        return BounceReport(failed=True, hard=enhanced.group(1) == "5", status=".".join(enhanced.groups()),
                            diagnostic="")
    code = _TEXT_REPLY_CODE.search(body)
    return BounceReport(failed=True, hard=code is not None and code.group(1) == "5", status="", diagnostic="")


def is_our_loop(parsed: ParsedMail, from_address: str, reply_domain: str, mail_from: str) -> bool:
    """Whether the mail is one of ours coming back: it carries our loop header or claims our addresses."""
    if LOOP_HEADER.lower() in parsed.headers:
        return True
    if not from_address:
        return False
    return from_address.rpartition("@")[2].rstrip(".") == reply_domain.lower() or from_address == mail_from.lower()


def drop_automatic_mail(mail: InboundMail) -> None:
    """Step: drop bounces (noting hard ones on the notification), auto-replies and our own loop. An
    out-of-office reply (to a reply or a bounce address) is marked for note_client_away (gateway/inbound/away.py),
    which drops it too."""
    parsed = mail.parsed
    assert parsed is not None
    to_bounce_address = [r for r in mail.recipients if r.kind == BOUNCE]
    if to_bounce_address:
        mail.outbox_email_id = to_bounce_address[0].outbox_email_id
    report = detect_bounce(parsed, mail.mail_from, mail.from_address)
    if report is not None:
        if report.failed:
            for rcpt in to_bounce_address:
                _record_bounce(mail, rcpt.token, report)
        raise Bounce(detail=f"status {report.status or '?'} {report.diagnostic}"[:300])
    if is_our_loop(parsed, mail.from_address, mail.settings.reply_domain, mail.settings.effective_mail_from):
        raise OwnLoop()
    kind = auto_reply_kind(parsed, mail.from_address)
    if kind == OUT_OF_OFFICE:
        # Dropped by the next step, which may note its writer as away (also when it answered a bounce
        # address: vacation responders write to the envelope sender).
        mail.out_of_office = True
        return
    if kind is not None:
        raise AutoReply()
    if to_bounce_address and len(to_bounce_address) == len(mail.recipients):
        # Something else sent to a notification's envelope sender: no person replies there.
        raise Bounce(detail="mail to a bounce address that is not a delivery report")


def _record_bounce(mail: InboundMail, bounce_token: str, report: BounceReport) -> None:
    from storage.outbox import record_bounce  # counts a report that arrives twice once

    reason = f"{report.status} {report.diagnostic}".strip() or "delivery failed"
    record_bounce(bounce_token, hard=report.hard, reason=reason[:500])
