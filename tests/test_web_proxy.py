"""Sign-in limits behind a reverse proxy (settings.proxy_hops: the client's address comes from
X-Forwarded-For only then, so each person has their own limit and nobody dodges it by sending the header),
and the limits on requests for sign-in links, which never use up anyone's password attempts.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify, request
from web_support import TEAM_PASSWORD, World, csrf_token

from storage.mail_log import LOGIN_LINK, OutboxEmail
from web.auth import link_limits

ATTEMPTS = 3
PROXY = "10.0.0.1"  # the reverse proxy's own address: every request arrives from it


def make_app(settings: Any, hops: int) -> Iterator[Flask]:
    from web.app import create_app
    from web.events import stop_watcher

    app = create_app(settings.replace(proxy_hops=hops, login_attempts=ATTEMPTS))
    app.config["TESTING"] = True

    @app.route("/_probe")
    def probe() -> Any:  # what the app believes about the request
        return jsonify(remote=request.remote_addr, scheme=request.scheme, host=request.host)

    yield app
    stop_watcher(app)


@pytest.fixture
def direct(settings: Any, database: Any) -> Iterator[Flask]:
    yield from make_app(settings, 0)


@pytest.fixture
def proxied(settings: Any, database: Any) -> Iterator[Flask]:
    yield from make_app(settings, 1)


def login(app: Flask, email: str, password: str, forwarded_for: str | None = None) -> int:
    client = app.test_client()
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)},
                           headers=headers, environ_base={"REMOTE_ADDR": PROXY})
    return response.status_code


def ask_link(app: Flask, email: str, remote: str = PROXY) -> int:
    client = app.test_client()
    response = client.post("/login/link", data={"email": email, "csrf_token": csrf_token(client)},
                           environ_base={"REMOTE_ADDR": remote})
    return response.status_code


def link_mails(to: str) -> int:
    return OutboxEmail.select().where((OutboxEmail.kind == LOGIN_LINK) & (OutboxEmail.to_address == to)).count()


def test_behind_a_proxy_each_forwarded_address_has_its_own_limit(proxied: Flask, world: World) -> None:
    # Guesses from one person behind the proxy use up that person's attempts, not everyone's.
    for i in range(ATTEMPTS):
        assert login(proxied, f"guess{i}@agency.test", "nope", forwarded_for="203.0.113.7") == 401
    assert login(proxied, "kim@agency.test", TEAM_PASSWORD, forwarded_for="203.0.113.7") == 429
    # Prepending a made-up address does not help: only the hop the proxy added is trusted.
    assert login(proxied, "kim@agency.test", TEAM_PASSWORD, forwarded_for="198.51.100.1, 203.0.113.7") == 429
    assert login(proxied, "kim@agency.test", TEAM_PASSWORD, forwarded_for="203.0.113.8") == 302


def test_without_proxy_hops_forwarded_headers_are_ignored(direct: Flask, world: World) -> None:
    # With proxy_hops = 0 a client cannot choose its address with a header: the socket's peer counts.
    for i in range(ATTEMPTS):
        assert login(direct, f"guess{i}@agency.test", "nope", forwarded_for=f"203.0.113.{i}") == 401
    assert login(direct, "kim@agency.test", TEAM_PASSWORD, forwarded_for="203.0.113.99") == 429
    probe = direct.test_client().get("/_probe", headers={"X-Forwarded-For": "203.0.113.5",
                                                         "X-Forwarded-Proto": "https"},
                                     environ_base={"REMOTE_ADDR": PROXY}).get_json()
    assert probe == {"remote": PROXY, "scheme": "http", "host": "localhost"}


def test_proxy_sets_address_and_scheme_but_not_host(proxied: Flask, world: World) -> None:
    # X-Forwarded-For and X-Forwarded-Proto are trusted for one hop; X-Forwarded-Host is not (x_host=0).
    probe = proxied.test_client().get("/_probe", headers={"X-Forwarded-For": "203.0.113.5",
                                                          "X-Forwarded-Proto": "https",
                                                          "X-Forwarded-Host": "evil.test"},
                                      environ_base={"REMOTE_ADDR": PROXY}).get_json()
    assert probe == {"remote": "203.0.113.5", "scheme": "https", "host": "localhost"}


def test_many_link_requests_from_one_address_lock_nobody_out(direct: Flask, world: World) -> None:
    # Ten clients behind one address ask for links: all are answered, and the team member behind the same
    # address still signs in with a password. The per-address link limit is generous but real.
    per_email, per_remote = link_limits(ATTEMPTS)
    assert per_remote >= 10 * ATTEMPTS and per_email <= ATTEMPTS
    for i in range(10):
        assert ask_link(direct, f"client{i}@acme.test") == 200
    assert ask_link(direct, "bob@acme.test") == 200
    assert link_mails("bob@acme.test") == 1
    assert login(direct, "kim@agency.test", TEAM_PASSWORD) == 302
    for i in range(11, per_remote):
        assert ask_link(direct, f"client{i}@acme.test") == 200
    assert ask_link(direct, "someone.else@acme.test") == 429
    assert ask_link(direct, "someone.else@acme.test", remote="10.0.0.2") == 200


def test_link_requests_are_limited_per_email_address(direct: Flask, world: World) -> None:
    # One address is sent at most per_email links in 15 minutes, from wherever they are asked for; other
    # addresses are not affected.
    per_email, _ = link_limits(ATTEMPTS)
    for i in range(per_email):
        assert ask_link(direct, "Bob@Acme.test", remote=f"10.0.1.{i}") == 200
    assert ask_link(direct, "bob@acme.test", remote="10.0.2.1") == 429
    assert link_mails("bob@acme.test") == per_email
    assert ask_link(direct, "gina@globex.test", remote="10.0.1.0") == 200
    assert link_mails("gina@globex.test") == 1
