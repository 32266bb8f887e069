"""Sign-in and sign-out for both audiences: team members by password, clients by one-time email link.

`load_viewer` runs before every request: the cookie carries a session secret, checked against its
server-side row (storage/sessions.py), so a session ended anywhere stops working at once; the signed-in
person goes in `g.user` / `g.viewer`. `login_required`, `team_required`, `client_required` and
`admin_required` guard the views (who may manage is decided in storage/permissions.py). Sign-in attempts are counted
in LoginAttempt rows (per email address and per remote address), so the limit holds across processes;
requests for a sign-in link are counted apart (see link_limits). Behind trusted reverse proxies
(settings.proxy_hops), the remote address is the one they forwarded.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for

from storage.models import LoginAttempt, User, utcnow
from storage.permissions import can_manage
from storage.sessions import LINK, PASSWORD, Lifetimes, end_session, live_session, start_session
from storage.tokens import INVITE, live_login_token, use_login_token
from storage.visibility import Viewer
from web.passwords import verify_password

bp = Blueprint("auth", __name__)

RATE_WINDOW = dt.timedelta(minutes=15)
LINKS_PER_EMAIL = 5  # sign-in links one address may be sent in RATE_WINDOW (fewer when login_attempts is lower)
LINK_REQUESTS_PER_ATTEMPT = 10  # link requests per remote address: this many times login_attempts
TOO_MANY = "Too many sign-in attempts. Please wait 15 minutes and try again."
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


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed out: redirect to sign in. A client: 404. A team member who may not manage: 403."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return _login_redirect()
        if not g.user.is_team:
            abort(404)
        if not can_manage(g.user):
            abort(403, "Only the agency's admins can do this. Ask one of them.")
        return view(*args, **kwargs)

    return wrapped


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


def _rate_keys(email: str | None) -> list[str]:
    keys = [f"ip:{_remote()}"]
    if email:
        keys.append(f"email:{_email_key(email)}")
    return keys


def _email_key(email: str) -> str:
    return email.strip().lower()[:320]


def _used(key: str, since: dt.datetime) -> int:
    return LoginAttempt.select().where((LoginAttempt.key == key) & (LoginAttempt.created_at > since)).count()


def rate_limited(email: str | None, limit: int) -> bool:
    """Whether the email address or the remote address used up its attempts in the last 15 minutes."""
    since = utcnow() - RATE_WINDOW
    return any(_used(key, since) >= limit for key in _rate_keys(email))


def record_attempt(email: str | None) -> None:
    _record(_rate_keys(email))


def _record(keys: list[str]) -> None:
    now = utcnow()
    LoginAttempt.insert_many([{"key": k, "created_at": now} for k in keys]).execute()
    # Old rows are of no use; forgetting them keeps the table small.
    LoginAttempt.delete().where(LoginAttempt.created_at < now - dt.timedelta(days=1)).execute()


def link_limits(login_attempts: int) -> tuple[int, int]:
    """(sign-in links per email address, link requests per remote address) allowed in 15 minutes.

    Asking for a link proves nothing and costs an attacker nothing, so it is counted apart from password
    attempts: per address asked for, so nobody's mailbox is flooded, and, far more generously, per remote
    address (many clients may share one office network or proxy), so link requests never use up the
    password attempts of everyone behind the same address.
    """
    return max(1, min(LINKS_PER_EMAIL, login_attempts)), max(1, login_attempts) * LINK_REQUESTS_PER_ATTEMPT


def link_rate_limited(email: str, login_attempts: int) -> bool:
    per_email, per_remote = link_limits(login_attempts)
    since = utcnow() - RATE_WINDOW
    return _used(f"link-email:{_email_key(email)}", since) >= per_email \
        or _used(f"link-ip:{_remote()}", since) >= per_remote


def record_link_request(email: str) -> None:
    _record([f"link-email:{_email_key(email)}", f"link-ip:{_remote()}"])


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
    error = None
    email = (request.form.get("email") or "").strip()
    status = 200
    if request.method == "POST":
        if rate_limited(email, settings.login_attempts):
            error, status = TOO_MANY, 429
        else:
            user = User.get_or_none(User.email == email.lower()) if email else None
            password = request.form.get("password") or ""
            ok = verify_password(user.password_hash if user else None, password)
            if ok and user is not None and user.active and user.is_team:
                sign_in(user, PASSWORD)
                return redirect(_safe_next(request.args.get("next"), user))
            record_attempt(email)
            error, status = "That email address and password don't match. Clients: ask for a sign-in link below.", 401
    return render_template("auth/login.html", error=error, email=email, next=request.args.get("next", ""),
                           minutes=settings.login_link_minutes), status


@bp.route("/login/link", methods=["POST"])
def request_link() -> Any:
    """Emails a one-time sign-in link. The answer is the same whether or not the address is known."""
    from storage.tokens import create_login_token

    settings = _settings()
    email = (request.form.get("email") or "").strip().lower()
    if not email or "@" not in email:
        return render_template("auth/login.html", link_error="Please enter your email address.", email=email,
                               next=request.args.get("next", ""), minutes=settings.login_link_minutes), 400
    if link_rate_limited(email, settings.login_attempts):
        return render_template("auth/login.html", link_error=TOO_MANY, email=email, next="",
                               minutes=settings.login_link_minutes), 429
    record_link_request(email)
    user = User.get_or_none(User.email == email)
    # Clients sign in by emailed link; team members by password, so a link is never a way around it
    # (an operator can still print one with `workrate login-link`). The answer is the same either way.
    if user is not None and user.active and user.is_client:
        from gateway.outbound.login_links import queue_login_link

        secret = create_login_token(user, settings.login_link_minutes,
                                    target=_local_path(request.args.get("next")))
        queue_login_link(settings, user, f"{settings.effective_base_url}/login/{secret}")
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
    if rate_limited(None, settings.login_attempts):
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes,
                               sentence=TOO_MANY), 429
    used = use_login_token(secret)
    if used is None:
        record_attempt(None)
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes), 410
    sign_in(used.user, LINK)
    return redirect(_safe_next(_local_path(request.args.get("next")) or used.target, used.user))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    if g.user is not None and g.web_session is not None:
        end_session(g.user, g.web_session.id)
    session.clear()
    return redirect(url_for("auth.login", signed_out=1))
