"""Blueprint "portal" (/portal): the client's side. A client sees only the workspaces where they have
Messages access, and there only client-visible messages; without access they get a page saying so.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, make_response, redirect, render_template, request, url_for

from storage.directory import thread_of
from storage.models import Membership, Workspace
from storage.visibility import can_open_thread, visible_threads
from web.auth import client_required, login_required
from web.context import app_settings
from web.forms import MAX_ATTACHMENTS, Composer
from web.team import int_arg, older_json, post_from_form, render_search
from web.threadview import build_views, last_read_id, latest_event_id, load_page, mark_read, workspace_rows

bp = Blueprint("portal", __name__)


def get_open_workspace(slug: str) -> Workspace:
    """The workspace, if the signed-in client may open its thread.

    :raise 404: unknown, or a workspace the client does not belong to (its existence is not revealed).
    :raise 403: the client belongs to it but has no Messages access (shown as a friendly page).
    """
    workspace = Workspace.get_or_none(Workspace.slug == slug.lower())
    if workspace is None:
        abort(404)
    if not can_open_thread(g.viewer, thread_of(workspace)):
        member = Membership.select().where((Membership.user == g.user.id)
                                           & (Membership.workspace == workspace)).exists()
        if not member:
            abort(404)
        abort(_no_access(workspace))
    return workspace


def _no_access(workspace: Workspace | None) -> Any:
    return make_response(render_template("portal/no_access.html", workspace=workspace), 403)


@bp.route("/")
@client_required
def index() -> Any:
    threads = [t for t in visible_threads(g.viewer) if not t.workspace.archived]
    if not threads:
        return render_template("portal/no_access.html", workspace=None)
    return render_template("portal/index.html", rows=workspace_rows(g.viewer, threads))


@bp.route("/w/<slug>")
@login_required
def thread(slug: str) -> Any:
    if g.user.is_team:  # the team's page of the same workspace
        return redirect(url_for("team.thread", slug=slug))
    return render_thread(get_open_workspace(slug))


def render_thread(workspace: Workspace, composer: Composer | None = None, error: str | None = None,
                  status: int = 200) -> Any:
    thread = thread_of(workspace)
    query = request.args.get("q", "").strip()
    if query:  # search covers all of the client's conversations
        return redirect(url_for("portal.search", q=query))
    after = latest_event_id(g.viewer, thread)
    last_read = last_read_id(g.user, thread)
    messages, has_more = load_page(g.viewer, thread, before=int_arg("before"))
    views = build_views(messages, g.viewer, user=g.user)
    if messages and int_arg("before") is None:
        mark_read(g.user, thread, messages[-1].id)
    return render_template(
        "portal/thread.html", workspace=workspace, thread=thread, messages=views, has_more=has_more,
        oldest_id=views[0].id if views else 0, after=after, composer=composer or Composer(), error=error,
        max_bytes=app_settings().max_message_size, max_files=MAX_ATTACHMENTS, paged="before" in request.args,
        last_read=last_read,
    ), status


@bp.route("/w/<slug>/older")
@client_required
def older(slug: str) -> Any:
    workspace = get_open_workspace(slug)
    return older_json(g.viewer, thread_of(workspace), "portal")


@bp.route("/w/<slug>/messages", methods=["POST"])
@client_required
def post(slug: str) -> Any:
    workspace = get_open_workspace(slug)
    return post_from_form(workspace, allow_internal=False, source="portal", mode="portal",
                          page=lambda c, e: render_thread(workspace, c, e, 400),
                          done_url=url_for("portal.thread", slug=workspace.slug))



@bp.route("/search")
@client_required
def search() -> Any:
    """Search across the client's own conversations (client-visible messages only, by the rule)."""
    return render_search("portal.thread", "portal.search")
