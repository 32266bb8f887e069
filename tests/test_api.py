"""The team's JSON API: personal bearer tokens (never the session cookie, so no CSRF token is needed),
workspaces, messages in the JSON shape of `workrate thread --json` with after/before cursors, and posting."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from web_support import INTERNAL_TEXT, World, attach, newest, sign_in

from storage.models import ApiToken, Message
from storage.posting import delete_message, edit_message, post_message
from storage.serialize import messages_json
from storage.tokens import create_api_token
from storage.visibility import Viewer


@pytest.fixture
def api(app: Any, world: World) -> Any:
    """A test client that sends the team member's token with every request."""
    token = create_api_token(world.team, "tests")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer wrk_nope", "Basic a2ltOnB3", "wrk_nope"])
def test_requests_without_a_valid_token_get_401(app: Any, world: World, header: str | None) -> None:
    # No token, an empty, unknown or non-bearer one: 401 with a sentence saying how to get one.
    headers = {"Authorization": header} if header else {}
    response = app.test_client().get("/api/workspaces", headers=headers)
    assert response.status_code == 401 and "workrate user api-token" in response.get_json()["error"]


def test_session_cookie_does_not_authenticate_the_api(app: Any, world: World) -> None:
    # A signed-in browser cannot use the API (so a cross-site POST to it can never ride on a session).
    client = sign_in(app.test_client(), world.team)
    assert client.get("/api/workspaces").status_code == 401
    assert client.post("/api/workspaces/acme/messages", json={"text": "x"}).status_code == 401


def test_revoked_token_and_client_token_are_refused(app: Any, world: World) -> None:
    # A revoked token is 401; a client's token (never issued by the CLI) is 403.
    token = create_api_token(world.team)
    ApiToken.update(revoked_at=ApiToken.created_at).execute()
    assert app.test_client().get("/api/workspaces", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    client_token = create_api_token(world.client)
    response = app.test_client().get("/api/workspaces", headers={"Authorization": f"Bearer {client_token}"})
    assert response.status_code == 403


def test_list_workspaces(api: Any, world: World) -> None:
    data = api.get("/api/workspaces").get_json()
    assert [w["slug"] for w in data["workspaces"]] == ["acme", "globex"]
    assert data["workspaces"][0]["name"] == "Acme Co" and data["workspaces"][0]["last_activity_at"].endswith("Z")


def test_attachment_urls_are_quoted_and_download(api: Any, app: Any, world: World, settings: Any) -> None:
    # An attachment named "report #2.pdf": its URL keeps the whole name (no fragment), and it downloads.
    post_message(world.thread, world.team, "The report",
                 attachments=[attach(settings, "report #2.pdf", b"%PDF-1.4 report", "application/pdf")])
    [attachment] = api.get("/api/workspaces/acme/messages").get_json()["messages"][-1]["attachments"]
    url = urlsplit(attachment["url"])
    assert attachment["name"] == "report #2.pdf" and url.fragment == "" and url.path.endswith("/report%20%232.pdf")
    download = sign_in(app.test_client(), world.team).get(url.path)
    assert download.status_code == 200 and download.data == b"%PDF-1.4 report"


def test_messages_have_the_cli_json_shape(api: Any, world: World, settings: Any) -> None:
    # The same JSON as `workrate thread --json`: {"workspace", "messages": [...]}, oldest first.
    data = api.get("/api/workspaces/acme/messages").get_json()
    expected = messages_json([world.public, world.internal], settings.effective_base_url, Viewer.of(world.team))
    assert data["workspace"] == "acme" and data["messages"] == expected and data["has_more"] is False
    assert data["messages"][1]["visibility"] == "internal"  # the team sees internal notes
    assert data["messages"][0]["attachments"][0]["url"].endswith(f"/attachments/{world.public_file}/plan.txt")


def test_messages_say_edited_and_deleted(api: Any, app: Any, world: World) -> None:
    # Added fields, the old ones unchanged: edited_at and how many earlier versions there are; a deleted
    # message keeps its place with deleted/deleted_at and no text, html, versions or attachments.
    edit_message(world.public, world.team, "The plan, corrected")
    edit_message(world.internal, world.team, "Budget, revised")
    delete_message(world.internal, world.team)
    public, internal = api.get("/api/workspaces/acme/messages").get_json()["messages"]
    assert public["text"] == "The plan, corrected" and public["edited_at"].endswith("Z")
    assert (public["versions"], public["deleted"], public["deleted_at"]) == (1, False, None)
    assert public["attachments"] and public["created_at"].endswith("Z")
    assert internal["deleted"] is True and internal["deleted_at"].endswith("Z")
    assert (internal["text"], internal["html"], internal["attachments"], internal["versions"]) == ("", "", [], 0)
    assert internal["id"] == world.internal.id and internal["visibility"] == "internal"
    assert "Budget" not in str(internal) and INTERNAL_TEXT not in str(internal)
    untouched = api.post("/api/workspaces/acme/messages", json={"text": "new"}).get_json()
    assert (untouched["edited_at"], untouched["versions"], untouched["deleted"]) == (None, 0, False)


def test_cursors_page_through_the_thread(api: Any, world: World) -> None:
    # ?limit= newest first page; ?before= older pages; ?after= newer ones.
    for i in range(8):
        post_message(world.thread, world.team, f"m{i}")
    ids = [m.id for m in Message.select().where(Message.thread == world.thread).order_by(Message.id)]
    page = api.get("/api/workspaces/acme/messages?limit=4").get_json()
    assert [m["id"] for m in page["messages"]] == ids[-4:] and page["has_more"] is True
    older = api.get(f"/api/workspaces/acme/messages?limit=4&before={ids[-4]}").get_json()
    assert [m["id"] for m in older["messages"]] == ids[-8:-4] and older["has_more"] is True
    newer = api.get(f"/api/workspaces/acme/messages?limit=3&after={ids[1]}").get_json()
    assert [m["id"] for m in newer["messages"]] == ids[2:5] and newer["has_more"] is True
    tail = api.get(f"/api/workspaces/acme/messages?after={ids[-2]}").get_json()
    assert [m["id"] for m in tail["messages"]] == ids[-1:] and tail["has_more"] is False


@pytest.mark.parametrize("query", ["after=x", "before=-1", "limit=0", "limit=501"])
def test_bad_cursor_is_400_with_a_sentence(api: Any, world: World, query: str) -> None:
    response = api.get(f"/api/workspaces/acme/messages?{query}")
    assert response.status_code == 400 and response.get_json()["error"]


def test_unknown_workspace_is_404(api: Any, world: World) -> None:
    response = api.get("/api/workspaces/nope/messages")
    assert response.status_code == 404 and "nope" in response.get_json()["error"]
    assert api.get("/api/nothing-here").status_code == 404


def test_post_a_message(api: Any, world: World, settings: Any) -> None:
    # POST {"text", "internal"} creates the message through post_message (source "api") and answers 201 with
    # its JSON; no CSRF token needed with a bearer token.
    response = api.post("/api/workspaces/acme/messages", json={"text": "From a **script**", "internal": True})
    assert response.status_code == 201
    message = newest(world.thread)
    assert (message.visibility, message.source, message.author_id) == ("internal", "api", world.team.id)
    assert response.get_json() == messages_json([message], settings.effective_base_url, Viewer.of(world.team))[0]
    plain = api.post("/api/workspaces/acme/messages", json={"text": "client can see"}).get_json()
    assert plain["visibility"] == "client"


@pytest.mark.parametrize("body,sentence", [
    ({"text": ""}, "needs some text"),
    ({"text": 5}, "must be a string"),
    ({"text": "x", "internal": "yes"}, "true or false"),
    ([1, 2], "JSON object"),
])
def test_post_errors_are_400_with_a_sentence(api: Any, world: World, body: Any, sentence: str) -> None:
    response = api.post("/api/workspaces/acme/messages", json=body)
    assert response.status_code == 400 and sentence in response.get_json()["error"]


def test_post_without_json_is_400(api: Any, world: World) -> None:
    response = api.post("/api/workspaces/acme/messages", data="text=hi")
    assert response.status_code == 400


def test_api_attachment_download_with_the_token(api: Any, world: World) -> None:
    # The attachment URLs in the JSON work with the same bearer token.
    assert api.get(f"/attachments/{world.internal_file}/budget.txt").data == b"internal numbers"
    response = api.get("/attachments/1/x", headers={"Authorization": "Bearer wrk_nope"})
    assert response.status_code == 404


def test_internal_text_only_reaches_the_team(api: Any, world: World, app: Any) -> None:
    # Sanity check of the premise: the team's API sees the internal note (the portal tests show clients don't).
    assert INTERNAL_TEXT in api.get("/api/workspaces/acme/messages").get_data(as_text=True)
