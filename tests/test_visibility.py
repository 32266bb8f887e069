"""The one visibility rule: a client never gets an internal message, from any read path that exists.

One matrix: every storage-level surface × (team, client with access, client without access, client of
another workspace, deactivated client) × (client-visible, internal). Web, SSE and API surfaces have their
own tests in test_web_*.py, test_events.py and test_api.py, built on the same rule.
"""
from __future__ import annotations

import pytest

from storage.directory import DirectoryError, add_user, set_access
from storage.mail_log import OutboxEmail
from storage.posting import edit_message, post_message
from storage.search import search_everywhere, search_messages
from storage.serialize import messages_json
from storage.visibility import (
    Viewer,
    audience,
    can_open_thread,
    can_see,
    last_activity,
    visible_messages,
    visible_messages_anywhere,
    visible_threads,
    visible_versions,
)


@pytest.fixture
def matrix(make):
    ws, other = make.workspace("Acme"), make.workspace("Other")
    kim = make.team(email="kim@agency.test")
    people = {
        "team": kim,
        "client": make.client(ws, email="bob@acme.test"),
        "no_access": make.client(ws, email="eve@acme.test", access=False),
        "other_ws": make.client(other, email="zed@other.test"),
        "deactivated": make.client(ws, email="old@acme.test"),
    }
    people["deactivated"].active = False
    people["deactivated"].save()
    thread = make.thread(ws)
    public = post_message(thread, kim, "Public zebra note")
    internal = post_message(thread, kim, "Internal zebra note", internal=True)
    return {"ws": ws, "thread": thread, "people": people, "public": public, "internal": internal}


EXPECTED = {  # who sees (public, internal)
    "team": (True, True),
    "client": (True, False),
    "no_access": (False, False),
    "other_ws": (False, False),
    "deactivated": (False, False),
}


def _surfaces(viewer: Viewer, thread, message) -> dict[str, bool]:
    return {
        "visible_messages": message.id in {m.id for m in visible_messages(viewer, thread)},
        "can_see": can_see(viewer, message),
        "search": message.id in {m.id for m in search_messages(viewer, thread, "zebra")},
        "search_everywhere": message.id in {m.id for m in search_everywhere(viewer, "zebra")},
        "anywhere": message.id in {m.id for m in visible_messages_anywhere(viewer)},
        "versions": message.id in {v.message_id for v in visible_versions(viewer, [message.id])},
        "json": message.id in {m["id"] for m in messages_json(list(visible_messages(viewer, thread)), "", viewer)},
        # Even a message handed to the serializer by mistake never counts versions the viewer may not see.
        "json_versions": messages_json([message], "", viewer)[0]["versions"] == 1,
    }


@pytest.mark.parametrize("who", sorted(EXPECTED))
@pytest.mark.parametrize("which", ["public", "internal"])
def test_every_surface_obeys_the_rule(matrix, who: str, which: str) -> None:
    # Each storage surface answers the same as the rule's table, for every kind of viewer and message,
    # including the earlier versions of an edited message and search across workspaces.
    edit_message(matrix[which], matrix["people"]["team"], matrix[which].text + " (zebra, edited)")
    viewer = Viewer.of(matrix["people"][who])
    expected = EXPECTED[who][0 if which == "public" else 1]
    assert _surfaces(viewer, matrix["thread"], matrix[which]) == {
        "visible_messages": expected, "can_see": expected, "search": expected, "search_everywhere": expected,
        "anywhere": expected, "versions": expected, "json": expected, "json_versions": expected}


def test_thread_access(matrix) -> None:
    # Only the team and clients with Messages access can open the thread or see it listed.
    thread = matrix["thread"]
    opens = {who: can_open_thread(Viewer.of(u), thread) for who, u in matrix["people"].items()}
    assert opens == {"team": True, "client": True, "no_access": False, "other_ws": False, "deactivated": False}
    listed = {who: [t.id for t in visible_threads(Viewer.of(u))] for who, u in matrix["people"].items()}
    assert thread.id in listed["team"] and listed["client"] == [thread.id]
    assert listed["no_access"] == [] and thread.id not in listed["other_ws"]


def test_last_activity_is_the_newest_message_the_viewer_may_see(matrix, make) -> None:
    # The team's last activity is the internal note; the client's is the public note before it (a client's
    # list never dates an internal note); a thread with no messages dates from its creation.
    team, bob = Viewer.of(matrix["people"]["team"]), Viewer.of(matrix["people"]["client"])
    assert last_activity(team, matrix["thread"]) == matrix["internal"].created_at
    assert last_activity(bob, matrix["thread"]) == matrix["public"].created_at
    empty = make.thread(make.workspace("Empty"))
    assert last_activity(team, empty) == empty.created_at
    assert last_activity(Viewer.operator(), matrix["thread"]) == matrix["internal"].created_at


def test_the_operator_sees_the_whole_thread_and_no_user_can_be_one(matrix, make) -> None:
    # The CLI's operator view is every message; directory.add_user refuses the role, so no one acts as it.
    operator = Viewer.operator()
    assert {m.id for m in visible_messages(operator, matrix["thread"])} == {matrix["public"].id, matrix["internal"].id}
    with pytest.raises(DirectoryError):
        add_user("op@agency.test", "Op", operator.role)


def test_revoking_access_hides_everything_at_once(matrix) -> None:
    # A client whose access is revoked sees nothing any more.
    bob = matrix["people"]["client"]
    set_access(bob, matrix["ws"], False)
    assert list(visible_messages(Viewer.of(bob), matrix["thread"])) == []


def test_internal_notes_never_notify_a_client(matrix) -> None:
    # The fan-out of an internal note is team-only; a client-visible team post reaches clients with access only.
    clients = {u.id for who, u in matrix["people"].items() if who != "team"}
    internal_rows = OutboxEmail.select().where(OutboxEmail.message == matrix["internal"])
    assert not {r.recipient_id for r in internal_rows} & clients
    assert [u.email for u in audience(matrix["public"])] == ["bob@acme.test"]
    assert [u.email for u in audience(matrix["internal"])] == []  # the author is the only team member
