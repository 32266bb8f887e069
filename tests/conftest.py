"""Shared fixtures: settings on a temporary SQLite file, or on PostgreSQL when
WORKRATE_TEST_DATABASE_URL names one (each test session gets a fresh schema there), plus factories."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings
from storage import db, migrations
from storage.directory import add_client, add_user, create_workspace, thread_of
from storage.models import TEAM, Thread, User, Workspace

PG_URL = os.environ.get("WORKRATE_TEST_DATABASE_URL", "")
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite (temporary files)'}"


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
        from web.passwords import hash_password

        return add_user(email or f"team{self._next()}@agency.test", name, TEAM,
                        password_hash=hash_password(password) if password else None)

    def client(self, workspace: Workspace, email: str | None = None, name: str = "Bob Stone",
               access: bool = True) -> User:
        return add_client(email or f"client{self._next()}@acme.test", name, workspace, access)


@pytest.fixture
def make(database: object) -> Factory:
    return Factory()


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or pytest.skip when the shared folder is absent on this machine."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not on this machine)")
    return path
