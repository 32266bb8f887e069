"""Blueprint "away" (no routes): what the team's pages show of client contacts who are away
(storage/away.py): a note beside the composer, a mark in the workspace list and sidebar, and one beside the
contact on the workspace's People page.

Both helpers answer nothing unless the signed-in person is on the team, whatever template calls them: the
workspace list macro is shared with the client portal.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint, g

from storage.away import Away, away_contacts, away_in_workspaces
from storage.models import User, Workspace

bp = Blueprint("away", __name__)


def _team_viewer() -> bool:
    user = getattr(g, "user", None)
    return user is not None and not user.is_client


@bp.app_template_global()
def away_here(workspace: Workspace) -> list[Away]:
    """The workspace's client contacts with Messages access who are away now (team only)."""
    if not _team_viewer():
        return []
    return away_in_workspaces([workspace.id]).get(workspace.id, [])


@bp.app_template_global()
def away_by_workspace(rows: Iterable[Any]) -> dict[int, list[Away]]:
    """For a list of workspace rows (web/threadview.py WorkspaceRow): the away contacts of each (team only)."""
    if not _team_viewer():
        return {}
    return away_in_workspaces(r.workspace.id for r in rows)


@bp.app_template_global()
def away_people(users: Iterable[User]) -> dict[int, Away]:
    """Of these people, the client contacts who are away now, by user id (team only)."""
    if not _team_viewer():
        return {}
    return away_contacts(u.id for u in users)
