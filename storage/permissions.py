"""Who may manage what: the one place that decides management rights, beside the one visibility rule
(storage/visibility.py), which alone decides who sees which messages.

- An active admin manages the agency: workspaces, people, access, branding, mail logs.
- Team members (admins and members) read and post in every workspace that is not archived.
- Clients manage only their own sessions and notification settings.
"""
from __future__ import annotations

from storage.models import User


def can_manage(user: User | None) -> bool:
    """Whether user may create, rename and archive workspaces, invite and deactivate people, grant and
    revoke access, change roles, set the branding and read the mail logs."""
    return user is not None and bool(user.active) and user.is_admin


__all__ = ["can_manage"]
