"""The client portal: a client sees only workspaces with Messages access and only client-visible messages
(never an internal note's text anywhere in the HTML or JSON), gets a friendly page without access, posts
without an Internal toggle, and uploads and downloads attachments with safe headers; anything else's
attachment answers 404."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from web_support import CLIENT_TEXT, INTERNAL_TEXT, World, attach, newest, post_form, sign_in

from storage.directory import create_workspace, thread_of
from storage.models import Attachment
from storage.posting import post_message


def test_portal_lists_only_workspaces_with_access(app: Any, world: World) -> None:
    # Bob has access to Acme only; a second workspace where he is a contact without access does not show.
    from storage.tokens import set_messages_access

    other = create_workspace("Initech", "initech")
    set_messages_access(world.client, other.id, False)
    html = sign_in(app.test_client(), world.client).get("/portal/").get_data(as_text=True)
    assert 'data-slug="acme"' in html and "initech" not in html and "globex" not in html


def test_client_without_access_gets_a_friendly_page(app: Any, world: World) -> None:
    # No access anywhere: a page saying so (200 on the list, 403 on the thread), never a 500.
    client = sign_in(app.test_client(), world.no_access)
    index = client.get("/portal/")
    assert index.status_code == 200 and "does not have access" in index.get_data(as_text=True)
    thread = client.get("/portal/w/acme")
    assert thread.status_code == 403 and "ask your contact" in thread.get_data(as_text=True)
    assert CLIENT_TEXT not in thread.get_data(as_text=True)


def test_client_page_never_contains_internal_text(app: Any, world: World) -> None:
    # Thread page, older page, search and post answers: no internal note text, no internal marker, and no
    # "away" status (the team's note about the client's own out-of-office reply).
    from storage.away import record_away
    from storage.models import utcnow

    record_away(world.client.id, since=utcnow(), back_on=None, said_until=False, inbound_email_id=None)
    client = sign_in(app.test_client(), world.client)
    pages = [
        client.get("/portal/w/acme").get_data(as_text=True),
        client.get(f"/portal/w/acme?before={world.internal.id + 1}").get_data(as_text=True),
        client.get(f"/portal/w/acme/older?before={world.internal.id + 1}").get_data(as_text=True),
        client.get("/portal/search?q=SECRET").get_data(as_text=True),
        client.get("/portal/search?q=budget").get_data(as_text=True),
        post_form(client, "/portal/w/acme/messages", {"text": "my reply"}, json=True).get_data(as_text=True),
    ]
    for html in pages:
        assert INTERNAL_TEXT not in html and "budget.txt" not in html
        assert 'data-visibility="internal"' not in html
        assert f'id="m-{world.internal.id}"' not in html
        assert "away-note" not in html and "away-mark" not in html and "auto-reply on" not in html
    assert CLIENT_TEXT in pages[0]
    assert 'id="internal-toggle"' not in pages[0]


def test_portal_post_is_client_visible_even_if_internal_is_forged(app: Any, world: World) -> None:
    # The portal's composer has no Internal toggle; a forged internal=1 still posts a client-visible message.
    client = sign_in(app.test_client(), world.client)
    response = post_form(client, "/portal/w/acme/messages", {"text": "**bold** reply", "internal": "1"})
    message = newest(world.thread)
    assert response.status_code == 302 and response.location == f"/portal/w/acme#m-{message.id}"
    assert (message.visibility, message.source, message.author_id) == ("client", "portal", world.client.id)
    assert "<strong>bold</strong>" in message.html


def test_portal_error_keeps_the_text(app: Any, world: World, settings: Any) -> None:
    # A refused post shows the sentence in the form and keeps the typed text.
    app.extensions["workrate_settings"] = settings.replace(max_message_size=10)
    client = sign_in(app.test_client(), world.client)
    data = {"text": "keep me", "attachments": [(io.BytesIO(b"x" * 100), "big.bin")]}
    response = post_form(client, "/portal/w/acme/messages", data, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "too large" in html and ">keep me</textarea>" in html


def test_client_uploads_and_downloads_an_attachment(app: Any, world: World) -> None:
    # A client's upload is stored and served back with its type, attachment disposition and nosniff.
    client = sign_in(app.test_client(), world.client)
    data = {"text": "see file", "attachments": [(io.BytesIO(b"<html><script>x</script>"), "page.html")]}
    assert post_form(client, "/portal/w/acme/messages", data, json=True,
                     content_type="multipart/form-data").status_code == 201
    file = Attachment.get(Attachment.message == newest(world.thread))
    response = client.get(f"/attachments/{file.id}/page.html")
    assert response.status_code == 200 and response.data == b"<html><script>x</script>"
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Content-Disposition"] == "attachment; filename=page.html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    team = sign_in(app.test_client(), world.team)
    assert team.get(f"/attachments/{file.id}/page.html").data == b"<html><script>x</script>"


def test_images_may_show_inline_but_svg_never(app: Any, world: World, settings: Any) -> None:
    # PNG is served inline (and as a download with ?download); SVG, which can carry script, never inline.
    png = attach(settings, "photo.png", b"\x89PNG\r\n\x1a\nfake", "image/png")
    svg = attach(settings, "logo.svg", b"<svg onload=alert(1)/>", "image/svg+xml")
    message = post_message(world.thread, world.team, "pictures", attachments=[png, svg])
    files = {a.name: a for a in message.attachments}
    client = sign_in(app.test_client(), world.client)
    inline = client.get(f"/attachments/{files['photo.png'].id}/photo.png")
    assert inline.headers["Content-Disposition"].startswith("inline") and inline.mimetype == "image/png"
    download = client.get(f"/attachments/{files['photo.png'].id}/photo.png?download")
    assert download.headers["Content-Disposition"].startswith("attachment")
    svg_response = client.get(f"/attachments/{files['logo.svg'].id}/logo.svg")
    assert svg_response.headers["Content-Disposition"].startswith("attachment")


def test_non_ascii_file_names_download(app: Any, world: World, settings: Any) -> None:
    # A file name outside ASCII is sent with RFC 5987 filename* so browsers keep it.
    message = post_message(world.thread, world.team, "devis", attachments=[attach(settings, "devis été.txt", b"x")])
    file = message.attachments[0]
    response = sign_in(app.test_client(), world.client).get(f"/attachments/{file.id}/devis été.txt")
    assert "filename*=UTF-8''devis%20%C3%A9t%C3%A9.txt" in response.headers["Content-Disposition"]


@pytest.mark.parametrize("which", ["internal_file", "globex_file", "unknown"])
@pytest.mark.parametrize("name", ["right", "wrong"])
def test_hidden_attachments_answer_404_whatever_the_url(app: Any, world: World, which: str, name: str) -> None:
    # An internal note's file, another workspace's file, or an unknown id: 404 with any file name.
    attachment_id = {"internal_file": world.internal_file, "globex_file": world.globex_file,
                     "unknown": 987654}[which]
    filename = {"internal_file": "budget.txt", "globex_file": "globex.txt", "unknown": "x"}[which]
    url = f"/attachments/{attachment_id}/{filename if name == 'right' else 'other.txt'}"
    response = sign_in(app.test_client(), world.client).get(url)
    assert response.status_code == 404
    assert b"internal numbers" not in response.data and b"globex bytes" not in response.data


def test_attachment_of_revoked_client_is_404(app: Any, world: World) -> None:
    # Once access is revoked, the client's session ends at once; signed in anew, even files they saw before
    # answer 404.
    from storage.directory import set_access

    client = sign_in(app.test_client(), world.client)
    assert client.get(f"/attachments/{world.public_file}/plan.txt").status_code == 200
    set_access(world.client, world.acme, False)
    signed_out = client.get(f"/attachments/{world.public_file}/plan.txt")
    assert signed_out.status_code == 302 and "/login" in signed_out.headers["Location"]
    sign_in(client, world.client)
    assert client.get(f"/attachments/{world.public_file}/plan.txt").status_code == 404


def test_portal_thread_of_other_workspace_is_404_not_403(app: Any, world: World) -> None:
    # A workspace the client does not belong to is not revealed: 404, same as an unknown slug.
    client = sign_in(app.test_client(), world.client)
    assert client.get("/portal/w/globex").status_code == 404
    assert client.get("/portal/w/does-not-exist").status_code == 404


def test_client_sees_own_and_team_messages_in_order(app: Any, world: World) -> None:
    # The portal shows the team's client-visible messages and the client's own, oldest first.
    thread = thread_of(world.acme)
    mine = post_message(thread, world.client, "from me", source="portal")
    html = sign_in(app.test_client(), world.client).get("/portal/w/acme").get_data(as_text=True)
    assert html.index(f'id="m-{world.public.id}"') < html.index(f'id="m-{mine.id}"')
    assert 'class="message mine from-client"' in html


def test_client_list_and_live_cursor_never_date_an_internal_note(tmp_path) -> None:
    # An internal note moves neither the client's "last activity" nor the event id the portal page starts after.
    import datetime as dt
    import re

    from config import Settings
    from storage import db, migrations
    from storage.directory import add_client, add_user, create_workspace, thread_of
    from storage.models import Message
    from storage.posting import post_message
    from web.app import create_app

    settings = Settings(data_dir=tmp_path, database_url="", secret_key="x" * 40, reply_domain="reply.test",
                        base_url="http://app.test")
    db.bind(settings)
    migrations.migrate()
    ws = create_workspace("Acme")
    kim = add_user("kim@agency.test", "Kim", "team")
    bob = add_client("bob@acme.test", "Bob", ws, True)
    public = post_message(thread_of(ws), kim, "Public note")
    Message.update(created_at=dt.datetime(2020, 1, 2, 3, 4)).where(Message.id == public.id).execute()
    app = create_app(settings)
    client = app.test_client()
    sign_in(client, bob)
    before = client.get("/portal/").get_data(as_text=True)
    cursor_before = re.search(r'data-after="(\d+)"', client.get(f"/portal/w/{ws.slug}").get_data(as_text=True))
    post_message(thread_of(ws), kim, "Internal note", internal=True)
    after = client.get("/portal/").get_data(as_text=True)
    cursor_after = re.search(r'data-after="(\d+)"', client.get(f"/portal/w/{ws.slug}").get_data(as_text=True))
    assert "2020-01-02 03:04" in before and "2020-01-02 03:04" in after
    assert cursor_before and cursor_after and cursor_before.group(1) == cursor_after.group(1)


def test_attachment_downloads_with_a_relative_data_folder(world: World, settings: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The README's default data folder is relative (./var): the file must still be found and sent, not
    # looked up against the app's package folder.
    from web.app import create_app

    monkeypatch.chdir(tmp_path)
    relative = settings.replace(data_dir=Path("var"), database_url=settings.effective_database_url)
    assert not relative.effective_files_dir.is_absolute()
    app = create_app(relative)
    client = sign_in(app.test_client(), world.client)
    response = client.get(f"/attachments/{world.public_file}/plan.txt")
    assert response.status_code == 200 and response.data == b"the plan"
