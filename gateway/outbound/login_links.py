"""Sign-in links by email: renders the sign-in (or invitation) email from templates/email/login_link.*
at once, since only the caller holds the link's secret, and queues it in the outbox, where the worker
sends it like any other email (stored_mail in render.py rebuilds it from the row).
"""
from __future__ import annotations

from config import Settings
from gateway.outbound.render import render_login_link
from storage.mail_log import OutboxEmail
from storage.models import User
from storage.outbox import add_login_link


def queue_login_link(settings: Settings, user: User, url: str, *, invitation: bool = False,
                     workspace_name: str = "", valid_for: str | None = None,
                     agency_name: str = "") -> OutboxEmail:
    """Queues a sign-in link to `url` (or an invitation to `workspace_name` carrying one) for `user`."""
    rendered = render_login_link(settings, user, url, invitation=invitation, workspace_name=workspace_name,
                                 valid_for=valid_for, agency_name=agency_name)
    return add_login_link(user, subject=rendered.subject, body_text=rendered.text, body_html=rendered.html)
