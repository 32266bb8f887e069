"""Blueprint "api" (/api): the team's JSON API, authenticated by a personal token
(`Authorization: Bearer <token>`, created with `workrate user api-token EMAIL`).

The JSON shape of messages is the one of `workrate thread --json` (storage/serialize.py). The session
cookie is never read here, which is why the API needs no CSRF token.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from storage.directory import thread_of
from storage.models import Message, Workspace
from storage.post_limits import SLOW_DOWN, may_post_now
from storage.posting import PostingError, post_message
from storage.serialize import message_json, messages_json
from storage.tokens import user_for_api_token
from storage.visibility import Viewer, last_activity, visible_messages, visible_threads
from web.context import app_settings

bp = Blueprint("api", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class ApiError(Exception):
    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status


@bp.errorhandler(ApiError)
def _api_error(e: ApiError) -> Any:
    return jsonify({"error": str(e)}), e.status


def bearer_user() -> Any:
    """The active user of a valid `Authorization: Bearer` token, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip() or len(secret) > 200:
        return None
    return user_for_api_token(secret.strip())


@bp.before_request
def _authenticate() -> None:
    user = bearer_user()
    if user is None:
        raise ApiError(401, "Send a personal API token as 'Authorization: Bearer <token>' "
                            "(create one with: workrate user api-token EMAIL).")
    if not user.is_team:
        raise ApiError(403, "The JSON API is for team members.")
    g.api_user = user
    g.api_viewer = Viewer.of(user)


def _workspace(slug: str) -> Workspace:
    workspace = Workspace.get_or_none(Workspace.slug == slug.lower())
    if workspace is None:
        raise ApiError(404, f"There is no workspace with the slug {slug!r}.")
    return workspace


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, f"?{name}= must be a message id (a whole number), not {raw!r}.")
    return int(raw)


@bp.route("/workspaces")
def workspaces() -> Any:
    threads = list(visible_threads(g.api_viewer).order_by(Workspace.slug))
    return jsonify({"workspaces": [
        {"slug": t.workspace.slug, "name": t.workspace.name,
         "last_activity_at": last_activity(g.api_viewer, t).isoformat() + "Z"} for t in threads]})


@bp.route("/workspaces/<slug>/messages", methods=["GET"])
def list_messages(slug: str) -> Any:
    """Oldest first. Without cursors: the newest `limit`. ?after=ID: the next ones after ID.
    ?before=ID: the `limit` just before ID. has_more says whether more lie beyond in that direction."""
    workspace = _workspace(slug)
    thread = thread_of(workspace)
    after, before = _int_arg("after"), _int_arg("before")
    limit = _int_arg("limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"?limit= must be between 1 and {MAX_LIMIT}.")
    query = visible_messages(g.api_viewer, thread)
    if before is not None:
        query = query.where(Message.id < before)
    if after is not None:
        rows = list(query.where(Message.id > after).order_by(Message.id).limit(limit + 1))
        has_more = len(rows) > limit
        rows = rows[:limit]
    else:
        rows = list(query.order_by(Message.id.desc()).limit(limit + 1))
        has_more = len(rows) > limit
        rows = list(reversed(rows[:limit]))
    return jsonify({"workspace": workspace.slug,
                    "messages": messages_json(rows, app_settings().effective_base_url, g.api_viewer),
                    "has_more": has_more})


@bp.route("/workspaces/<slug>/messages", methods=["POST"])
def create_message(slug: str) -> Any:
    """{"text": "...", "internal": false} → the message JSON, 201."""
    workspace = _workspace(slug)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, 'Send a JSON object such as {"text": "Hello", "internal": false}.')
    text = data.get("text", "")
    internal = data.get("internal", False)
    if not isinstance(text, str):
        raise ApiError(400, '"text" must be a string of Markdown.')
    if not isinstance(internal, bool):
        raise ApiError(400, '"internal" must be true or false.')
    settings = app_settings()
    if not may_post_now(g.api_user, settings.posts_per_minute):
        raise ApiError(429, SLOW_DOWN)
    try:
        message = post_message(thread_of(workspace), g.api_user, text, internal=internal, source="api",
                               notify_delay=settings.notify_delay)
    except PostingError as e:
        raise ApiError(400, str(e)) from None
    return jsonify(message_json(message, settings.effective_base_url)), 201
