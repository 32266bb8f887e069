"""Restoring a message's trimmed part in one click, and the learned-signature view: the team restores through
a POST (CSRF) as an audited edit (the earlier text kept, both sides see "edited", open pages told, the
visibility unchanged); only the message's own trimmed part; clients never see or reach any of it."""
from __future__ import annotations

from typing import Any

import pytest
from test_events import DEADLINE, connected, last_event_id, open_stream, server, server_settings  # noqa: F401
from web_support import World, post_form, sign_in

from storage.learned_signatures import learned_keys, remember_blocks, signatures_of
from storage.models import Message, MessageVersion
from storage.posting import PostingError, delete_message, post_message, restore_trimmed

SIGNATURE = "Bob Stone\nHead of Growth, Acme Co"
TRIMMED = f"{SIGNATURE}\n\nOn Mon, Jun 5, 2017 Kim Lee <kim@agency.test> wrote:\n> the RESTORED-QUOTE words"


def _emailed(world: World, *, internal: bool = False, author: Any = None) -> Message:
    return post_message(world.thread, author or world.client, "Yes, go ahead.", source="email",
                        trimmed_text=TRIMMED, internal=internal)


def reload(message: Message) -> Message:
    return Message.get_by_id(message.id)


def test_restore_through_the_web_is_an_edit_both_sides_see_live(server: Any, world: World) -> None:  # noqa: F811
    message = _emailed(world)
    start = last_event_id()
    client_stream = connected(open_stream(server, world.client, start))
    team_stream = connected(open_stream(server, world.team, start))
    kim = sign_in(server.app.test_client(), world.team)
    page = kim.get("/w/acme").get_data(as_text=True)
    assert f'action="/messages/{message.id}/restore"' in page and "Restore into the message" in page
    answer = post_form(kim, f"/messages/{message.id}/restore")
    assert answer.status_code == 302 and answer.location.endswith(f"#m-{message.id}")
    restored = reload(message)
    assert restored.text == f"Yes, go ahead.\n\n{TRIMMED}" and restored.trimmed_text is None
    assert restored.edited_at is not None and restored.visibility == "client"
    assert [(v.text, v.editor_id) for v in MessageVersion.select().where(MessageVersion.message == message.id)] == [
        ("Yes, go ahead.", world.team.id)]
    for stream in (client_stream, team_stream):
        event = stream.wait_for(lambda e: e.event == "edit" and e.data.get("message_id") == message.id, DEADLINE)
        assert "RESTORED-QUOTE" in event.data["html"]
        stream.close()
    bob_page = sign_in(server.app.test_client(), world.client).get("/portal/w/acme").get_data(as_text=True)
    assert "RESTORED-QUOTE" in bob_page and "edited" in bob_page
    assert "edited" in kim.get("/w/acme").get_data(as_text=True)
    # Once restored there is nothing left to restore: the button is gone and a second POST changes nothing.
    assert f'action="/messages/{message.id}/restore"' not in kim.get("/w/acme").get_data(as_text=True)
    again = post_form(kim, f"/messages/{message.id}/restore", json=True)
    assert again.status_code == 400 and "already been restored" in again.get_json()["error"]
    assert MessageVersion.select().where(MessageVersion.message == message.id).count() == 1


def test_restore_in_place_answers_the_redrawn_message(app: Any, world: World) -> None:
    message = _emailed(world, internal=True, author=world.team)
    kim = sign_in(app.test_client(), world.team)
    answer = post_form(kim, f"/messages/{message.id}/restore", json=True)
    assert answer.status_code == 200 and "RESTORED-QUOTE" in answer.get_json()["html"]
    assert reload(message).visibility == "internal"  # restoring never changes who sees it
    assert "RESTORED-QUOTE" not in sign_in(app.test_client(), world.client).get("/portal/w/acme").get_data(as_text=True)


def test_clients_never_see_or_reach_the_controls(app: Any, world: World) -> None:
    message = _emailed(world)
    bob = sign_in(app.test_client(), world.client)
    page = bob.get("/portal/w/acme").get_data(as_text=True)
    assert "restore" not in page.lower() and "Learned signatures" not in page and "RESTORED-QUOTE" not in page
    assert post_form(bob, f"/messages/{message.id}/restore").status_code == 404
    assert bob.get(f"/messages/{message.id}/trimmed").status_code == 404
    kim = sign_in(app.test_client(), world.team)
    assert kim.post(f"/messages/{message.id}/restore").status_code == 400  # no CSRF token
    assert reload(message).text == "Yes, go ahead."


def test_restore_takes_only_the_message_own_trimmed_part(world: World) -> None:
    with pytest.raises(PostingError):
        restore_trimmed(world.public, world.team, "x")  # nothing was trimmed from it
    message = _emailed(world)
    with pytest.raises(PostingError):
        restore_trimmed(message, world.client, TRIMMED)  # the client cannot
    with pytest.raises(PostingError):
        restore_trimmed(message, world.team, "Text that was never trimmed from it.")
    delete_message(message, world.team)
    with pytest.raises(PostingError):
        restore_trimmed(reload(message), world.team, TRIMMED)


def test_a_quote_of_our_own_email_is_never_restored(app: Any, world: World) -> None:
    # A client's reply quoting the notification: its reply address, sign-in link and the marker stay out,
    # whatever the team restores (the quote may also hold a team member's internal context).
    ours = ("On Mon, Dec 1, 2026 at 10:00 WorkRate <\n"
            f"reply+SECRETTOKEN@{app.extensions['workrate_settings'].reply_domain}> wrote:\n"
            "> ##- Please type your reply above this line -##\n"
            "> Open the conversation: http://app.test/login/SECRETLINK")
    message = post_message(world.thread, world.client, "Yes, go ahead.", source="email",
                           trimmed_text=f"{SIGNATURE}\n\n{ours}")
    kim = sign_in(app.test_client(), world.team)
    assert post_form(kim, f"/messages/{message.id}/restore", json=True).status_code == 200
    assert reload(message).text == f"Yes, go ahead.\n\n{SIGNATURE}"
    only_ours = post_message(world.thread, world.client, "Fine.", source="email", trimmed_text=ours)
    answer = post_form(kim, f"/messages/{only_ours.id}/restore", json=True)
    assert answer.status_code == 400 and "nothing to restore" in answer.get_json()["error"]
    assert reload(only_ours).text == "Fine." and "SECRET" not in str(sign_in(
        app.test_client(), world.client).get("/portal/w/acme").get_data(as_text=True))


def test_learned_signatures_are_shown_and_undone_by_the_team(app: Any, world: World) -> None:
    for _ in range(2):
        remember_blocks("bob@acme.test", [("key-1", SIGNATURE)])
    message = _emailed(world)
    kim = sign_in(app.test_client(), world.team)
    page = kim.get(f"/messages/{message.id}/trimmed").get_data(as_text=True)
    assert "Signatures learned from bob@acme.test" in page and "Head of Growth" in page
    assert "Cut from this message" in page and "Stop cutting it" in page
    [learned] = signatures_of("bob@acme.test")
    answer = post_form(kim, f"/signatures/{learned.id}", {"cut": "0", "message": message.id})
    assert answer.status_code == 302 and learned_keys("bob@acme.test") == frozenset()
    page = kim.get(f"/messages/{message.id}/trimmed").get_data(as_text=True)
    assert "not cut (undone)" in page and "Cut it again" in page
    post_form(kim, f"/signatures/{learned.id}", {"cut": "1", "message": message.id})
    assert learned_keys("bob@acme.test") == frozenset({"key-1"})
    bob = sign_in(app.test_client(), world.client)
    assert post_form(bob, f"/signatures/{learned.id}", {"cut": "0"}).status_code == 404
    assert learned_keys("bob@acme.test") == frozenset({"key-1"})


def test_a_live_copy_offers_restore_to_the_team_only_and_carries_no_token(server: Any, world: World) -> None:  # noqa: F811
    # The drawing a live update sends is shared by every team member's stream: no one's CSRF token is in it
    # (the page's script adds the reader's own); clients get neither the trimmed part nor the button.
    start = last_event_id()
    client_stream = connected(open_stream(server, world.client, start))
    team_stream = connected(open_stream(server, world.team, start))
    message = _emailed(world)
    team_html = team_stream.wait_for(lambda e: e.event == "message" and e.data.get("message_id") == message.id,
                                     DEADLINE).data["html"]
    client_html = client_stream.wait_for(lambda e: e.event == "message" and e.data.get("message_id") == message.id,
                                         DEADLINE).data["html"]
    team_stream.close()
    client_stream.close()
    assert f'action="/messages/{message.id}/restore"' in team_html and "csrf_token" not in team_html
    assert "restore" not in client_html.lower() and "RESTORED-QUOTE" not in client_html
