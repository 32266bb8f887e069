"""Blueprint "maillog": the mail logs, for admins. Every received mail (time, sender, outcome, the reason in
a sentence, the SMTP code; the raw mail and the trimmed part on its own page) and every notification's
delivery (queued, sent, the relay's answer, bounced), for the whole agency or one workspace.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request

from storage.files import FileStore
from storage.mail_log import InboundEmail, OutboxEmail, read_raw_mail
from storage.models import Message, ReplyToken, Thread, Workspace
from storage.refusals import RcptRefusal
from web.auth import admin_required
from web.context import app_settings
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
        query = query.where(InboundEmail.reply_token.in_(tokens) | InboundEmail.message.in_(posted))
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
    return render_template("manage/maillog.html", workspace=workspace, tab=tab, rows=rows, more=more,
                           outcome_words=OUTCOME_WORDS)


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
                           truncated=raw is not None and len(raw) > RAW_SHOWN)
