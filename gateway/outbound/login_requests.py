"""Sign-in link requests, decided by the outbox worker rather than by the web request.

/login/link answers every address alike and only queues a LOGIN_REQUEST row (storage/outbox.py), so that
its timing says nothing about who has an account. Here, off the request path, the row becomes a sign-in
link for an active client, or is deleted: team members sign in by password, and an address nobody has is
not kept.
"""
from __future__ import annotations

from config import Settings
from gateway.outbound.render import render_login_link
from storage.mail_log import LOGIN_LINK, OutboxEmail
from storage.models import User
from storage.tokens import create_login_token


def expand_login_request(row: OutboxEmail, settings: Settings) -> tuple[OutboxEmail, User] | None:
    """The row turned into a LOGIN_LINK email to its client (and the client), or None after deleting it."""
    user = User.get_or_none(User.email == row.to_address)
    if user is None or not user.active or not user.is_client or user.email_disabled:
        OutboxEmail.delete().where(OutboxEmail.id == row.id).execute()
        return None
    secret = create_login_token(user, settings.login_link_minutes, target=row.subject or None)
    rendered = render_login_link(settings, user, f"{settings.effective_base_url}/login/{secret}")
    (OutboxEmail.update(kind=LOGIN_LINK, recipient=user.id, subject=rendered.subject, body_text=rendered.text,
                        body_html=rendered.html)
     .where(OutboxEmail.id == row.id).execute())
    return OutboxEmail.get_by_id(row.id), user


__all__ = ["expand_login_request"]
