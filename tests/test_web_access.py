"""Every route's access rules for five kinds of visitor: signed out, a team member, a client with Messages
access, a client of the workspace without access, and a client of another workspace. Plus CSRF rejection
and the security headers every response carries."""
from __future__ import annotations

from typing import Any

import pytest
from web_support import INTERNAL_TEXT, World, csrf_token, post_form, sign_in

PERSONAS = ("out", "team", "client", "no_access", "other")
LOGIN = "login"  # expected: a redirect to the sign-in page


def _person(world: World, who: str) -> Any:
    return None if who == "out" else getattr(world, who)


def _urls(world: World) -> dict[str, str]:
    return {
        "public_file": f"/attachments/{world.public_file}/plan.txt",
        "internal_file": f"/attachments/{world.internal_file}/budget.txt",
        "globex_file": f"/attachments/{world.globex_file}/globex.txt",
        "email": f"/messages/{world.public.id}/email",
        "internal_email": f"/messages/{world.internal.id}/email",
    }


# (method, url or key, {persona: expected status or LOGIN or "->/path"})
GET_RULES = [
    ("/", {"out": LOGIN, "team": "->/workspaces", "client": "->/portal/", "no_access": "->/portal/",
           "other": "->/portal/"}),
    ("/workspaces", {"out": LOGIN, "team": 200, "client": 404, "no_access": 404, "other": 404}),
    ("/w/acme", {"out": LOGIN, "team": 200, "client": "->/portal/w/acme", "no_access": "->/portal/w/acme",
                 "other": "->/portal/w/acme"}),
    ("/w/acme/older?before=999999", {"out": LOGIN, "team": 200, "client": 404, "no_access": 404, "other": 404}),
    ("/w/acme/delivery?ids=1,2", {"out": LOGIN, "team": 200, "client": 404, "no_access": 404, "other": 404}),
    ("/w/acme/members", {"out": LOGIN, "team": 200, "client": 404, "no_access": 404, "other": 404}),
    ("/w/nope", {"out": LOGIN, "team": 404, "client": "->/portal/w/nope", "no_access": "->/portal/w/nope",
                 "other": "->/portal/w/nope"}),
    ("/portal/", {"out": LOGIN, "team": 404, "client": 200, "no_access": 200, "other": 200}),
    ("/portal/w/acme", {"out": LOGIN, "team": "->/w/acme", "client": 200, "no_access": 403, "other": 404}),
    ("/portal/w/globex", {"out": LOGIN, "team": "->/w/globex", "client": 404, "no_access": 404, "other": 200}),
    ("/portal/w/acme/older?before=999999", {"out": LOGIN, "team": 404, "client": 200, "no_access": 403,
                                            "other": 404}),
    ("/events/w/acme", {"out": LOGIN, "team": 200, "client": 200, "no_access": 404, "other": 404}),
    ("/events/w/globex", {"out": LOGIN, "team": 200, "client": 404, "no_access": 404, "other": 200}),
    ("public_file", {"out": LOGIN, "team": 200, "client": 200, "no_access": 404, "other": 404}),
    ("internal_file", {"out": LOGIN, "team": 200, "client": 404, "no_access": 404, "other": 404}),
    ("globex_file", {"out": LOGIN, "team": 200, "client": 404, "no_access": 404, "other": 200}),
    ("/attachments/999999/x.txt", {"out": LOGIN, "team": 404, "client": 404, "no_access": 404, "other": 404}),
    ("email", {"out": LOGIN, "team": 404, "client": 404, "no_access": 404, "other": 404}),  # not an emailed post
    ("/api/workspaces", {"out": 401, "team": 401, "client": 401, "no_access": 401, "other": 401}),  # token only
]

POST_RULES = [
    ("/w/acme/messages", {"text": "hi"}, {"out": LOGIN, "team": 302, "client": 404, "no_access": 404,
                                          "other": 404}),
    ("/portal/w/acme/messages", {"text": "hi"}, {"out": LOGIN, "team": 404, "client": 302, "no_access": 403,
                                                 "other": 404}),
    ("/w/acme/members/invite", {"email": "new@acme.test", "name": "New"},
     {"out": LOGIN, "team": 302, "client": 404, "no_access": 404, "other": 404}),
    ("/w/acme/follow", {"following": "0"}, {"out": LOGIN, "team": 302, "client": 404, "no_access": 404,
                                            "other": 404}),
    ("/logout", {}, {"out": 302, "team": 302, "client": 302, "no_access": 302, "other": 302}),
]


def _check(response: Any, expected: Any) -> None:
    if expected == LOGIN:
        assert response.status_code == 302, response.status_code
        assert response.location.startswith("/login"), response.location
    elif isinstance(expected, str) and expected.startswith("->"):
        assert response.status_code == 302, response.status_code
        assert response.location == expected[2:], response.location
    else:
        assert response.status_code == expected, (response.status_code, response.get_data(as_text=True)[:300])


@pytest.mark.parametrize("who", PERSONAS)
@pytest.mark.parametrize("url,rules", GET_RULES, ids=[r[0] for r in GET_RULES])
def test_get_access(app: Any, world: World, who: str, url: str, rules: dict[str, Any]) -> None:
    # Each GET route answers each kind of visitor as the table says; nothing ever answers 500.
    app.extensions["workrate_settings"] = app.extensions["workrate_settings"].replace(live_stream_seconds=0)
    client = sign_in(app.test_client(), _person(world, who))
    response = client.get(_urls(world).get(url, url))
    _check(response, rules[who])
    if response.status_code == 200 and who in ("client", "no_access", "other"):
        assert INTERNAL_TEXT not in response.get_data(as_text=True)
    response.close()


@pytest.mark.parametrize("who", PERSONAS)
@pytest.mark.parametrize("url,data,rules", POST_RULES, ids=[r[0] for r in POST_RULES])
def test_post_access(app: Any, world: World, who: str, url: str, data: dict[str, str],
                     rules: dict[str, Any]) -> None:
    # Each POST route (with a valid CSRF token) answers each kind of visitor as the table says.
    client = sign_in(app.test_client(), _person(world, who))
    _check(post_form(client, url, data), rules[who])


@pytest.mark.parametrize("url", ["/w/acme/messages", "/portal/w/acme/messages", "/logout", "/w/acme/follow",
                                 "/login"])
def test_post_without_csrf_token_is_refused(app: Any, world: World, url: str) -> None:
    # A form posted without (or with a wrong) CSRF token is refused with 400 and nothing is posted.
    before = world.thread.messages.count()
    who = world.client if "portal" in url else world.team
    client = sign_in(app.test_client(), who)
    assert client.post(url, data={"text": "forged", "email": "kim@agency.test"}).status_code == 400
    assert client.post(url, data={"text": "forged", "csrf_token": "nope"}).status_code == 400
    assert world.thread.messages.count() == before


def test_csrf_token_of_another_session_is_refused(app: Any, world: World) -> None:
    # A token taken from one person's session does not work in another's.
    mallory = sign_in(app.test_client(), world.client)
    token = csrf_token(mallory)
    victim = sign_in(app.test_client(), world.team)
    response = victim.post("/w/acme/messages", data={"text": "forged", "csrf_token": token})
    assert response.status_code == 400


@pytest.mark.parametrize("url", ["/login", "/w/acme", "/portal/w/acme", "/nope", "/api/workspaces",
                                 "/static/app.css"])
def test_security_headers_on_every_response(app: Any, world: World, url: str) -> None:
    # Pages, errors, API answers and static files all carry the security headers; the CSP allows no inline
    # script.
    client = sign_in(app.test_client(), world.team)
    response = client.get(url)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"]


def test_pages_have_no_inline_script(app: Any, world: World) -> None:
    # Templates load scripts from files only, so the CSP never has to allow inline code.
    for who, url in ((world.team, "/w/acme"), (world.client, "/portal/w/acme"), (None, "/login")):
        html = sign_in(app.test_client(), who).get(url).get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html and "onclick=" not in html
        assert '<script src="/static/app.js" defer></script>' in html


def test_session_cookie_flags(app: Any, world: World, settings: Any) -> None:
    # The session cookie is HttpOnly and SameSite=Lax; Secure only behind https.
    from web.app import create_app

    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/login", data={"email": "kim@agency.test", "password": "correct horse battery",
                                           "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure_app = create_app(settings.replace(base_url="https://app.example"))
    assert secure_app.config["SESSION_COOKIE_SECURE"] is True


def test_app_reuses_the_database_handle_bound_for_its_settings(app: Any, settings: Any) -> None:
    # `workrate run` binds the database before the web role starts; the app keeps that handle.
    from storage import db
    from web.app import create_app

    handle = db.database.obj
    create_app(settings)
    assert db.database.obj is handle


def test_deactivated_person_is_signed_out(app: Any, world: World) -> None:
    # A person deactivated after signing in is treated as signed out on their next request.
    client = sign_in(app.test_client(), world.team)
    world.team.active = False
    world.team.save()
    response = client.get("/w/acme")
    assert response.status_code == 302 and response.location.startswith("/login")
