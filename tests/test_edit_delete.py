"""Editing and deleting messages, honestly: who may, what everyone sees afterwards (the "edited" mark and
earlier versions, the "message deleted" mark), that visibility never changes, that attachments of a
deleted message stop downloading, that search follows, that live pages are told, that unsent emails are
cancelled and a correction can follow a sent one. Internal notes never leak through any of it.
"""
from __future__ import annotations

from typing import Any

import pytest
from outbound_relay import CapturingRelay
from test_events import DEADLINE, connected, last_event_id, open_stream, server, server_settings  # noqa: F401
from test_outbox import send_due
from web_support import CLIENT_TEXT, INTERNAL_TEXT, World, attach, newest, post_form, sign_in

from storage.directory import set_team_role
from storage.mail_log import CORRECTION, PENDING, SENT, SKIPPED, OutboxEmail, ThreadEvent
from storage.models import Attachment, Message, MessageVersion
from storage.posting import PostingError, delete_message, edit_message, post_message, send_correction
from storage.search import search_messages
from storage.visibility import Viewer, can_delete, can_edit, visible_messages, visible_versions


def reload(message: Message) -> Message:
    return Message.get_by_id(message.id)


# --- storage: who may, and what is kept ------------------------------------------------------------------


def test_author_edits_and_earlier_version_is_kept(world: World) -> None:
    # The author's edit replaces the text, keeps the old one as a version, and never changes visibility.
    edited = edit_message(world.public, world.team, "Hello client, the **second** draft is ready")
    m = reload(world.public)
    assert m.text == edited.text and "<strong>second</strong>" in m.html and m.edited_at is not None
    assert m.visibility == "client"
    assert [v.text for v in MessageVersion.select().where(MessageVersion.message == m.id)] == [CLIENT_TEXT]
    edit_message(reload(world.internal), world.team, "Still internal, reworded")
    assert reload(world.internal).visibility == "internal"
    assert ThreadEvent.select().where(ThreadEvent.kind == "edit").count() == 2


def test_only_the_author_edits_and_only_author_or_admin_deletes(world: World, make: Any) -> None:
    client_post = post_message(world.thread, world.client, "From Bob", source="portal")
    other_team = make.team(email="lee@agency.test")
    assert can_edit(world.team, world.public) and not can_edit(other_team, world.public)
    assert not can_edit(world.client, world.public) and can_edit(world.client, client_post)
    assert not can_edit(world.client, world.internal)  # and a client cannot even see it
    with pytest.raises(PostingError):
        edit_message(world.public, world.client, "hijacked")
    with pytest.raises(PostingError):
        delete_message(world.public, world.client)
    assert can_delete(world.client, client_post)
    assert not can_delete(other_team, client_post)  # a member deletes only their own messages
    set_team_role(other_team, "admin")
    assert can_delete(other_team, client_post)
    assert not can_delete(world.other, world.public)  # another workspace's client
    assert reload(world.public).text == CLIENT_TEXT


def test_delete_leaves_a_mark_and_removes_text_versions_files_and_pending_emails(world: World) -> None:
    edit_message(world.public, world.team, "second draft")
    assert OutboxEmail.select().where((OutboxEmail.message == world.public.id)
                                      & (OutboxEmail.status == PENDING)).exists()
    delete_message(reload(world.public), world.team)
    m = reload(world.public)
    assert m.is_deleted and m.text == "" and m.html == "" and m.visibility == "client"
    assert not MessageVersion.select().where(MessageVersion.message == m.id).exists()
    assert not Attachment.select().where(Attachment.message == m.id).exists()
    statuses = {r.status for r in OutboxEmail.select().where(OutboxEmail.message == m.id)}
    assert statuses == {SKIPPED}
    # Still in the thread for both sides, as a mark; editing or deleting again is refused.
    assert m.id in {x.id for x in visible_messages(Viewer.of(world.client), world.thread)}
    with pytest.raises(PostingError):
        edit_message(m, world.team, "back from the dead")
    with pytest.raises(PostingError):
        delete_message(m, world.team)


# --- the rule decides who sees versions and search results -----------------------------------------------


def test_versions_follow_the_visibility_rule(world: World) -> None:
    edit_message(world.public, world.team, "public v2")
    edit_message(reload(world.internal), world.team, "internal v2")
    ids = [world.public.id, world.internal.id]
    team_versions = {v.text for v in visible_versions(Viewer.of(world.team), ids)}
    client_versions = {v.text for v in visible_versions(Viewer.of(world.client), ids)}
    assert team_versions == {CLIENT_TEXT, INTERNAL_TEXT}
    assert client_versions == {CLIENT_TEXT}
    for outsider in (world.no_access, world.other):
        assert list(visible_versions(Viewer.of(outsider), ids)) == []


def test_search_follows_edits_and_deletes_and_never_finds_internal_words(world: World) -> None:
    edit_message(world.public, world.team, "Meet on wednesday")
    edit_message(reload(world.internal), world.team, "Wednesday margin is thin")
    team, client = Viewer.of(world.team), Viewer.of(world.client)
    assert [m.id for m in search_messages(client, world.thread, "wednesday")] == [world.public.id]
    assert {m.id for m in search_messages(team, world.thread, "wednesday")} == {world.public.id, world.internal.id}
    assert list(search_messages(team, world.thread, "draft")) == []  # the old text is no longer found
    delete_message(reload(world.public), world.team)
    assert list(search_messages(client, world.thread, "wednesday")) == []
    assert list(search_messages(client, world.thread, "margin")) == []


# --- the pages -------------------------------------------------------------------------------------------


def test_portal_shows_edited_mark_and_earlier_version_but_nothing_of_internal_edits(app: Any, world: World) -> None:
    edit_message(world.public, world.team, "Hello client, the final draft is ready")
    edit_message(reload(world.internal), world.team, "INTERNAL-SECOND-VERSION")
    html = sign_in(app.test_client(), world.client).get("/portal/w/acme").get_data(as_text=True)
    assert "final draft" in html and "edited" in html and CLIENT_TEXT in html  # the version list
    assert INTERNAL_TEXT not in html and "INTERNAL-SECOND-VERSION" not in html
    team_html = sign_in(app.test_client(), world.team).get("/w/acme").get_data(as_text=True)
    assert INTERNAL_TEXT in team_html and "INTERNAL-SECOND-VERSION" in team_html


def test_edit_and_delete_through_the_web_for_both_sides(app: Any, world: World) -> None:
    bob = sign_in(app.test_client(), world.client)
    post_form(bob, "/portal/w/acme/messages", {"text": "Typo in thsi"})
    mine = newest(world.thread)
    page = bob.get("/portal/w/acme").get_data(as_text=True)
    assert f'href="/messages/{mine.id}/edit"' in page and f'href="/messages/{world.public.id}/edit"' not in page
    answer = post_form(bob, f"/messages/{mine.id}/edit", {"text": "Typo in this"}, json=True)
    assert answer.status_code == 200 and "Typo in this" in answer.get_json()["html"]
    assert reload(mine).text == "Typo in this"
    # A client cannot edit or delete the team's message, nor reach an internal note at all.
    assert post_form(bob, f"/messages/{world.public.id}/edit", {"text": "x"}).status_code == 403
    assert post_form(bob, f"/messages/{world.public.id}/delete").status_code == 403
    assert post_form(bob, f"/messages/{world.internal.id}/delete").status_code == 404
    assert bob.get(f"/messages/{world.internal.id}/edit").status_code == 404
    # Without the page's script: the edit form page and a redirect back to the message.
    kim = sign_in(app.test_client(), world.team)
    form = kim.get(f"/messages/{world.public.id}/edit").get_data(as_text=True)
    assert CLIENT_TEXT in form and "It stays visible to the client." in form
    done = post_form(kim, f"/messages/{world.public.id}/edit", {"text": "too long " * 20_000})
    assert done.status_code == 400 and "at most 100,000 characters" in done.get_data(as_text=True)
    assert "too long too long" in done.get_data(as_text=True)  # what was typed is kept
    with pytest.raises(PostingError, match="delete it instead"):
        edit_message(mine, world.client, "  ")  # no text and no attachment
    # The team deletes the client's message (an admin may); the client sees the mark.
    gone = post_form(kim, f"/messages/{mine.id}/delete")
    assert gone.status_code == 302 and gone.headers["Location"].endswith(f"/w/acme#m-{mine.id}")
    page = bob.get("/portal/w/acme").get_data(as_text=True)
    assert "Message deleted" in page and "Typo in this" not in page


def test_deleted_message_attachments_stop_downloading(app: Any, world: World, settings: Any) -> None:
    bob = sign_in(app.test_client(), world.client)
    url = f"/attachments/{world.public_file}/plan.txt"
    assert bob.get(url).status_code == 200
    delete_message(world.public, world.team)
    assert bob.get(url).status_code == 404
    assert sign_in(app.test_client(), world.team).get(url).status_code == 404


def test_clients_never_see_plumbing_words(app: Any, world: World) -> None:
    post_message(world.thread, world.team, "From the terminal", source="cli")
    post_message(world.thread, world.team, "From a script", source="api")
    page = sign_in(app.test_client(), world.client).get("/portal/w/acme").get_data(as_text=True)
    assert "command line" not in page and "via API" not in page
    team_page = sign_in(app.test_client(), world.team).get("/w/acme").get_data(as_text=True)
    assert "via command line" in team_page and "via API" in team_page


# --- live ------------------------------------------------------------------------------------------------


def test_edits_and_deletes_reach_open_pages_but_internal_ones_never_reach_clients(server: Any, world: World) -> None:  # noqa: E501, F811
    start = last_event_id()
    client = connected(open_stream(server, world.client, start))
    team = connected(open_stream(server, world.team, start))
    edit_message(world.public, world.team, "Edited for everyone")
    edit_message(reload(world.internal), world.team, "INTERNAL-EDIT-WORDS")
    delete_message(reload(world.internal), world.team)
    delete_message(reload(world.public), world.team)
    changes = ("edit", "delete")
    client.wait_for(lambda e: e.event == "delete" and e.data.get("message_id") == world.public.id, DEADLINE)
    team.wait_for(lambda e: e.event == "delete" and e.data.get("message_id") == world.public.id, DEADLINE)
    client.close()
    team.close()
    client_events = [e for e in client.seen if e.event in changes]
    assert [(e.event, e.data["message_id"]) for e in client_events] == [
        ("edit", world.public.id), ("delete", world.public.id)]
    body = repr([e.data for e in client.seen])
    assert "INTERNAL-EDIT-WORDS" not in body and INTERNAL_TEXT not in body
    # Each event carries the message as it is now (the cache keeps no stale drawing).
    assert "Message deleted" in client_events[-1].data["html"]
    assert [e.event for e in team.seen if e.event in changes] == ["edit", "edit", "delete", "delete"]


# --- emails ----------------------------------------------------------------------------------------------


def test_edit_after_email_offers_a_correction_that_reaches_only_those_emailed(
        app: Any, world: World, settings: Any) -> None:
    with CapturingRelay() as relay:
        settings = settings.replace(relay_url=relay.url)
        app.extensions["workrate_settings"] = settings
        assert send_due(settings) >= 1
        assert {r.status for r in OutboxEmail.select().where(OutboxEmail.message == world.public.id)} == {SENT}
        edit_message(world.public, world.team, "Corrected: the draft is ready on Friday")
        kim = sign_in(app.test_client(), world.team)
        page = kim.get("/w/acme").get_data(as_text=True)
        assert "Emailed before this edit." in page and "Send a short correction email" in page
        # The client sees no such offer (not theirs); an internal note's edit emails no client.
        assert "Emailed before this edit" not in sign_in(app.test_client(), world.client).get(
            "/portal/w/acme").get_data(as_text=True)
        answer = post_form(kim, f"/messages/{world.public.id}/correction", json=True)
        assert answer.status_code == 200 and "1 person" in answer.get_json()["sentence"]
        with pytest.raises(PostingError):
            send_correction(reload(world.public), world.team)  # once per edit
        before = len(relay.received)
        assert send_due(settings) == 1
        mail = relay.received[before]
        assert mail.rcpt_tos == [world.client.email]
        assert "Correction" in mail.mail["Subject"] and "ready on Friday" in mail.text()
        assert mail.mail["In-Reply-To"]
        assert OutboxEmail.select().where(OutboxEmail.kind == CORRECTION, OutboxEmail.status == SENT).count() == 1


def test_internal_note_correction_never_reaches_a_client(world: World, settings: Any, make: Any) -> None:
    lee = make.team(email="lee@agency.test", name="Lee")
    with CapturingRelay() as relay:
        settings = settings.replace(relay_url=relay.url)
        note = post_message(world.thread, lee, "Internal thing", internal=True,
                            attachments=[attach(settings, "n.txt", b"n")])
        send_due(settings)
        edit_message(note, lee, "Internal thing, fixed")
        assert send_correction(reload(note), lee) == 1  # Kim, the other team member
        before = len(relay.received)
        send_due(settings)
        assert [r.rcpt_tos for r in relay.received[before:]] == [[world.team.email]]


def test_time_zone_is_stored_from_the_browser_and_editable(app: Any, world: World) -> None:
    from storage.models import User

    bob = sign_in(app.test_client(), world.client)
    assert post_form(bob, "/me", {"time_zone": "Europe/Paris"}, json=True).get_json() == {"time_zone": "Europe/Paris"}
    assert User.get_by_id(world.client.id).time_zone == "Europe/Paris"
    wrong = post_form(bob, "/me", {"time_zone": "Mars/Olympus"})
    assert wrong.status_code == 400 and "Please choose a time zone" in wrong.get_data(as_text=True)
    assert User.get_by_id(world.client.id).time_zone == "Europe/Paris"
    assert 'value="Europe/Paris" selected' in bob.get("/me").get_data(as_text=True)
