"""Blueprint "unsubscribe": the one-click unsubscribe link of notification emails (RFC 8058).

GET /unsubscribe/<token> shows a confirmation button (link scanners must not unsubscribe anyone);
POST unsubscribes at once. The POST is what mail clients send for List-Unsubscribe-Post, without a
session or CSRF token: the signed token is the proof.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template

from storage.models import Thread, Workspace
from web.context import app_settings

bp = Blueprint("unsubscribe", __name__)


def _read(token: str) -> tuple[int, int, Workspace]:
    """:raise 404: a forged, garbled or outdated token."""
    from gateway.outbound.unsubscribe import read_unsubscribe_token

    if len(token) > 500:
        abort(404)
    pair = read_unsubscribe_token(app_settings(), token)
    if pair is None:
        abort(404)
    user_id, thread_id = pair
    workspace = Workspace.select().join(Thread).where(Thread.id == thread_id).first()
    if workspace is None:
        abort(404)
    return user_id, thread_id, workspace


@bp.route("/unsubscribe/<token>", methods=["GET"])
def confirm(token: str) -> Any:
    _, _, workspace = _read(token)
    return render_template("auth/unsubscribe.html", token=token, workspace=workspace, done=False)


@bp.route("/unsubscribe/<token>", methods=["POST"])
def one_click(token: str) -> Any:
    from gateway.outbound.unsubscribe import apply_unsubscribe

    user_id, thread_id, workspace = _read(token)
    if not apply_unsubscribe(user_id, thread_id):
        abort(404)
    return render_template("auth/unsubscribe.html", token=token, workspace=workspace, done=True)
