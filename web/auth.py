"""Sign-in and sign-out for both audiences: team members by password, clients by one-time email link.

`load_viewer` runs before every request and puts the signed-in person in `g.user` / `g.viewer`;
`login_required`, `team_required` and `client_required` guard the views. Sign-in attempts are counted
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

from storage.models import LoginAttempt, LoginToken, User, utcnow
from storage.tokens import hash_secret, redeem_login_token
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
                _sign_in(user)
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

        secret = create_login_token(user, settings.login_link_minutes)
        queue_login_link(settings, user, f"{settings.effective_base_url}/login/{secret}")
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
    if rate_limited(None, settings.login_attempts):
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes,
                               sentence=TOO_MANY), 429
    user = redeem_login_token(secret)
    if user is None:
        record_attempt(None)
        return render_template("auth/link_invalid.html", minutes=settings.login_link_minutes), 410
    _sign_in(user)
    return redirect(home_url(user))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login", signed_out=1))
