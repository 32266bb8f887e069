"""The fixtures of every test (this file is their one home): settings on a temporary SQLite file, or on
PostgreSQL when WORKRATE_TEST_DATABASE_URL names one; a migrated database; factories; the web app with a world
of people (helpers in web_support.py); a workspace for the gateway tests and a real gateway (helpers in
gateway_support.py); a capturing relay for outgoing mail (outbound_relay.py). Password hashing uses argon2's
cheapest parameters here."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from gateway_support import People
from outbound_relay import CapturingRelay
from web_support import CLIENT_TEXT, INTERNAL_TEXT, TEAM_PASSWORD, World, attach

from config import Settings
from storage import db, migrations
from storage.directory import add_client, add_user, create_workspace, thread_of
from storage.models import TEAM, Thread, User, Workspace
from storage.posting import post_message
from web import passwords

PG_URL = os.environ.get("WORKRATE_TEST_DATABASE_URL", "")
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite (temporary files)'}"


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing() -> Iterator[None]:
    """Argon2 with its cheapest parameters: the tests check what hashing does, not how costly it is."""
    production = passwords.hasher
    passwords.hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    yield
    passwords.hasher = production


@pytest.fixture(autouse=True, scope="session")
def no_dns() -> Iterator[None]:
    """SENDER_CHECKS = dns (the default) asks DNS about senders: in the tests' own gateways, a resolver that
    answers nothing (no SPF, DKIM or DMARC records), never the network; tests with records set their zone."""
    from dns_fake import ZoneResolver

    from gateway.inbound.mail_auth import use_resolver

    use_resolver(None, ZoneResolver({}))
    yield
    use_resolver(None, None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own data folder; its own SQLite file or the PostgreSQL test database."""
    return Settings(
        data_dir=tmp_path / "var",
        database_url=PG_URL,
        secret_key="test-secret-" + secrets.token_hex(8),
        reply_domain="reply.test",
        base_url="http://app.test",
        smtp_host="127.0.0.1",
        smtp_port=0,
        web_host="127.0.0.1",
        web_port=0,
        notify_delay=0,  # the operator's "at once, for everyone"; tests of personal timing set None
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[object]:
    """A bound, migrated, empty database with an open connection; dropped afterwards on PostgreSQL."""
    database = db.bind(settings)
    if PG_URL:
        migrations.drop_everything()
    migrations.migrate()
    database.connect(reuse_if_open=True)
    try:
        yield database
    finally:
        if not database.is_closed():
            database.close()
        if PG_URL:
            migrations.drop_everything()


class Factory:
    """Small helpers to build a workspace with people: `make.workspace()`, `make.team()`, `make.client(ws)`."""

    def __init__(self) -> None:
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def workspace(self, name: str | None = None) -> Workspace:
        return create_workspace(name or f"Client {self._next()}")

    def thread(self, workspace: Workspace) -> Thread:
        return thread_of(workspace)

    def team(self, email: str | None = None, name: str = "Kim Lee", password: str | None = None) -> User:
        return add_user(email or f"team{self._next()}@agency.test", name, TEAM,
                        password_hash=passwords.hash_password(password) if password else None)

    def client(self, workspace: Workspace, email: str | None = None, name: str = "Bob Stone",
               access: bool = True) -> User:
        return add_client(email or f"client{self._next()}@acme.test", name, workspace, access)


@pytest.fixture
def make(database: object) -> Factory:
    return Factory()


@pytest.fixture
def app(settings: Settings, database: object) -> Iterator[Flask]:
    """The web app on the test database, in testing mode."""
    from web.app import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    yield app


@pytest.fixture
def world(settings: Settings, make: Factory) -> World:
    """Two workspaces with people and messages: see web_support.World."""
    acme = create_workspace("Acme Co", "acme")
    globex = create_workspace("Globex", "globex")
    team = make.team(email="kim@agency.test", name="Kim Lee", password=TEAM_PASSWORD)
    client = make.client(acme, email="bob@acme.test", name="Bob Stone", access=True)
    no_access = make.client(acme, email="carol@acme.test", name="Carol Park", access=False)
    other = make.client(globex, email="gina@globex.test", name="Gina Globex", access=True)
    thread, globex_thread = thread_of(acme), thread_of(globex)
    public = post_message(thread, team, CLIENT_TEXT, attachments=[attach(settings, "plan.txt", b"the plan")])
    internal = post_message(thread, team, INTERNAL_TEXT, internal=True,
                            attachments=[attach(settings, "budget.txt", b"internal numbers")])
    globex_message = post_message(globex_thread, team, "Globex only",
                                  attachments=[attach(settings, "globex.txt", b"globex bytes")])
    return World(acme=acme, globex=globex, thread=thread, globex_thread=globex_thread, team=team, client=client,
                 no_access=no_access, other=other, public=public, internal=internal,
                 public_file=public.attachments[0].id, internal_file=internal.attachments[0].id,
                 globex_message=globex_message, globex_file=globex_message.attachments[0].id)


@pytest.fixture
def people(settings: Settings, make: Factory) -> People:
    """Acme Co with Kim (team), Bob (client with access) and Eve (client without), for the gateway tests."""
    ws = make.workspace("Acme Co")
    return People(workspace=ws, thread=make.thread(ws), kim=make.team("kim@agency.test", "Kim Lee"),
                  bob=make.client(ws, "bob@acme.test", "Bob Stone"),
                  eve=make.client(ws, "eve@acme.test", "Eve Park", access=False), settings=settings)


@pytest.fixture
def gateway(settings: Settings, database: object) -> Iterator[Any]:
    """A real gateway listening on a free loopback port, on its own event loop thread."""
    from gateway_support import start_gateway

    controller = start_gateway(settings)
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def relay() -> Iterator[CapturingRelay]:
    """A real SMTP relay on loopback that keeps every mail it is handed (tests/outbound_relay.py)."""
    with CapturingRelay() as r:
        yield r


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright (tests/browser_support.py), one per test module; the browser test
    modules skip themselves first when either is missing."""
    from browser_support import launch
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        b = launch(playwright)
        try:
            yield b
        finally:
            b.close()


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or pytest.skip when the shared folder is absent on this machine."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not on this machine)")
    return path
