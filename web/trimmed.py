"""The part reply extraction trimmed from an emailed message, for the team: restore it into the message in
one click (an audited edit, storage/posting.py restore_trimmed), and see and undo the signatures learned
from the sender's mails (storage/learned_signatures.py). Clients never reach these pages (404)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, url_for

from gateway.inbound.own_mail import restorable_part
from storage.learned_signatures import LearnedSignature, set_cut, signatures_of
from storage.models import User
from storage.posting import PostingError, restore_trimmed
from web.auth import team_required
from web.context import app_settings
from web.team import message_json, thread_url
from web.threadview import MAX_ID, get_visible_message

bp = Blueprint("trimmed", __name__)


@bp.route("/messages/<int:message_id>/trimmed")
@team_required
def show(message_id: int) -> Any:
    """The trimmed part of one message, the learned signatures of its sender, and the buttons."""
    message = get_visible_message(g.viewer, message_id)
    sender = User.get_by_id(message.author_id).email if message.source == "email" else ""
    signatures = sorted(signatures_of(sender), key=lambda s: not s.cut) if sender else []  # cut ones first
    trimmed = message.trimmed_text or ""
    cut_here = next((s.id for s in signatures if s.cut and trimmed.startswith(s.text)), None)
    return render_template("team/trimmed.html", message=message, sender=sender, signatures=signatures,
                           cut_here=cut_here, back=thread_url(message))


@bp.route("/messages/<int:message_id>/restore", methods=["POST"])
@team_required
def restore(message_id: int) -> Any:
    """Restores the message's own trimmed part into it (nothing from the form but the message's id)."""
    message = get_visible_message(g.viewer, message_id)
    json = request.accept_mimetypes.best == "application/json"  # the page's script: redrawn in place
    try:
        settings = app_settings()
        part = restorable_part(message.trimmed_text or "", reply_domain=settings.reply_domain,
                               base_url=settings.effective_base_url)
        restore_trimmed(message, g.user, part)
    except PostingError as e:
        if json:
            return jsonify({"error": str(e)}), 400
        flash(str(e))
        return redirect(url_for("trimmed.show", message_id=message.id))
    if json:
        return message_json(message)
    flash("The trimmed part is back in the message; the earlier version is kept behind “edited”.")
    return redirect(thread_url(message))


@bp.route("/signatures/<int:signature_id>", methods=["POST"])
@team_required
def change(signature_id: int) -> Any:
    """Undo a learned signature (form field cut=0) or cut it again (cut=1); back to the message it was
    looked at from."""
    if not 0 < signature_id <= MAX_ID:
        abort(404)
    signature = LearnedSignature.get_or_none(LearnedSignature.id == signature_id)
    if signature is None or signature.learned_at is None:
        abort(404)
    cut = request.form.get("cut") == "1"
    set_cut(signature, g.user, cut)
    flash(f"This signature will be cut from {signature.sender}'s mails again." if cut else
          f"This signature will no longer be cut from {signature.sender}'s mails.")
    message_id = request.form.get("message", type=int)
    if message_id and 0 < message_id <= MAX_ID:
        return redirect(url_for("trimmed.show", message_id=message_id))
    return redirect(url_for("team.index"))
