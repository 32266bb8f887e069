"""The "confirm it was you" email of a held reply (storage/held.py): rendered at once from
templates/email/confirm_post.*, since only the gateway holds the link's secret at that moment, and queued in
the outbox, where the worker sends it like a sign-in link (render.py stored_mail rebuilds it from the row).
The email carries no reply address: an automatic answer to it cannot post anything."""
from __future__ import annotations

from config import Settings
from gateway.outbound.render import _env, _one_line, brand_context
from storage.mail_log import CONFIRM_POST, PENDING, OutboxEmail
from storage.models import User, utcnow

EXCERPT = 600  # characters of the reply shown in the email


def confirm_url(settings: Settings, secret: str) -> str:
    return f"{settings.effective_base_url}/confirm/{secret}"


def _hours(hours: float) -> str:
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


def queue_confirm_email(settings: Settings, user: User, secret: str, *, workspace_name: str, internal: bool,
                        text: str, file_names: list[str], from_address: str, mail_subject: str) -> OutboxEmail:
    """Queues the confirmation email of a held reply for `user`, inside the caller's transaction."""
    subject = f"Did you write this reply to {_one_line(workspace_name, 120) or 'your conversation'}?"
    excerpt = text.strip()
    if len(excerpt) > EXCERPT:
        excerpt = excerpt[:EXCERPT].rstrip() + " …"
    context = {"subject": subject, "name": _one_line(user.name), "workspace": _one_line(workspace_name, 200),
               "internal": internal, "excerpt": excerpt or "(no text; files only)",
               "files": ", ".join(_one_line(n, 120) for n in file_names[:20]), "url": confirm_url(settings, secret),
               "hours": _hours(settings.held_post_hours), "from_address": _one_line(from_address, 320),
               "mail_subject": _one_line(mail_subject, 200) or "(no subject)", **brand_context(settings)}
    body_text = _env.get_template("confirm_post.txt").render(context)
    body_html = _env.get_template("confirm_post.html").render(context)
    return OutboxEmail.create(kind=CONFIRM_POST, recipient=user, to_address=user.email, thread=None, message=None,
                              internal=False, status=PENDING, next_attempt_at=utcnow(), subject=subject,
                              body_text=body_text, body_html=body_html)


__all__ = ["CONFIRM_POST", "confirm_url", "queue_confirm_email"]
