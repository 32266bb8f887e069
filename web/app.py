"""`create_app(settings)`, the application factory (Flask tutorial's flaskr shape).

It binds the database, opens and closes one connection per request, installs CSRF protection and
security headers, registers one blueprint per audience and the error pages. Templates come from the
`templates` package and static files from web/static/, both shipped inside the wheel.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

import templates
from config import Settings, load_settings
from web.context import LIVE_READ, SETTINGS_KEY, app_settings, csrf

# Scripts and styles come only from our own static files: no inline script or style can run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Sent when BASE_URL is https: browsers then never speak plain http to the site for a year.
HSTS = "max-age=31536000"
# Room for the form fields and multipart framing around the attachments of one post.
FORM_OVERHEAD = 1024 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Builds the Flask app for `settings` (loaded from the environment when None)."""
    from storage import db

    settings = settings or load_settings()
    app = Flask("web", template_folder=str(templates.FOLDER), static_folder="static")
    app.jinja_options = {**app.jinja_options, "trim_blocks": True, "lstrip_blocks": True}
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="workrate_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.effective_base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=14 * 24 * 3600,
        MAX_CONTENT_LENGTH=settings.max_message_size + FORM_OVERHEAD,
        # The Markdown text of one message can be up to 100,000 characters (up to 4 bytes each).
        MAX_FORM_MEMORY_SIZE=512 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=settings.effective_base_url.startswith("https://"),
        TEMPLATES_AUTO_RELOAD=False,
    )
    if not settings.secret_key:
        raise ValueError("create_app needs settings with a secret_key (load_settings() provides one).")
    app.extensions[SETTINGS_KEY] = settings
    if settings.proxy_hops > 0:
        # Behind that many trusted reverse proxies: the client's address and scheme come from their
        # X-Forwarded-For / X-Forwarded-Proto (the Host header is kept as sent), so sign-in limits count
        # each person rather than the proxy.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)  # type: ignore[method-assign]
    if not _already_bound(settings):
        db.bind(settings)
    csrf.init_app(app)

    @app.before_request
    def _open_connection() -> None:
        if request.endpoint == "static":
            return
        db.database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close_connection(exc: BaseException | None) -> None:
        # A live-update read (web/live/) borrows a request context on a reader thread that keeps its
        # connection between reads; every other request closes its own.
        if not db.database.is_closed() and not request.environ.get(LIVE_READ):
            db.database.close()

    https = settings.effective_base_url.startswith("https://")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if https:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    from web import (
        account,
        api,
        attachments,
        auth,
        avatars,
        away,
        branding,
        confirm,
        maillog,
        members,
        people,
        portal,
        setup,
        team,
        trimmed,
        unsubscribe,
        workspaces,
    )
    from web.live import views as live_views

    app.register_blueprint(setup.bp)  # first: until the agency is set up, only its page answers
    app.register_blueprint(auth.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(people.bp)
    app.register_blueprint(workspaces.bp)
    app.register_blueprint(maillog.bp)
    app.register_blueprint(branding.bp)
    app.register_blueprint(team.bp)
    app.register_blueprint(members.bp)
    app.register_blueprint(away.bp)  # no routes: the team's "away" note and marks
    app.register_blueprint(trimmed.bp)
    app.register_blueprint(portal.bp, url_prefix="/portal")
    app.register_blueprint(attachments.bp)
    app.register_blueprint(avatars.bp)
    app.register_blueprint(live_views.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    app.register_blueprint(unsubscribe.bp)
    app.register_blueprint(confirm.bp)  # "confirm it was you" for held replies, signed in or not
    csrf.exempt(api.bp)  # token-authenticated, never reads the session cookie
    csrf.exempt(unsubscribe.one_click)  # RFC 8058 one-click POST comes from the mail client, without a session
    _register_error_pages(app)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"viewer": g.get("viewer"), "current_user": g.get("user")}

    return app


def _already_bound(settings: Settings) -> bool:
    """Whether the process's database handle already points at settings' database (bound by the CLI or
    by another role of `workrate run`); rebinding would swap the handle under the other roles' feet."""
    from playhouse.db_url import parse

    from storage import db

    bound = db.database.obj
    if bound is None:
        return False
    wanted = parse(settings.effective_database_url)
    if bound.database != wanted.pop("database", None):
        return False
    return all(bound.connect_params.get(key) == value for key, value in wanted.items())


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _register_error_pages(app: Flask) -> None:
    messages = {
        400: "The request could not be understood.",
        403: "You don't have access to this page.",
        404: "There is nothing here. The page may have moved, or you may not have access to it.",
        405: "That action is not available here.",
        413: "That upload is too large.",
        429: "Too many attempts. Please wait a few minutes and try again.",
        500: "Something went wrong on our side. Please try again in a moment.",
    }

    def page(code: int, sentence: str) -> tuple[Any, int]:
        if _wants_json():
            return jsonify({"error": sentence}), code
        return render_template("errors/error.html", code=code, sentence=sentence), code

    @app.errorhandler(CSRFError)
    def _csrf_error(e: CSRFError) -> tuple[Any, int]:
        return page(400, "This form has expired or did not come from this site. Please reload the page and "
                         "try again.")

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Any:
        code = e.code or 500
        if code == 413:
            from web.forms import too_large_sentence

            return page(413, too_large_sentence(app_settings(app)))
        if code in messages and (e.description is None or e.description == type(e).description):
            return page(code, messages[code])
        return page(code, e.description or messages.get(code, "Something went wrong."))

    @app.errorhandler(Exception)
    def _server_error(e: Exception) -> Any:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return page(500, messages[500])
