"""Blueprint "maillog": the mail logs, for admins. Every received mail (time, sender, outcome, the reason in
a sentence, the SMTP code; the raw mail and the trimmed part on its own page) and every notification's
delivery (queued, sent, the relay's answer, bounced), for the whole agency or one workspace.

A held reply (storage/held.py) shows in the agency's log and in the log of the workspace it would be posted
to, with its actions: "Post it" (a loop-held reply, posted as its sender through the one write path) and
"Discard" (any waiting one). Both are POSTs with a CSRF token and a one-time nonce; who decided, and when,
is kept on the mail's row and shown beside it.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from storage.files import FileStore
from storage.held import HeldPost, NotConfirmable, discard, held_of_mails, loop_held_in, release
from storage.link_mail import discard_link_mail
from storage.mail_log import CONFIRM_POST, InboundEmail, OutboxEmail, read_raw_mail
from storage.models import Message, ReplyToken, Thread, User, Workspace, utcnow
from storage.refusals import RcptRefusal
from web.auth import admin_required
from web.context import app_settings
from web.formguard import already_done, remember_done
from web.team import get_workspace_or_404
from web.threadview import MAX_ID

bp = Blueprint("maillog", __name__)

PAGE = 50
RAW_SHOWN = 512 * 1024  # the detail page shows at most this much of a raw mail

OUTCOME_WORDS = {"accepted": "posted", "dropped": "not posted", "rejected": "refused", "deferred": "try later"}


def _before() -> int | None:
    raw = request.args.get("before", "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _inbound_of(workspace: Workspace | None) -> Any:
    query = InboundEmail.select()
    if workspace is not None:
        thread = Thread.select(Thread.id).where(Thread.workspace == workspace)
        tokens = ReplyToken.select(ReplyToken.token_hash).where(ReplyToken.thread.in_(thread))
        posted = Message.select(Message.id).where(Message.thread.in_(thread))
        # A reply held for confirmation that came through reply@ has no token: its held post names the thread.
        held = HeldPost.select(HeldPost.inbound_email_id).where(
            HeldPost.thread.in_(thread) & HeldPost.inbound_email_id.is_null(False))
        query = query.where(InboundEmail.reply_token.in_(tokens) | InboundEmail.message.in_(posted)
                            | InboundEmail.id.in_(held))
    return query


def _outbound_of(workspace: Workspace | None) -> Any:
    query = OutboxEmail.select()
    if workspace is not None:
        query = query.where(OutboxEmail.thread.in_(Thread.select(Thread.id).where(Thread.workspace == workspace)))
    return query


def _refusals_of(workspace: Workspace | None) -> Any:
    """RCPT refusals; for a workspace, those of its (revoked or archived) reply addresses, found by the hash
    of their token (the address itself is kept redacted)."""
    query = RcptRefusal.select()
    if workspace is not None:
        tokens = ReplyToken.select(ReplyToken.token_hash).where(
            ReplyToken.thread.in_(Thread.select(Thread.id).where(Thread.workspace == workspace)))
        query = query.where(RcptRefusal.token_hash.in_(tokens))
    return query


def _page(query: Any, model: Any) -> tuple[list[Any], int | None]:
    before = _before()
    if before is not None:
        query = query.where(model.id < before)
    rows = list(query.order_by(model.id.desc()).limit(PAGE + 1))
    more = rows[PAGE - 1].id if len(rows) > PAGE else None
    return rows[:PAGE], more


def _render(workspace: Workspace | None) -> Any:
    tab = request.args.get("tab") if request.args.get("tab") in ("sent", "refused") else "received"
    if tab == "sent":
        rows, more = _page(_outbound_of(workspace), OutboxEmail)
    elif tab == "refused":
        rows, more = _page(_refusals_of(workspace), RcptRefusal)
    else:
        rows, more = _page(_inbound_of(workspace), InboundEmail)
    extra = _held_context(rows) if tab == "received" else {}
    return render_template("manage/maillog.html", workspace=workspace, tab=tab, rows=rows, more=more,
                           outcome_words=OUTCOME_WORDS, back=request.full_path.rstrip("?"), **extra)


def _held_context(rows: list[Any]) -> dict[str, Any]:
    """The held posts of received mail rows, and the names of the admins who decided on some."""
    deciders = {row.decided_by_id for row in rows if row.decided_by_id is not None}
    names = {u.id: u.name for u in User.select(User.id, User.name).where(User.id.in_(list(deciders)))} \
        if deciders else {}
    held, now = held_of_mails([row.id for row in rows]), utcnow()
    waiting = {row_id for row_id, posts in held.items() if any(h.waiting(now) for h in posts)}
    return {"held": held, "deciders": names, "now": now, "waiting_ids": waiting}


@bp.app_template_global()
def loop_held_here(workspace: Workspace) -> dict[str, int]:
    """Replies the loop breaker holds in the workspace's thread, by sender (team only): the team is told
    beside the composer, so that a real client's replies do not wait unseen until they expire."""
    user = getattr(g, "user", None)
    if user is None or not user.is_team:
        return {}
    thread = Thread.get_or_none(Thread.workspace == workspace.id)
    return loop_held_in(thread.id) if thread is not None else {}


@bp.route("/mail")
@admin_required
def agency_log() -> Any:
    return _render(None)


@bp.route("/w/<slug>/mail")
@admin_required
def workspace_log(slug: str) -> Any:
    return _render(get_workspace_or_404(slug))


@bp.route("/mail/in/<int:inbound_id>")
@admin_required
def received(inbound_id: int) -> Any:
    """One received mail: what the gateway decided, the raw mail (escaped text) and the part trimmed off."""
    row = InboundEmail.get_or_none(InboundEmail.id == inbound_id) if 0 < inbound_id <= MAX_ID else None
    if row is None:
        abort(404)
    raw = read_raw_mail(row.raw_key, FileStore(app_settings().effective_files_dir), RAW_SHOWN + 1) \
        if row.raw_key else None
    message = row.message if row.message is not None else None
    return render_template("manage/maillog_detail.html", row=row, message=message, outcome_words=OUTCOME_WORDS,
                           raw=raw[:RAW_SHOWN].decode("utf-8", errors="replace") if raw else None,
                           truncated=raw is not None and len(raw) > RAW_SHOWN, back=request.path,
                           **_held_context([row]))


# Where an action on a held reply goes back to: the log (agency or a workspace's, a tab, a page) or a mail.
_BACK = re.compile(r"^/(?:w/[A-Za-z0-9_-]{1,100}/)?mail(?:/in/\d{1,18})?(?:\?[A-Za-z0-9_=&-]{0,100})?$")


def _back() -> str:
    back = request.form.get("back", "")
    return back if _BACK.fullmatch(back) else url_for("maillog.agency_log")


def _held_or_404(held_id: int) -> int:
    if not 0 < held_id <= MAX_ID:
        abort(404)
    return held_id


@bp.route("/mail/held/<int:held_id>/post", methods=["POST"])
@admin_required
def release_held(held_id: int) -> Any:
    """Posts a loop-held reply as its sender, with its files, to the audience of the address it came through."""
    if (done := already_done()) is not None:
        return done
    back = _back()
    try:
        message = release(_held_or_404(held_id), g.user, notify_delay=app_settings().notify_delay)
    except NotConfirmable as e:
        flash(str(e))
        return redirect(back)
    thread = Thread.get_by_id(message.thread_id)
    flash(f"The held reply is posted in {Workspace.get_by_id(thread.workspace_id).name}, as "
          f"{User.get_by_id(message.author_id).name} wrote it.")
    return remember_done(back)


@bp.route("/mail/held/<int:held_id>/discard", methods=["POST"])
@admin_required
def discard_held(held_id: int) -> Any:
    """Discards a waiting held reply: its files go, and a confirmation link sent for it stops working."""
    if (done := already_done()) is not None:
        return done
    back = _back()
    settings = app_settings()
    try:
        row = discard(_held_or_404(held_id), g.user, settings.effective_files_dir)
    except NotConfirmable as e:
        flash(str(e))
        return redirect(back)
    if row.token_hash:
        discard_link_mail(settings.data_dir, CONFIRM_POST, row.token_hash)  # its .eml file (no relay) goes now
    flash("The held reply is discarded: it will not be posted." + (" Its confirmation link no longer works."
                                                                    if row.token_hash else ""))
    return remember_done(back)
