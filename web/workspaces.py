"""Blueprint "workspaces": an admin creates, renames, archives and restores workspaces.

An archived workspace is read-only (storage/posting.py refuses posts, the gateway refuses its reply
addresses with a sentence) and hidden from the workspace lists unless asked for.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, render_template, request, url_for

from storage.directory import DirectoryError, create_workspace, rename_workspace, set_archived
from web.auth import admin_required
from web.formguard import already_done, remember_done
from web.team import get_workspace_or_404

bp = Blueprint("workspaces", __name__)


@bp.route("/workspaces/new", methods=["GET", "POST"])
@admin_required
def new() -> Any:
    form = {"name": (request.form.get("name") or "").strip()}
    errors: dict[str, str] = {}
    if request.method == "POST":
        if (done := already_done()) is not None:
            return done
        try:
            workspace = create_workspace(form["name"])
        except DirectoryError as e:
            errors["name"] = str(e)
        else:
            flash(f"{workspace.name} is created. Add its client contacts here.")
            return remember_done(url_for("members.members", slug=workspace.slug))
    return render_template("manage/workspace_new.html", form=form, errors=errors), 400 if errors else 200


@bp.route("/w/<slug>/settings", methods=["GET", "POST"])
@admin_required
def settings(slug: str) -> Any:
    workspace = get_workspace_or_404(slug)
    form = {"name": workspace.name}
    errors: dict[str, str] = {}
    if request.method == "POST":
        if (done := already_done()) is not None:
            return done
        action = request.form.get("action", "")
        if action == "rename":
            form["name"] = (request.form.get("name") or "").strip()
            try:
                rename_workspace(workspace, form["name"])
            except DirectoryError as e:
                errors["name"] = str(e)
            else:
                flash(f"The workspace is now called {workspace.name}.")
                return remember_done(url_for("workspaces.settings", slug=workspace.slug))
        elif action in ("archive", "restore"):
            archive = action == "archive"
            if workspace.archived == archive:
                flash(f"{workspace.name} was already {'archived' if archive else 'restored'}.")
            else:
                set_archived(workspace, archive)
                flash(f"{workspace.name} is archived: read-only, hidden from the list, and replies by email are "
                      "refused." if archive else f"{workspace.name} is restored.")
            return remember_done(url_for("workspaces.settings", slug=workspace.slug))
        else:
            errors["form"] = "That action is not known here. Please reload the page and try again."
    return render_template("manage/workspace_settings.html", workspace=workspace, form=form,
                           errors=errors), 400 if errors else 200
