"""Blueprint "confirm": "confirm it was you" for a reply held by the gateway (storage/held.py).

The link was emailed to the person the reply would be posted as, so following it proves control of that
mailbox, signed in or not, whoever is signed in. GET shows the reply and a button (mail scanners that open
links must not post anything); the POST (CSRF-checked) posts it through the one write path, once.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from storage.held import NotConfirmable, confirm, files_of, held_by_secret
from storage.link_mail import discard_link_mail
from storage.mail_log import CONFIRM_POST
from storage.models import Thread, Workspace
from storage.tokens import hash_secret
from web.context import app_settings

bp = Blueprint("confirm", __name__)


@bp.route("/confirm/<secret>", methods=["GET"])
def page(secret: str) -> Any:
    row = held_by_secret(secret)
    if row is None:
        return render_template("confirm/invalid.html", sentence="This link has been used already or has expired."), 410
    thread = Thread.get_by_id(row.thread_id)
    workspace = Workspace.get_by_id(thread.workspace_id)
    return render_template("confirm/post.html", secret=secret, row=row, workspace=workspace, files=files_of(row),
                           hours=app_settings().held_post_hours)


@bp.route("/confirm/<secret>", methods=["POST"])
def post(secret: str) -> Any:
    settings = app_settings()
    try:
        message = confirm(secret, notify_delay=settings.notify_delay)
    except NotConfirmable as e:
        return render_template("confirm/invalid.html", sentence=str(e)), 410
    discard_link_mail(settings.data_dir, CONFIRM_POST, hash_secret(secret))  # its .eml file (no relay) goes now
    workspace = Workspace.get_by_id(Thread.get_by_id(message.thread_id).workspace_id)
    return render_template("confirm/done.html", workspace=workspace)
