"""One-click unsubscribe links (RFC 8058): a signed (user, thread) pair in the List-Unsubscribe URL.

The web app serves GET (a confirmation page) and POST (List-Unsubscribe=One-Click) on
/unsubscribe/<token>; both read the token here and call apply_unsubscribe().
"""
from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer

from config import Settings
from storage.outbox import apply_unsubscribe

SALT = "workrate.unsubscribe.v1"


def _serializer(settings: Settings) -> URLSafeSerializer:
    if not settings.secret_key:
        raise ValueError("settings.secret_key is empty: unsubscribe links cannot be signed")
    return URLSafeSerializer(settings.secret_key, salt=SALT)


def make_unsubscribe_token(settings: Settings, user_id: int, thread_id: int) -> str:
    """A URL-safe token naming (user, thread), signed with settings.secret_key; it does not expire."""
    return _serializer(settings).dumps([int(user_id), int(thread_id)])


def read_unsubscribe_token(settings: Settings, token: str) -> tuple[int, int] | None:
    """(user_id, thread_id) from a token made by make_unsubscribe_token, or None if forged or garbled."""
    try:
        data = _serializer(settings).loads(token or "")
    except (BadSignature, ValueError, TypeError):
        return None
    if (not isinstance(data, list) or len(data) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in data)):
        return None
    return data[0], data[1]


def unsubscribe_url(settings: Settings, user_id: int, thread_id: int) -> str:
    return f"{settings.effective_base_url}/unsubscribe/{make_unsubscribe_token(settings, user_id, thread_id)}"


__all__ = ["make_unsubscribe_token", "read_unsubscribe_token", "apply_unsubscribe", "unsubscribe_url"]
