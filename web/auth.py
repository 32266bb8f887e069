"""Sign-in and sign-out for both audiences: team members by password, clients by one-time email link.

`load_viewer` runs before every request: the cookie carries a session secret, checked against its
server-side row (storage/sessions.py), so a session ended anywhere stops working at once; the signed-in
person goes in `g.user` / `g.viewer`. `login_required`, `team_required`, `client_required` and
`admin_required` guard the views (who may manage is decided in storage/permissions.py). Sign-in attempts
are counted (before any password is checked) in LoginAttempt rows, so the limits hold across processes;
see web/signin_limits.py. Behind trusted reverse proxies (settings.proxy_hops), the remote address is the
one they forwarded.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for

from storage.link_mail import discard_link_mail
from storage.mail_log import LOGIN_LINK
from storage.models import User
from storage.outbox import queue_login_request
from storage.permissions import can_manage
from storage.sessions import LINK, PASSWORD, Lifetimes, end_session, live_session, start_session
from storage.tokens import INVITE, hash_secret, live_login_token, use_login_token
from storage.visibility import Viewer
from web.signin_limits import TOO_MANY, forget, link_request_allowed, link_use_allowed, password_sign_in

bp = Blueprint("auth", __name__)

LINK_SENT = ("If that address belongs to someone who can sign in here, a sign-in link is on its way. "
             "It works once, within {minutes} minutes.")


# ---------------------------------------------------------------------------------------------------
# Who is looking


@bp.record_once
def _cookie_lifetime(state: Any) -> None:
    # The cookie may outlive any session; the session's row decides when it ends.
    settings = state.app.extensions["workrate_settings"]
    state.app.permanent_session_lifetime = dt.timedelta(
        days=max(settings.client_session_days, settings.session_idle_days, settings.team_session_hours / 24 + 1))


def lifetimes() -> Lifetimes:
    settings = _settings()
    return Lifetimes(idle=dt.timedelta(days=settings.session_idle_days),
                     team=dt.timedelta(hours=settings.team_session_hours),
                     client=dt.timedelta(days=settings.client_session_days))


@bp.before_app_request
def load_viewer() -> None:
    """Puts the signed-in, still active person in g.user and g.viewer (None when signed out), and their
    session's row in g.web_session."""
    g.user = None
    g.viewer = None
    g.web_session = None
    secret = session.get("sid")
    if request.endpoint == "static" or request.blueprint == "api":
        return
    if not secret:
        if "user_id" in session:  # a cookie from before server-side sessions: it signs nobody in
            session.clear()
        return
    row = live_session(str(secret), lifetimes().idle)
    if row is None or row.user.id != session.get("user_id"):
        session.clear()
        return
    g.user = row.user
    g.viewer = Viewer.of(row.user)
    g.web_session = row


def _login_redirect() -> Any:
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _guarded(view: Callable[..., Any], check: Callable[[User], None]) -> Callable[..., Any]:
    """view, for signed-in people only (signed out: redirect to sign in, back here afterwards), once
    check(user) has let them through (it aborts with the page's answer otherwise)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return _login_redirect()
        check(g.user)
        return view(*args, **kwargs)

    return wrapped


def _anyone(user: User) -> None:
    pass


def _team_only(user: User) -> None:
    if not user.is_team:
        abort(404)  # team pages don't reveal themselves to clients


def _clients_only(user: User) -> None:
    if not user.is_client:
        abort(404)  # the team works in the team app


def _managers_only(user: User) -> None:
    _team_only(user)
    if not can_manage(user):
        abort(403, "Only the agency's admins can do this. Ask one of them.")


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to the sign-in page, coming back here afterwards."""
    return _guarded(view, _anyone)


def team_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to sign in. A client: 404, so team pages don't reveal themselves."""
    return _guarded(view, _team_only)


def client_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to sign in. A team member: 404 (the team works in the team app)."""
    return _guarded(view, _clients_only)


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to sign in. A client: 404. A team member who may not manage: 403."""
    return _guarded(view, _managers_only)


def home_url(user: User) -> str:
    return url_for("team.index") if user.is_team else url_for("portal.index")


def _safe_next(target: str | None, user: User) -> str:
    """Only a path on this site; anything else (//evil, https://evil) goes home."""
    return _local_path(target) or home_url(user)


def sign_in(user: User, kind: str) -> None:
    """Starts a server-side session for user and puts its secret in the cookie."""
    session.clear()  # a fresh session: nothing from before sign-in carries over
    secret, _ = start_session(user, kind, lifetimes().absolute(user),
                              user_agent=request.headers.get("User-Agent", ""), remote=_remote())
    session["sid"] = secret
    session["user_id"] = user.id
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
            sign_in(user, PASSWORD)
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
    queue_login_request(email, _local_path(request.args.get("next")))
    return render_template("auth/link_sent.html", sentence=LINK_SENT.format(minutes=settings.login_link_minutes))


def _local_path(target: str | None) -> str | None:
    """target when it is a path on this site, else None."""
    if target and len(target) <= 500:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//") \
                and "\\" not in target:
            return target
    return None


@bp.route("/login/<secret>", methods=["GET", "POST"])
def magic_link(secret: str) -> Any:
    """GET shows a button; POST signs in and lands on the link's page. Mail scanners that follow links (GET)
    don't use up the link. On a device already signed in as the link's person (a remembered device), GET
    goes straight to the page."""
    settings = _settings()
    if len(secret) > 200:
        abort(404)
    row = live_login_token(secret)
    if row is not None and row.purpose == INVITE:
        return redirect(url_for("people.accept_invitation", secret=secret))
    if request.method == "GET":
        if row is None:
            return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes), 410
        if g.user is not None and g.user.id == row.user.id:  # a remembered device: straight there
            return redirect(_safe_next(_local_path(request.args.get("next")) or row.target, g.user))
        return render_template("auth/link_confirm.html", secret=secret, person=row.user, row=row,
                               next=_local_path(request.args.get("next")) or "")
    attempt = link_use_allowed(_remote(), settings.login_attempts)
    if attempt is None:
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes,
                               sentence=TOO_MANY), 429
    used = use_login_token(secret)
    if used is None:
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes), 410
    forget(attempt)
    discard_link_mail(settings.data_dir, LOGIN_LINK, hash_secret(secret))  # its .eml file (no relay) goes now
    sign_in(used.user, LINK)
    return redirect(_safe_next(_local_path(request.args.get("next")) or used.target, used.user))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    if g.user is not None and g.web_session is not None:
        end_session(g.user, g.web_session.id)
    session.clear()
    return redirect(url_for("auth.login", signed_out=1))
