"""Sign-in and sign-out for both audiences: team members by password, clients by one-time email link.

`load_viewer` runs before every request and puts the signed-in person in `g.user` / `g.viewer`;
`login_required`, `team_required` and `client_required` guard the views. Sign-in attempts are counted
(before any password is checked) in LoginAttempt rows, so the limits hold across processes; see
web/signin_limits.py. Behind trusted reverse proxies (settings.proxy_hops), the remote address is the one
they forwarded.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for

from storage.login_mail import discard_login_link_mail
from storage.models import LoginToken, User, utcnow
from storage.outbox import queue_login_request
from storage.tokens import hash_secret, redeem_login_token
from storage.visibility import Viewer
from web.signin_limits import TOO_MANY, forget, link_request_allowed, link_use_allowed, password_sign_in

bp = Blueprint("auth", __name__)

LINK_SENT = ("If that address belongs to someone who can sign in here, a sign-in link is on its way. "
             "It works once, within {minutes} minutes.")


# ---------------------------------------------------------------------------------------------------
# Who is looking


@bp.before_app_request
def load_viewer() -> None:
    """Puts the signed-in, still active person in g.user and g.viewer (None when signed out)."""
    g.user = None
    g.viewer = None
    user_id = session.get("user_id")
    if user_id is None or request.endpoint == "static" or request.blueprint == "api":
        return
    user = User.get_or_none(User.id == user_id)
    if user is None or not user.active or session.get("role") != user.role:
        session.clear()
        return
    g.user = user
    g.viewer = Viewer.of(user)


def _login_redirect() -> Any:
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to the sign-in page, coming back here afterwards."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return _login_redirect()
        return view(*args, **kwargs)

    return wrapped


def team_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to sign in. A client: 404, so team pages don't reveal themselves."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return _login_redirect()
        if not g.user.is_team:
            abort(404)
        return view(*args, **kwargs)

    return wrapped


def client_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to sign in. A team member: 404 (the team works in the team app)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return _login_redirect()
        if not g.user.is_client:
            abort(404)
        return view(*args, **kwargs)

    return wrapped


def home_url(user: User) -> str:
    return url_for("team.index") if user.is_team else url_for("portal.index")


def _safe_next(target: str | None, user: User) -> str:
    """Only a path on this site; anything else (//evil, https://evil) goes home."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//") \
                and "\\" not in target:
            return target
    return home_url(user)


def _sign_in(user: User) -> None:
    session.clear()  # a fresh session: nothing from before sign-in carries over
    session["user_id"] = user.id
    session["role"] = user.role
    session.permanent = True


# ---------------------------------------------------------------------------------------------------
# Rate limiting


def _remote() -> str:
    """The client's address: the socket's peer, or what trusted proxies forwarded (settings.proxy_hops)."""
    return request.remote_addr or "unknown"


def _settings() -> Any:
    from web.context import app_settings

    return app_settings()


# ---------------------------------------------------------------------------------------------------
# Views


@bp.route("/")
def root() -> Any:
    if g.user is None:
        return redirect(url_for("auth.login"))
    return redirect(home_url(g.user))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Team members: email and password. The same page offers clients a sign-in link by email."""
    settings = _settings()
    if g.user is not None and request.method == "GET":
        return redirect(_safe_next(request.args.get("next"), g.user))
    error: str | None = None
    email = (request.form.get("email") or "").strip()
    status = 200
    if request.method == "POST":
        user, error, status = password_sign_in(current_app, email, request.form.get("password") or "", _remote(),
                                               settings.login_attempts, settings.login_concurrency)
        if user is not None:
            _sign_in(user)
            return redirect(_safe_next(request.args.get("next"), user))
    return render_template("auth/login.html", error=error, email=email, next=request.args.get("next", ""),
                           minutes=settings.login_link_minutes), status


@bp.route("/login/link", methods=["POST"])
def request_link() -> Any:
    """Emails a one-time sign-in link. The answer is the same whether or not the address is known."""
    settings = _settings()
    email = (request.form.get("email") or "").strip().lower()
    if not email or "@" not in email:
        return render_template("auth/login.html", link_error="Please enter your email address.", email=email,
                               next=request.args.get("next", ""), minutes=settings.login_link_minutes), 400
    if not link_request_allowed(email, _remote(), settings.login_attempts):
        return render_template("auth/login.html", link_error=TOO_MANY, email=email, next="",
                               minutes=settings.login_link_minutes), 429
    # The same one insert whoever the address belongs to, so the answer takes the same time: the outbox
    # worker looks the person up and sends a link only to an active client (team members sign in by password).
    queue_login_request(email)
    return render_template("auth/link_sent.html", sentence=LINK_SENT.format(minutes=settings.login_link_minutes))


def _live_login_token(secret: str) -> LoginToken | None:
    row = LoginToken.select().where(LoginToken.token_hash == hash_secret(secret)).first()
    if row is None or row.used_at is not None or row.expires_at < utcnow():
        return None
    return row


@bp.route("/login/<secret>", methods=["GET", "POST"])
def magic_link(secret: str) -> Any:
    """GET shows a button; POST signs in. Mail scanners that follow links (GET) don't use up the link."""
    settings = _settings()
    if len(secret) > 200:
        abort(404)
    if request.method == "GET":
        row = _live_login_token(secret)
        user = User.get_or_none(User.id == row.user_id) if row else None
        if user is None or not user.active:
            return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes), 410
        return render_template("auth/link_confirm.html", secret=secret, person=user)
    attempt = link_use_allowed(_remote(), settings.login_attempts)
    if attempt is None:
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes,
                               sentence=TOO_MANY), 429
    user = redeem_login_token(secret)
    if user is None:
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes), 410
    forget(attempt)
    discard_login_link_mail(settings.data_dir, secret)  # a spent link's .eml file (no relay) goes at once
    _sign_in(user)
    return redirect(home_url(user))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login", signed_out=1))
