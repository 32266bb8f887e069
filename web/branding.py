"""Blueprint "branding": the agency's name, logo and accent colour, set by an admin and shown on the portal,
the sign-in page and the notification emails.

The logo is an uploaded PNG, JPEG or WebP (recognised by its first bytes, never by its name or the browser's
word; SVG is refused since it can carry script), kept in the file store and served with its own type,
nosniff and a CSP that runs nothing. The accent colour reaches the pages through a small stylesheet
(/branding/theme.css), since the pages' CSP allows no inline style.
"""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from storage.agency import DEFAULT_ACCENT, Agency, set_branding
from storage.directory import DirectoryError
from storage.files import FileStore, TooLarge
from web.auth import admin_required
from web.context import app_settings
from web.formguard import already_done

bp = Blueprint("branding", __name__)

LOGO_MAX = 512 * 1024
IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def sniff_image(head: bytes) -> str | None:
    """The image type of these first bytes when it is one we serve as a logo, else None."""
    for magic, kind in IMAGE_TYPES:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


_cache: dict[str, tuple[float, Agency | None]] = {}  # per database and app: (when read, row)
CACHE_SECONDS = 2.0  # every page shows the brand: read it at most this often per process


def current() -> Agency | None:
    """The agency row (None before it exists), read at most every CACHE_SECONDS per process."""
    settings = app_settings()
    key = f"{settings.effective_database_url} {settings.secret_key}"
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    row = Agency.get_or_none(Agency.id == 1)
    _cache[key] = (now, row)
    return row


def darker(hex_colour: str, factor: float = 0.75) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(c * factor):02x}" for c in (r, g, b))


@bp.app_context_processor
def _brand() -> dict[str, Any]:
    row = current()
    return {"brand": row}


def _luminance(hex_colour: str) -> float:
    """WCAG relative luminance of #rrggbb."""
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(int(hex_colour[i:i + 2], 16)) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


ON_DARK_TEXT = "#0b1020"  # app.css's --on-accent of the dark scheme
DARK_SURFACE = "#171b23"  # app.css's --surface of the dark scheme (its --bg is darker still)


def text_on(hex_colour: str) -> str:
    """White or near-black, whichever reads better on this colour (button labels, unread counts)."""
    return "#ffffff" if contrast("#ffffff", hex_colour) >= contrast(ON_DARK_TEXT, hex_colour) else ON_DARK_TEXT


def lighter_for_dark(hex_colour: str) -> str:
    """The colour mixed with white until it reads clearly as link text on the dark scheme's surfaces (6:1,
    like the stylesheet's own dark accent)."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    for step in range(21):
        t = step / 20
        mixed = "#" + "".join(f"{round(c + (255 - c) * t):02x}" for c in (r, g, b))
        if contrast(mixed, DARK_SURFACE) >= 6:
            return mixed
    return "#ffffff"


@bp.route("/branding/theme.css")
def theme() -> Response:
    row = current()
    accent = row.accent if row is not None else DEFAULT_ACCENT
    # The agency's colour replaces the stylesheet's in both schemes, so it brings its own text colour, and the
    # dark scheme gets a lighter shade of it: links and buttons stay readable on dark surfaces.
    night = lighter_for_dark(accent)
    css = (f":root {{ --accent: {accent}; --accent-dark: {darker(accent)}; --on-accent: {text_on(accent)}; }}\n"
           f"@media (prefers-color-scheme: dark) {{ :root {{ --accent: {night}; --on-accent: {text_on(night)}; }} }}\n")
    response = Response(css, mimetype="text/css")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/branding/logo")
def logo() -> Response:
    row = current()
    if row is None or not row.logo_key or not row.logo_type:
        abort(404)
    try:
        data = FileStore(app_settings().effective_files_dir).read(row.logo_key)
    except OSError:
        abort(404)
    response = Response(data, mimetype=row.logo_type)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = "inline; filename=logo"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/settings/branding", methods=["GET", "POST"])
@admin_required
def settings() -> Any:
    row = current() or Agency(name="", accent=DEFAULT_ACCENT)
    form = {"name": row.name, "accent": row.accent}
    errors: dict[str, str] = {}
    if request.method == "POST":
        if (done := already_done()) is not None:
            return done
        form = {"name": (request.form.get("name") or "").strip(), "accent": (request.form.get("accent") or "").strip()}
        logo_key = logo_type = None
        upload = request.files.get("logo")
        if upload is not None and upload.filename:
            head = upload.stream.read(16)
            logo_type = sniff_image(head)
            if logo_type is None:
                errors["logo"] = "The logo must be a PNG, JPEG or WebP image."
            else:
                upload.stream.seek(0)
                try:
                    logo_key = FileStore(app_settings().effective_files_dir).put_stream(upload.stream,
                                                                                       limit=LOGO_MAX).key
                except TooLarge:
                    errors["logo"] = f"The logo can be at most {LOGO_MAX // 1024} KB."
        if not errors:
            try:
                set_branding(name=form["name"], accent=form["accent"], logo_key=logo_key, logo_type=logo_type,
                             remove_logo=request.form.get("remove_logo") == "1")
            except DirectoryError as e:
                errors["accent" if "colour" in str(e) else "name"] = str(e)
        if not errors:
            forget_cached()
            flash("The branding is saved: your clients see it on their pages, the sign-in page and their emails.")
            return redirect(url_for("branding.settings"))
    return render_template("manage/branding.html", form=form, errors=errors, row=current()), 400 if errors else 200


def forget_cached() -> None:
    """After a change of the agency row in this process (setup, branding)."""
    _cache.clear()
