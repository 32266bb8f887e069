"""Blueprint "setup": the first run. Until the agency has a team member, every page but the setup page
says so; the setup page (its single-use URL printed by `workrate run`) names the agency and creates the
first admin, then signs them in.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from config import Settings
from storage.agency import complete_setup, is_set_up, new_setup_token, setup_token_valid
from storage.directory import EMAIL_RE, DirectoryError, normalize_email
from storage.sessions import SETUP
from web.auth import sign_in
from web.passwords import PASSWORD_MIN, hash_password

bp = Blueprint("setup", __name__)
SET_UP = "workrate.set_up"  # app.extensions flag: once set up, never asked again in this process


def setup_url(settings: Settings, secret: str) -> str:
    return f"{settings.effective_base_url}/setup/{secret}"


def announce_setup(settings: Settings, echo: Callable[[str], object]) -> None:
    """On a database without a team, prints the single-use setup URL (a fresh one each start)."""
    from storage.db import database

    with database.connection_context():
        if is_set_up():
            return
        url = setup_url(settings, new_setup_token())
    echo("")
    echo("WorkRate Messages is not set up yet. To create your agency and its first admin, open:")
    echo(f"    {url}")
    echo("(The link works once. Restarting `workrate run` prints a new one.)")
    echo("")


@bp.before_app_request
def require_setup() -> Any:
    """Every page but the setup page (and static files) waits for the first admin."""
    if current_app.extensions.get(SET_UP) or request.endpoint in ("static", "setup.setup", "branding.theme"):
        return None
    if request.blueprint == "api":
        return None  # the API needs a team member's token, which cannot exist before setup
    if is_set_up():
        current_app.extensions[SET_UP] = True
        return None
    return render_template("setup/not_set_up.html"), 503


@bp.route("/setup/<secret>", methods=["GET", "POST"])
def setup(secret: str) -> Any:
    if len(secret) > 100 or not setup_token_valid(secret):
        if is_set_up():
            flash("This WorkRate is already set up. Please sign in.")
            return redirect(url_for("auth.login"))
        return render_template("setup/not_set_up.html", stale=True), 404
    form = {k: (request.form.get(k) or "").strip() for k in ("agency", "name", "email")}
    errors: dict[str, str] = {}
    if request.method == "POST":
        password = request.form.get("password") or ""
        if not form["agency"]:
            errors["agency"] = "Please give your agency's name."
        if not form["name"]:
            errors["name"] = "Please give your name."
        email = normalize_email(form["email"])
        if not EMAIL_RE.match(email):
            errors["email"] = "Please give a valid email address, such as kim@agency.com."
        if len(password) < PASSWORD_MIN:
            errors["password"] = f"A password needs at least {PASSWORD_MIN} characters."
        elif password != (request.form.get("password_again") or ""):
            errors["password_again"] = "The two passwords are not the same."
        if not errors:
            try:
                user = complete_setup(secret, form["agency"], form["name"], email, hash_password(password))
            except DirectoryError as e:
                errors["form"] = str(e)
            else:
                current_app.extensions[SET_UP] = True
                from web.branding import forget_cached

                forget_cached()
                sign_in(user, SETUP)
                flash(f"Welcome, {user.name}. {form['agency']} is ready: create your first workspace.")
                return redirect(url_for("workspaces.new"))
    return render_template("setup/setup.html", form=form, errors=errors, secret=secret,
                           password_min=PASSWORD_MIN), 400 if errors else 200
