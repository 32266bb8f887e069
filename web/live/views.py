"""Blueprint "events": the Flask side of a live-update stream, which decides who may open it.

GET /events/w/SLUG runs through the Flask app like any page (the session cookie read by the app's own
session interface, web/auth.py's load_viewer, login_required, the workspace, can_open_thread), so a
stream is authorised exactly as the thread page is. The live server (web/live/stream.py) calls this view
on a reader thread with a ticket in the WSGI environ; the view fills the ticket in and the stream itself
is then served from the event loop. Anything else the view answers (the sign-in redirect, 404) is sent
to the browser as it is.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, g, request

from storage.directory import thread_of
from storage.models import Workspace
from storage.visibility import can_open_thread
from web.auth import login_required

bp = Blueprint("events", __name__)

TICKET = "workrate.live_ticket"  # environ key: the live server's dict for the view to fill in


@bp.route("/events/w/<slug>")
@login_required
def stream(slug: str) -> Any:
    """Authorises a text/event-stream of the thread's new messages as the signed-in person may see them.

    :raise 404: unknown workspace, or one the viewer cannot open (no Messages access, another client's).
    """
    workspace = Workspace.get_or_none(Workspace.slug == slug.lower())
    if workspace is None:
        abort(404)
    thread = thread_of(workspace)
    if not can_open_thread(g.viewer, thread):
        abort(404)
    ticket = request.environ.get(TICKET)
    body = b""
    if ticket is None:
        # Not through the live server (the Flask app served on its own): an empty stream that asks the
        # browser to come back in a minute.
        body = b"retry: 60000\n: live updates are served by `workrate web`\n\n"
    else:
        web_session = getattr(g, "web_session", None)
        ticket.update(viewer=g.viewer, thread_id=thread.id, mode="team" if g.viewer.is_team else "portal",
                      session_id=None if web_session is None else web_session.id)
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"  # tells nginx not to buffer the stream
    return response
