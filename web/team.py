"""Blueprint "team": the agency's app. Workspaces list, the thread page with the Internal toggle, "load
older", search, posting, the original email of an emailed post, and the "what the client sees" switch.
"""
from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    get_template_attribute,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from storage.avatars import avatar_versions
from storage.directory import thread_of
from storage.files import FileStore
from storage.mail_log import InboundEmail, read_raw_mail
from storage.models import CLIENT, Membership, Message, Thread, User, Workspace
from storage.outbox import reschedule
from storage.post_limits import SLOW_DOWN, may_post_now
from storage.posting import (
    MAX_TEXT_LENGTH,
    PostingError,
    delete_message,
    edit_message,
    normalize_text,
    post_message,
    send_correction,
)
from storage.quotas import quota_problem
from storage.rendering import render_markdown, sanitize_html
from storage.retention import discard_files
from storage.units import human_size
from storage.visibility import Viewer, can_open_thread, may_delete, may_edit, visible_messages, visible_threads
from web.auth import login_required, team_required
from web.context import app_settings
from web.forms import MAX_ATTACHMENTS, Composer, ComposerError, read_composer
from web.threadview import (
    build_views,
    count_label,
    get_visible_message,
    last_read_id,
    latest_event_id,
    load_page,
    mark_read,
    render_views,
    search_groups,
    workspace_rows,
)

bp = Blueprint("team", __name__)
bp.add_app_template_filter(human_size, "size")  # one unit system for sizes on every page (storage/units.py)

RAW_MAIL_SHOWN = 2 * 1024 * 1024  # the "show full email" page shows at most this much of the raw mail
MAX_DELIVERY_IDS = 100  # messages whose delivery status one request may ask for


def get_workspace_or_404(slug: str) -> Workspace:
    """:raise 404: no workspace with that slug."""
    workspace = Workspace.get_or_none(Workspace.slug == slug.lower())
    if workspace is None:
        abort(404)
    return workspace


def wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def int_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


@bp.route("/workspaces")
@team_required
def index() -> Any:
    """The workspaces, newest activity first; archived ones only with ?archived=1."""
    show_archived = request.args.get("archived") == "1"
    threads = [t for t in visible_threads(g.viewer) if t.workspace.archived == show_archived]
    return render_template("team/index.html", rows=workspace_rows(g.viewer, threads), show_archived=show_archived)


def preview_clients(workspace: Workspace) -> list[tuple[User, bool]]:
    """The workspace's client contacts and whether each has Messages access (access first)."""
    rows = (Membership.select(Membership, User).join(User)
            .where((Membership.workspace == workspace) & (User.role == CLIENT))
            .order_by(Membership.messages_access.desc(), User.name, User.id))
    return [(m.user, m.messages_access and m.user.active) for m in rows]


def choose_preview(workspace: Workspace) -> tuple[User | None, list[tuple[User, bool]]]:
    """"What the client sees": one real client of this workspace (?as=ID, else the first with access),
    whose Viewer then draws the thread through visible_messages exactly as the portal does for them."""
    clients = preview_clients(workspace)
    wanted = int_arg("as")
    chosen = [c for c, _ in clients if c.id == wanted] or [c for c, ok in clients if ok]
    return (chosen[0] if chosen else None), clients


@bp.route("/w/<slug>")
@login_required
def thread(slug: str) -> Any:
    if g.user.is_client:  # a link shared between team and client opens the client's portal page
        return redirect(url_for("portal.thread", slug=slug))
    return render_thread(get_workspace_or_404(slug))


def render_thread(workspace: Workspace, composer: Composer | None = None, error: str | None = None,
                  status: int = 200) -> Any:
    thread = thread_of(workspace)
    query = request.args.get("q", "").strip()
    if query and "as" not in request.args:  # search covers every workspace now
        return redirect(url_for("team.search", q=query))
    viewer = g.viewer
    preview_as = None
    clients: list[tuple[User, bool]] = []
    if "as" in request.args:
        preview_as, clients = choose_preview(workspace)
        if preview_as is not None:
            viewer = Viewer.of(preview_as)
    after = latest_event_id(viewer, thread)
    last_read = last_read_id(g.user, thread)
    messages, has_more = load_page(viewer, thread, before=int_arg("before"))
    views = build_views(messages, viewer, user=g.user if preview_as is None else None)
    if preview_as is None and messages and int_arg("before") is None:
        mark_read(g.user, thread, messages[-1].id)
    return render_template(
        "team/thread.html", workspace=workspace, thread=thread, messages=views, has_more=has_more,
        oldest_id=views[0].id if views else 0, after=after, preview_as=preview_as,
        preview_mode="as" in request.args, clients=clients, composer=composer or Composer(), error=error,
        max_bytes=app_settings().max_message_size, max_files=MAX_ATTACHMENTS, paged="before" in request.args,
        last_read=last_read,
    ), status


@bp.route("/workspaces/sidebar")
@team_required
def sidebar() -> Any:
    """HTML of the workspace sidebar (the thread page refreshes it as messages arrive)."""
    render = get_template_attribute("_macros.html", "workspace_list")
    rows = workspace_rows(g.viewer, list(visible_threads(g.viewer)))
    return jsonify({"html": str(render(rows, "team.thread", request.args.get("current", ""), "sidebar"))})


@bp.route("/w/<slug>/older")
@team_required
def older(slug: str) -> Any:
    """JSON {html, oldest_id, has_more}: the page of messages before ?before=ID."""
    workspace = get_workspace_or_404(slug)
    viewer, mode = g.viewer, "team"
    if "as" in request.args:
        preview_as, _ = choose_preview(workspace)
        if preview_as is None:
            return jsonify({"html": "", "oldest_id": None, "has_more": False, "count": 0})
        viewer, mode = Viewer.of(preview_as), "preview"
    return older_json(viewer, thread_of(workspace), mode)


def older_json(viewer: Viewer, thread: Thread, mode: str) -> Any:
    before = int_arg("before")
    if before is None:
        return jsonify({"error": "Say which message to load older ones before (?before=ID)."}), 400
    messages, has_more = load_page(viewer, thread, before=before)
    views = build_views(messages, viewer, user=g.user if viewer.user_id == g.user.id else None)
    return jsonify({"html": render_views(views, mode), "oldest_id": views[0].id if views else None,
                    "has_more": has_more, "count": len(views)})


@bp.route("/w/<slug>/delivery")
@team_required
def delivery(slug: str) -> Any:
    """JSON {message id: HTML of its delivery line} for ?ids=1,2,3 (the page refreshes queued ones)."""
    workspace = get_workspace_or_404(slug)
    raw = [i for i in request.args.get("ids", "").split(",") if i.isdigit() and len(i) < 19][:MAX_DELIVERY_IDS]
    if not raw:
        return jsonify({})
    messages = list(visible_messages(g.viewer, thread_of(workspace)).where(Message.id.in_([int(i) for i in raw])))
    render = get_template_attribute("_macros.html", "render_delivery")
    return jsonify({str(v.id): str(render(v)).strip() for v in build_views(messages, g.viewer)})


@bp.route("/w/<slug>/messages", methods=["POST"])
@team_required
def post(slug: str) -> Any:
    workspace = get_workspace_or_404(slug)
    return post_from_form(workspace, allow_internal=True, source="web", mode="team",
                          page=lambda c, e: render_thread(workspace, c, e, 400),
                          done_url=url_for("team.thread", slug=workspace.slug))


def post_from_form(workspace: Workspace, *, allow_internal: bool, source: str, mode: str, page: Any,
                   done_url: str) -> Any:
    """Posts the composer; JSON for the page's script, a redirect (or the page with the error) without it."""
    settings = app_settings()
    if not may_post_now(g.user, settings.posts_per_minute):
        return _post_failed(SLOW_DOWN, Composer(text=request.form.get("text", "")), page, 429)
    try:
        composer = read_composer(request, settings, allow_internal=allow_internal)
    except ComposerError as e:
        discard_files(settings.effective_files_dir, [a.storage_key for a in e.composer.attachments])
        return _post_failed(str(e), e.composer, page)
    over = quota_problem(g.user, workspace.id, sum(a.size for a in composer.attachments),
                         settings.person_quota_mb, settings.workspace_quota_mb)
    if over:
        discard_files(settings.effective_files_dir, [a.storage_key for a in composer.attachments])
        return _post_failed(over, composer, page)
    try:
        message = post_message(thread_of(workspace), g.user, composer.text, internal=composer.internal,
                               source=source, attachments=composer.attachments,
                               notify_delay=settings.notify_delay)
    except PostingError as e:
        # A refused post leaves nothing behind: its files go too (unless another post has the same bytes).
        discard_files(settings.effective_files_dir, [a.storage_key for a in composer.attachments])
        return _post_failed(str(e), composer, page)
    if wants_json():
        views = build_views([message], g.viewer, user=g.user)
        return jsonify({"id": message.id, "html": render_views(views, mode)}), 201
    return redirect(f"{done_url}#m-{message.id}")


def _post_failed(sentence: str, composer: Composer, page: Any, status: int = 400) -> Any:
    if wants_json():
        return jsonify({"error": sentence}), status
    response = page(composer, sentence)
    if status != 400 and isinstance(response, tuple):
        return (response[0], status, *response[2:])
    return response


@bp.route("/messages/<int:message_id>/email")
@team_required
def original_email(message_id: int) -> Any:
    """The raw email an emailed post came from, shown as escaped text (never as HTML).

    :raise 404: the message is not visible, did not come by email, or its raw mail is gone.
    """
    message = get_visible_message(g.viewer, message_id)
    inbound = InboundEmail.get_or_none(InboundEmail.id == message.inbound_email_id) \
        if message.inbound_email_id else None
    if inbound is None or not inbound.raw_key:
        abort(404)
    raw = read_raw_mail(inbound.raw_key, FileStore(app_settings().effective_files_dir), RAW_MAIL_SHOWN + 1)
    if raw is None:
        abort(404)
    truncated = len(raw) > RAW_MAIL_SHOWN
    workspace = Workspace.select().join(Thread).where(Thread.id == message.thread_id).get()
    return render_template("team/email.html", message=message, inbound=inbound, workspace=workspace,
                           raw=raw[:RAW_MAIL_SHOWN].decode("utf-8", errors="replace"), truncated=truncated)


# -- editing and deleting: one set of routes for both sides; storage/posting.py decides who may ----------

def thread_url(message: Message) -> str:
    """Where a message stands in its thread, on the signed-in person's side."""
    workspace = Workspace.select().join(Thread).where(Thread.id == message.thread_id).get()
    endpoint = "team.thread" if g.user.is_team else "portal.thread"
    return url_for(endpoint, slug=workspace.slug) + f"#m-{message.id}"


def message_json(message: Message, status: int = 200) -> Any:
    """The message redrawn for the signed-in person's side, for the page's script to put in place."""
    fresh = Message.get_by_id(message.id)
    views = build_views([fresh], g.viewer, user=g.user)
    return jsonify({"id": message.id, "html": render_views(views, "team" if g.user.is_team else "portal")}), status


@bp.route("/messages/<int:message_id>/edit", methods=["GET", "POST"])
@login_required
def edit(message_id: int) -> Any:
    """The author's edit form (the page's script edits in place; this page is the way without it)."""
    message = get_visible_message(g.viewer, message_id)
    if not may_edit(g.user, message):
        abort(403)
    if request.method == "GET":
        if wants_json():
            return jsonify({"id": message.id, "text": message.text})
        return render_template("edit_message.html", message=message, text=message.text, error=None,
                               back=thread_url(message))
    text = request.form.get("text", "")
    try:
        edit_message(message, g.user, text)
    except PostingError as e:
        if wants_json():
            return jsonify({"error": str(e)}), 400
        return render_template("edit_message.html", message=message, text=text, error=str(e),
                               back=thread_url(message)), 400
    if wants_json():
        return message_json(message)
    return redirect(thread_url(message))


@bp.route("/messages/<int:message_id>/delete", methods=["POST"])
@login_required
def delete(message_id: int) -> Any:
    message = get_visible_message(g.viewer, message_id)
    if not may_delete(g.user, message):
        abort(403)
    try:
        delete_message(message, g.user)
    except PostingError as e:
        if wants_json():
            return jsonify({"error": str(e)}), 400
        flash(str(e))
    if wants_json():
        return message_json(message)
    return redirect(thread_url(message))


@bp.route("/messages/<int:message_id>/correction", methods=["POST"])
@login_required
def correction(message_id: int) -> Any:
    """Emails a short correction to those who were emailed the message before its last edit."""
    message = get_visible_message(g.viewer, message_id)
    try:
        count = send_correction(message, g.user)
    except PostingError as e:
        if wants_json():
            return jsonify({"error": str(e)}), 400
        flash(str(e))
        return redirect(thread_url(message))
    sentence = f"A correction email is on its way to {count} {'person' if count == 1 else 'people'}."
    if wants_json():
        return jsonify({"id": message.id, "sentence": sentence})
    flash(sentence)
    return redirect(thread_url(message))


@bp.route("/preview", methods=["POST"])
@login_required
def preview() -> Any:
    """JSON {html}: the composer's text drawn as the message will be (the same renderer and sanitizer)."""
    text = request.form.get("text", "")[:MAX_TEXT_LENGTH]
    return jsonify({"html": sanitize_html(render_markdown(normalize_text(text)))})


@bp.route("/search")
@team_required
def search() -> Any:
    """One search across every workspace (or ?w=SLUG for one), results grouped by workspace."""
    return render_search("team.thread", "team.search")


def render_search(thread_endpoint: str, search_endpoint: str) -> Any:
    query = request.args.get("q", "").strip()[:500]
    scope = None
    slug = request.args.get("w", "")
    if slug:
        workspace = Workspace.get_or_none(Workspace.slug == slug.lower())
        if workspace is None or not can_open_thread(g.viewer, thread_of(workspace)):
            abort(404)
        scope = thread_of(workspace)

    def url(workspace: Workspace) -> str:
        return url_for(thread_endpoint, slug=workspace.slug)

    groups, total, more = search_groups(g.viewer, query, url, thread=scope) if query else ([], 0, False)
    # Clients know their threads as conversations (their menu says so); "workspace" is the agency's word.
    place = "workspace" if search_endpoint == "team.search" else "conversation"
    summary = (f"{count_label(total, 'message')}{' or more' if more else ''} "
               f"in {count_label(len(groups), place)}" if total else "")
    return render_template("search.html", query=query, groups=groups, total=total, more=more, summary=summary,
                           scope=scope.workspace if scope else None, action=url_for(search_endpoint))


def _zone_names() -> list[str]:
    import zoneinfo

    return sorted(n for n in zoneinfo.available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV/")))


@bp.route("/me", methods=["GET", "POST"])
@login_required
def time_zone() -> Any:
    """The person's own time zone, used for times in their emails (the app uses the browser's). The page's
    script stores the browser's zone by itself when none is stored yet (JSON)."""
    zones = _zone_names()
    error = None
    if request.method == "POST":
        wanted = request.form.get("time_zone", "").strip()
        if wanted in zones or wanted == "UTC":
            User.update(time_zone=wanted).where(User.id == g.user.id).execute()
            reschedule(g.user)  # emails held for a clock time (digest, quiet hours) are timed again
            if wants_json():
                return jsonify({"time_zone": wanted})
            flash(f"Times in your emails now use {wanted}.")
            return redirect(url_for("team.time_zone"))
        error = "Please choose a time zone from the list."
        if wants_json():
            return jsonify({"error": error}), 400
    return me_page(error=error)


def me_page(error: str | None = None, avatar_error: str | None = None) -> Any:
    """/me with its forms (time zone, picture), an error beside the field that had one (400)."""
    picture = avatar_versions([g.user.id]).get(g.user.id)
    return render_template("me.html", zones=["UTC", *_zone_names()], current=g.user.time_zone or "", error=error,
                           avatar_error=avatar_error,
                           avatar_url=url_for("avatars.picture", user_id=g.user.id, v=picture) if picture else ""), \
        400 if error or avatar_error else 200


@bp.route("/messages/<int:message_id>/read", methods=["POST"])
@login_required
def read(message_id: int) -> Any:
    """The page saw this message arrive live while in view: unread counts and the "New" divider move on."""
    message = get_visible_message(g.viewer, message_id)
    mark_read(g.user, Thread.get_by_id(message.thread_id), message.id)
    return jsonify({"id": message.id})
