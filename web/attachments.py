"""Blueprint "attachments": downloads, through can_see() of the message they belong to.

Anything the viewer may not see (an internal note's file, another workspace's, an unknown id) answers
404, never 403, so a URL reveals nothing. Files go out with their stored type, `nosniff`, a sandboxing
CSP and `Content-Disposition: attachment` (a few raster image types may show inline).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, redirect, request, send_file, url_for

from storage.files import FileStore
from storage.models import Attachment, Message
from storage.visibility import Viewer, can_see
from web.context import app_settings
from web.forms import CONTENT_TYPE_RE
from web.threadview import MAX_ID

bp = Blueprint("attachments", __name__)

# Raster images can't carry script; SVG can, so it is never shown inline.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def _viewer() -> Viewer | None:
    if g.viewer is not None:
        return g.viewer
    from web.api import bearer_user

    user = bearer_user()
    return Viewer.of(user) if user is not None else None


def get_visible_attachment(viewer: Viewer, attachment_id: int) -> Attachment:
    """The attachment, if viewer may see its message.

    :raise 404: unknown id, or a message the viewer may not see (internal, another workspace, no access).
    """
    if not 0 < attachment_id <= MAX_ID:
        abort(404)
    attachment = Attachment.get_or_none(Attachment.id == attachment_id)
    if attachment is None:
        abort(404)
    message = Message.get_or_none(Message.id == attachment.message_id)
    if message is None or not can_see(viewer, message):
        abort(404)
    return attachment


@bp.route("/attachments/<int:attachment_id>/<path:name>")
def download(attachment_id: int, name: str) -> Any:
    viewer = _viewer()
    if viewer is None:
        if request.headers.get("Authorization"):
            abort(404)
        return redirect(url_for("auth.login", next=request.path))
    attachment = get_visible_attachment(viewer, attachment_id)
    # Absolute, so that the existence check and send_file (which would resolve a relative path against
    # the app's package folder, not the working folder) look at the same file.
    path = FileStore(app_settings().effective_files_dir).path(attachment.storage_key).absolute()
    if not path.exists():
        abort(404)
    content_type = attachment.content_type.lower()
    if not CONTENT_TYPE_RE.match(content_type):
        content_type = "application/octet-stream"
    inline = content_type in INLINE_TYPES and request.args.get("download") is None
    response = send_file(path, mimetype=content_type, as_attachment=not inline, download_name=attachment.name,
                         conditional=True, etag=attachment.sha256, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
    return response

