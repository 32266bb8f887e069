"""`workrate trim | outbox | inbound`: what the gateway would post for an email, and the logs of the
emails sent and received, for an operator checking the email side.
"""
from __future__ import annotations

import json
from typing import Any

import click

from cli.context import handle_errors, with_db
from config import Settings


@click.command("trim")
@click.argument("file", type=click.File("rb"), default="-")
@handle_errors
def trim(file: Any) -> None:
    """Print the reply text the gateway would post for a raw email or plain text (FILE or stdin)."""
    from gateway.inbound.preview import preview_reply as trim_input

    click.echo(trim_input(file.read()))


@click.command("outbox")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=100, show_default=True, help="How many of the newest emails.")
@with_db
def outbox(settings: Settings, as_json: bool, limit: int) -> None:
    """Show queued, sent and failed emails with attempts and last error."""
    from storage.mail_log import OutboxEmail

    rows = list(OutboxEmail.select().order_by(OutboxEmail.id.desc()).limit(limit))
    data = [{"id": r.id, "kind": r.kind, "to": r.to_address, "status": r.status, "attempts": r.attempts,
             "internal": r.internal, "message_id": r.message_id, "batch": r.batch_id,
             "next_attempt_at": r.next_attempt_at.isoformat() + "Z" if r.next_attempt_at else None,
             "sent_at": r.sent_at.isoformat() + "Z" if r.sent_at else None,
             "subject": r.subject, "last_error": r.last_error} for r in reversed(rows)]
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for d in data:
        click.echo(f"#{d['id']} {d['status']:8} {d['kind']:13} to {d['to']} attempts={d['attempts']}"
                   + (f" error={d['last_error']!r}" if d["last_error"] else ""))


@click.command("inbound")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=100, show_default=True, help="How many of the newest emails.")
@with_db
def inbound(settings: Settings, as_json: bool, limit: int) -> None:
    """Show recently received emails with their outcome (posted, auto-reply, bounce, duplicate, refused)."""
    from storage.mail_log import InboundEmail

    rows = list(InboundEmail.select().order_by(InboundEmail.id.desc()).limit(limit))
    data = [{"id": r.id, "received_at": r.received_at.isoformat() + "Z", "mail_from": r.mail_from,
             "rcpt_to": r.rcpt_to, "subject": r.subject, "mail_message_id": r.mail_message_id, "size": r.size,
             "outcome": r.outcome, "reason": r.reason, "smtp_code": r.smtp_code, "smtp_text": r.smtp_text,
             "posted_message_id": r.message_id}
            for r in reversed(rows)]
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for d in data:
        click.echo(f"#{d['id']} {d['received_at']} {d['outcome']:8} {d['reason']:12} {d['smtp_code']} "
                   f"from {d['mail_from']} to {d['rcpt_to']}")


COMMANDS = [trim, outbox, inbound]
