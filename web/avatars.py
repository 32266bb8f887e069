"""Blueprint "avatars": a person's own picture, uploaded at /me and shown instead of their initials beside
their messages, to both sides.

An upload must be a PNG, JPEG or WebP recognised by its first bytes (the branding logo's check,
web/branding.py `sniff_image`), at most AVATAR_UPLOAD_MAX bytes and AVATAR_MAX_PIXELS pixels. Pillow then
decodes it and draws it anew as a centred square WebP of AVATAR_SIZE pixels, so what is stored and served is
our own small image: no metadata (camera, location), no trailing bytes, no second format hidden inside.
A picture goes to whoever may see its owner's messages (team members to everyone signed in), with nosniff,
a CSP that runs nothing, and a long private cache (its URL changes with every new picture).
"""
from __future__ import annotations

import io
import threading
from typing import IO, Any

from flask import Blueprint, Response, abort, flash, g, redirect, request, url_for
from PIL import Image, ImageOps

from storage.avatars import AVATAR_SIZE, avatar_of, avatar_versions, remove_avatar, set_avatar
from storage.models import Message, User
from storage.units import human_size
from storage.visibility import Viewer, visible_messages_anywhere
from web.auth import login_required
from web.branding import sniff_image
from web.team import me_page
from web.threadview import initials

bp = Blueprint("avatars", __name__)
bp.add_app_template_global(initials, "initials")  # /me draws the initials a picture replaces

AVATAR_UPLOAD_MAX = 10 * 1024 * 1024  # a phone's photo fits; the stored picture is far smaller
# Beyond these decoding takes too much memory (a "decompression bomb"). A JPEG decodes at a reduced scale
# (draft), so a phone's full-size photo is fine; PNG and WebP decode whole.
AVATAR_MAX_PIXELS = {"JPEG": 50_000_000, "PNG": 16_000_000, "WEBP": 16_000_000}
_DECODES = threading.BoundedSemaphore(2)  # pictures decoded at once; an upload waits briefly for its turn
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


class PictureError(ValueError):
    """The upload is not a picture we take; the message is a sentence for the person."""


def square_picture(stream: IO[bytes]) -> bytes:
    """The uploaded image as a centred square WebP of AVATAR_SIZE pixels. :raise PictureError:"""
    kind = sniff_image(stream.read(16))
    if kind is None:
        raise PictureError("The picture must be a PNG, JPEG or WebP image.")
    stream.seek(0)
    data = stream.read(AVATAR_UPLOAD_MAX + 1)
    if len(data) > AVATAR_UPLOAD_MAX:
        raise PictureError(f"The picture can be at most {human_size(AVATAR_UPLOAD_MAX)}.")
    if not _DECODES.acquire(timeout=10):
        raise PictureError("Pictures are being processed right now; please try again in a moment.")
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as image:
            if image.width * image.height > AVATAR_MAX_PIXELS[_PIL_FORMATS[kind]]:
                raise PictureError("The picture has too many pixels; please use a smaller one.")
            image.draft("RGB", (AVATAR_SIZE, AVATAR_SIZE))  # a JPEG decodes at a reduced scale: less memory
            upright = ImageOps.exif_transpose(image)  # a phone's "rotate on display" tag, applied
            upright.thumbnail((AVATAR_SIZE * 4, AVATAR_SIZE * 4))  # small before the RGBA copy
            square = ImageOps.fit(upright.convert("RGBA"), (AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS)
    except PictureError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise PictureError("The picture could not be read as an image; please try another file.") from None
    finally:
        _DECODES.release()
    out = io.BytesIO()
    square.save(out, "WEBP", quality=85, method=4)
    return out.getvalue()


def may_see_picture(viewer: Viewer, person_id: int) -> bool:
    """Whoever may see a message of that person, through the one visibility rule; the team sees everyone's,
    and everyone the team's (a client is shown team members on every page)."""
    if viewer.is_team or viewer.user_id == person_id:
        return True
    person = User.get_or_none(User.id == person_id)
    if person is None:
        return False
    return person.is_team or visible_messages_anywhere(viewer).where(Message.author == person_id).exists()


@bp.route("/avatars/<int:user_id>")
@login_required
def picture(user_id: int) -> Response:
    if not 0 < user_id < 2**63 or not may_see_picture(g.viewer, user_id):
        abort(404)
    row = avatar_of(user_id)
    if row is None:
        abort(404)
    response = Response(bytes(row.data), mimetype=row.content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = "inline; filename=avatar.webp"
    # The pages' URL carries ?v=, which changes with every new picture: cached under it, it is never stale.
    current = request.args.get("v") == str(avatar_versions([user_id]).get(user_id))
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable" if current else "private, no-cache"
    return response


@bp.route("/me/avatar", methods=["POST"])
@login_required
def upload() -> Any:
    file = request.files.get("avatar")
    if file is None or not file.filename:
        return me_page(avatar_error="Choose a picture to upload.")
    try:
        data = square_picture(file.stream)
    except PictureError as e:
        return me_page(avatar_error=str(e))
    set_avatar(g.user, data, "image/webp")
    flash("Your picture is saved: it shows beside your messages.")
    return redirect(url_for("team.time_zone") + "#avatar-form")


@bp.route("/me/avatar/remove", methods=["POST"])
@login_required
def remove() -> Any:
    flash("Your picture is removed: your initials show instead." if remove_avatar(g.user)
          else "You had no picture.")
    return redirect(url_for("team.time_zone") + "#avatar-form")
