"""Blueprint "account": a person's own sessions (see them, end one, sign out everywhere), a team member's
password, and everyone's notification settings.

The notification settings page is one form: per workspace on/off and how (at once, if unread after N
minutes, a daily digest), then the person's minutes, digest time and quiet hours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for

from storage.models import User
from storage.notify_schedule import (
    DIGEST,
    MAX_UNREAD_MINUTES,
    MODES,
    NOW,
    UNREAD,
    Defaults,
    format_clock,
    format_quiet_hours,
    parse_clock,
    parse_quiet_hours,
)
from storage.notify_settings import notification_rows, personal_timing, set_modes, set_notifications, set_timing
from storage.permissions import can_manage
from storage.sessions import active_sessions, cut_off, end_session, end_sessions
from web.auth import lifetimes, login_required, team_required
from web.context import app_settings
from web.formguard import new_nonce
from web.passwords import PASSWORD_MIN, hash_password, verify_password

bp = Blueprint("account", __name__)


@dataclass
class SessionView:
    id: int
    current: bool
    kind: str
    device: str
    remote: str
    created_at: Any
    last_seen_at: Any


def describe_device(user_agent: str) -> str:
    """A short, human name for a browser from its User-Agent ("Chrome on Linux")."""
    ua = user_agent or ""
    browser = next((name for key, name in (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
                                            ("Safari/", "Safari")) if key in ua), "A browser")
    system = next((name for key, name in (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"),
                                           ("Mac OS", "Mac"), ("Windows", "Windows"), ("Linux", "Linux"))
                   if key in ua), "")
    return f"{browser} on {system}" if system else browser


def _sessions_page(error: str | None = None, status: int = 200) -> Any:
    current = g.web_session.id if g.web_session is not None else None
    rows = [SessionView(id=s.id, current=s.id == current, kind=s.kind, device=describe_device(s.user_agent),
                        remote=s.remote, created_at=s.created_at, last_seen_at=s.last_seen_at)
            for s in active_sessions(g.user, lifetimes().idle)]
    return render_template("account/sessions.html", sessions=rows, error=error,
                           password_min=PASSWORD_MIN), status


@bp.route("/account")
@login_required
def sessions() -> Any:
    return _sessions_page()


@bp.route("/account/sessions/<int:session_id>/end", methods=["POST"])
@login_required
def end_one(session_id: int) -> Any:
    current = g.web_session.id if g.web_session is not None else None
    if not end_session(g.user, session_id):
        flash("That session had already ended.")
        return redirect(url_for("account.sessions"))
    if session_id == current:
        session.clear()
        return redirect(url_for("auth.login", signed_out=1))
    flash("The session is ended; that device is signed out.")
    return redirect(url_for("account.sessions"))


@bp.route("/account/sign-out-everywhere", methods=["POST"])
@login_required
def everywhere() -> Any:
    """Ends every session of the person, this one included, and their unused sign-in links."""
    cut_off(g.user, reply_addresses=False)
    session.clear()
    return redirect(url_for("auth.login", signed_out=1))


@bp.route("/account/password", methods=["POST"])
@team_required
def change_password() -> Any:
    """A team member changes their password: every other session ends at once."""
    current_pw = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    again = request.form.get("new_password_again", "")
    errors: dict[str, str] = {}
    if not verify_password(g.user.password_hash, current_pw):
        errors["current_password"] = "That is not your current password."
    if len(new) < PASSWORD_MIN:
        errors["new_password"] = f"A password needs at least {PASSWORD_MIN} characters."
    elif len(new) > 1000:
        errors["new_password"] = "A password can be at most 1,000 characters long."
    elif new != again:
        errors["new_password_again"] = "The two new passwords are not the same."
    if errors:
        return render_template("account/sessions.html", sessions=[], password_errors=errors,
                               password_min=PASSWORD_MIN, error=None), 400
    User.update(password_hash=hash_password(new)).where(User.id == g.user.id).execute()
    end_sessions(g.user, keep=g.web_session.id if g.web_session is not None else None)
    flash("Your password is changed; every other session is signed out.")
    return redirect(url_for("account.sessions"))


# ---------------------------------------------------------------------------------------------------
# Notification settings


MODE_LABELS = {NOW: "Immediately", UNREAD: "If still unread after {n} minutes", DIGEST: "In a daily digest at {t}"}


def _defaults() -> Defaults:
    settings = app_settings()
    return Defaults(unread_minutes=settings.notify_unread_minutes, team_quiet_hours=settings.team_quiet_hours)


def _timing_form(defaults: Defaults) -> dict[str, str]:
    timing = personal_timing(g.user, defaults)
    return {"unread_minutes": str(timing.unread_minutes), "digest_time": format_clock(timing.digest_minute),
            "quiet_from": format_clock(timing.quiet[0]) if timing.quiet else "",
            "quiet_until": format_clock(timing.quiet[1]) if timing.quiet else ""}


def _read_timing(form: Any) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """The typed values, the errors next to their fields, and the values to keep."""
    typed = {k: (form.get(k) or "").strip()[:20] for k in ("unread_minutes", "digest_time", "quiet_from",
                                                           "quiet_until")}
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    if typed["unread_minutes"].isdigit() and 1 <= int(typed["unread_minutes"]) <= MAX_UNREAD_MINUTES:
        values["unread_minutes"] = int(typed["unread_minutes"])
    else:
        errors["unread_minutes"] = f"Give a whole number of minutes from 1 to {MAX_UNREAD_MINUTES:,}."
    try:
        values["digest_minute"] = parse_clock(typed["digest_time"])
    except ValueError as e:
        errors["digest_time"] = str(e)
    if not typed["quiet_from"] and not typed["quiet_until"]:
        values["quiet"] = None
    elif not typed["quiet_from"] or not typed["quiet_until"]:
        errors["quiet_from" if not typed["quiet_from"] else "quiet_until"] = \
            "Give both times, or leave both empty for no quiet hours."
    else:
        try:
            values["quiet"] = parse_quiet_hours(f"{typed['quiet_from']}-{typed['quiet_until']}")
        except ValueError as e:
            errors["quiet_until"] = str(e)
    return typed, errors, values


def _notifications_page(rows: list[Any], form: dict[str, str], errors: dict[str, str], status: int = 200) -> Any:
    defaults = _defaults()
    timing = personal_timing(g.user, defaults)
    return render_template(
        "account/notifications.html", rows=rows, form=form, errors=errors, modes=MODES, mode_labels=MODE_LABELS,
        timing=timing, default_quiet=format_quiet_hours(timing.default_quiet).replace("-", "–"),
        default_minutes=defaults.unread_minutes, operator_override=app_settings().notify_delay,
        time_zone=g.user.time_zone or "UTC", saved_digest=format_clock(timing.digest_minute)), status


@bp.route("/settings/notifications", methods=["GET", "POST"])
@login_required
def notifications() -> Any:
    rows = notification_rows(g.user)
    if request.method == "GET":
        return _notifications_page(rows, _timing_form(_defaults()), {})
    wanted = {int(v) for v in request.form.getlist("email_on") if v.isdigit() and len(v) < 12}
    shown = {int(v) for v in request.form.getlist("shown") if v.isdigit() and len(v) < 12}
    modes = {r.workspace_id: request.form.get(f"mode-{r.workspace_id}", "") for r in rows if r.workspace_id in shown}
    errors = {f"mode-{w}": "Choose one of the listed ways." for w, m in modes.items() if m and m not in MODES}
    typed, timing_errors, timing = ({}, {}, {}) if "unread_minutes" not in request.form else \
        _read_timing(request.form)
    errors.update(timing_errors)
    if errors:
        for r in rows:  # what was typed is kept
            if r.workspace_id in shown:
                r.email_on = r.workspace_id in wanted
                r.mode = modes.get(r.workspace_id) or r.mode
        return _notifications_page(rows, typed or _timing_form(_defaults()), errors, 400)
    changed = set_notifications(g.user, {r.workspace_id: r.workspace_id in wanted
                                         for r in rows if r.workspace_id in shown})
    changed += set_modes(g.user, {w: m for w, m in modes.items() if m})
    if timing:
        changed += set_timing(g.user, _defaults(), **timing)
    flash("Your notification settings are saved." if changed or shown else "Nothing to change.")
    return redirect(url_for("account.notifications"))


@bp.app_context_processor
def _page_globals() -> dict[str, Any]:
    """form_nonce() for the guarded forms (web/formguard.py); may_manage for the navigation."""
    user = g.get("user")
    return {"form_nonce": new_nonce, "may_manage": can_manage(user)}
