"""Blueprint "people": the agency's team. An admin invites a teammate by email (the invitation lets them
choose a password), resends it, changes roles, deactivates and reactivates; the invited person accepts at
/welcome/<secret>. Every change goes through storage/directory.py, as the CLI's do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from config import Settings
from storage.agency import DEFAULT_NAME, agency
from storage.db import write_transaction
from storage.directory import (
    EMAIL_RE,
    DirectoryError,
    add_user,
    normalize_email,
    set_active,
    set_team_role,
)
from storage.models import ADMIN, MEMBER, TEAM, LoginToken, User, utcnow
from storage.sessions import PASSWORD
from storage.tokens import INVITE, create_login_token, live_login_token, use_login_token
from web.auth import admin_required, sign_in
from web.context import app_settings
from web.formguard import already_done, remember_done
from web.passwords import PASSWORD_MIN, hash_password
from web.threadview import MAX_ID

bp = Blueprint("people", __name__)


@dataclass
class TeamRow:
    user: User
    status: str  # "pending", "active", "deactivated"
    is_me: bool


def team_rows() -> list[TeamRow]:
    rows = []
    for u in User.select().where(User.role == TEAM).order_by(User.active.desc(), User.name, User.id):
        status = "deactivated" if not u.active else "pending" if u.is_pending else "active"
        rows.append(TeamRow(u, status, u.id == g.user.id))
    return rows


def send_team_invitation(settings: Settings, user: User) -> None:
    """Emails a teammate their set-your-password link (INVITATION_DAYS, single use); earlier ones die."""
    from gateway.outbound.login_links import queue_login_link

    LoginToken.update(expires_at=utcnow()).where(
        (LoginToken.user == user) & (LoginToken.purpose == INVITE) & (LoginToken.expires_at > utcnow())).execute()
    secret = create_login_token(user, settings.invitation_days * 24 * 60, purpose=INVITE)
    days = settings.invitation_days
    # An agency that never named itself would read "WorkRate Messages invites you to WorkRate": say "Your agency".
    name = agency().name
    queue_login_link(settings, user, f"{settings.effective_base_url}/welcome/{secret}", invitation=True,
                     valid_for=f"once, within {days} day{'s' if days != 1 else ''}",
                     agency_name="" if name == DEFAULT_NAME else name)


def _page(form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200) -> Any:
    return render_template("manage/people.html", rows=team_rows(), form=form or {"role": MEMBER},
                           errors=errors or {}), status


@bp.route("/people")
@admin_required
def index() -> Any:
    return _page()


@bp.route("/people/invite", methods=["POST"])
@admin_required
def invite() -> Any:
    if (done := already_done()) is not None:
        return done
    form = {"name": (request.form.get("name") or "").strip(), "email": normalize_email(request.form.get("email", "")),
            "role": request.form.get("role", MEMBER)}
    errors: dict[str, str] = {}
    if not form["name"]:
        errors["name"] = "Please give their name."
    if not EMAIL_RE.match(form["email"]):
        errors["email"] = "Please give a valid email address, such as ann@agency.com."
    elif (existing := User.get_or_none(User.email == form["email"])) is not None:
        errors["email"] = (f"{existing.name} already has this address"
                           + (" (as a client contact)." if existing.is_client else "."))
    if form["role"] not in (ADMIN, MEMBER):
        errors["role"] = "Choose Admin or Member."
    if errors:
        return _page(form, errors, 400)
    try:
        with write_transaction():
            user = add_user(form["email"], form["name"], TEAM, team_role=form["role"])
            send_team_invitation(app_settings(), user)
    except DirectoryError as e:
        return _page(form, {"form": str(e)}, 400)
    flash(f"{user.name} is invited; the invitation is on its way to {user.email}.")
    return remember_done(url_for("people.index"))


def _team_member(user_id: int) -> User:
    user = User.get_or_none((User.id == user_id) & (User.role == TEAM)) if 0 < user_id <= MAX_ID else None
    if user is None:
        abort(404, "This person is no longer on the team. Please reload the page.")
    return user


@bp.route("/people/<int:user_id>/resend", methods=["POST"])
@admin_required
def resend(user_id: int) -> Any:
    if (done := already_done()) is not None:
        return done
    user = _team_member(user_id)
    if not user.is_pending or not user.active:
        flash(f"{user.name} has already accepted the invitation." if user.active
              else f"{user.name} is deactivated; reactivate them first.")
    else:
        send_team_invitation(app_settings(), user)
        flash(f"A new invitation is on its way to {user.email}; the earlier link no longer works.")
    return remember_done(url_for("people.index"))


@bp.route("/people/<int:user_id>/role", methods=["POST"])
@admin_required
def role(user_id: int) -> Any:
    if (done := already_done()) is not None:
        return done
    user = _team_member(user_id)
    try:
        set_team_role(user, request.form.get("role", ""))
    except DirectoryError as e:
        return _page(errors={"form": str(e)}, status=400)
    flash(f"{user.name} is now {'an admin' if user.team_role == ADMIN else 'a member'}.")
    return remember_done(url_for("people.index"))


@bp.route("/people/<int:user_id>/active", methods=["POST"])
@admin_required
def active(user_id: int) -> Any:
    if (done := already_done()) is not None:
        return done
    user = _team_member(user_id)
    want = request.form.get("active") == "1"
    if user.active == want:
        flash(f"{user.name} was already {'active' if want else 'deactivated'}.")
        return remember_done(url_for("people.index"))
    try:
        set_active(user, want)
    except DirectoryError as e:
        return _page(errors={"form": str(e)}, status=400)
    flash(f"{user.name} is reactivated." if want else
          f"{user.name} is deactivated: signed out everywhere, and their reply addresses no longer work.")
    return remember_done(url_for("people.index"))


# ---------------------------------------------------------------------------------------------------
# Accepting an invitation


@bp.route("/welcome/<secret>", methods=["GET", "POST"])
def accept_invitation(secret: str) -> Any:
    row = live_login_token(secret)
    if row is None or row.purpose != INVITE:
        return render_template("auth/link_invalid.html", minutes=app_settings().login_link_minutes,
                               sentence="This invitation link no longer works: it was used, replaced by a newer "
                                        "one, or it expired. Ask an admin of your agency to send a new one."), 410
    errors: dict[str, str] = {}
    if request.method == "POST":
        password = request.form.get("password") or ""
        if len(password) < PASSWORD_MIN:
            errors["password"] = f"A password needs at least {PASSWORD_MIN} characters."
        elif len(password) > 1000:
            errors["password"] = "A password can be at most 1,000 characters long."
        elif password != (request.form.get("password_again") or ""):
            errors["password_again"] = "The two passwords are not the same."
        if not errors:
            used = use_login_token(secret)
            if used is None:
                errors["form"] = "This invitation was just used. Please sign in."
            else:
                User.update(password_hash=hash_password(password)).where(User.id == used.user.id).execute()
                sign_in(used.user, PASSWORD)
                flash(f"Welcome, {used.user.name}. Your password is set.")
                return redirect(url_for("team.index"))
    return render_template("manage/welcome.html", person=row.user, agency=agency(), errors=errors,
                           password_min=PASSWORD_MIN), 400 if errors else 200
