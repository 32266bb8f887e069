"""Helpers of the web tests: the world of people in two workspaces that the `world` fixture builds
(tests/conftest.py), signing in, CSRF tokens, and posting."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient

from config import Settings
from storage.files import FileStore
from storage.models import Message, Thread, User, Workspace
from storage.posting import NewAttachment

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
INTERNAL_TEXT = "SECRET-internal-budget-note"
CLIENT_TEXT = "Hello client, the draft is ready"
TEAM_PASSWORD = "correct horse battery"


@dataclass
class World:
    """Acme (slug acme) with a team member, a client with access, a client without access; Globex with
    its own client. Acme's thread holds a client-visible message and an internal note, each with a file."""

    acme: Workspace
    globex: Workspace
    thread: Thread
    globex_thread: Thread
    team: User
    client: User  # Acme, with Messages access
    no_access: User  # Acme, without Messages access
    other: User  # Globex's client, with access there
    public: Message
    internal: Message
    public_file: int  # attachment ids
    internal_file: int
    globex_message: Message
    globex_file: int


def attach(settings: Settings, name: str, data: bytes, content_type: str = "text/plain") -> NewAttachment:
    stored = FileStore(settings.effective_files_dir).put_bytes(data)
    return NewAttachment(name=name, content_type=content_type, size=stored.size, sha256=stored.sha256,
                         storage_key=stored.key)


def sign_in(client: FlaskClient, user: User | None) -> FlaskClient:
    """Starts a real server-side session for the person and puts it in the test client's cookie (the
    sign-in forms have their own tests)."""
    import datetime as dt

    from storage.sessions import LINK, PASSWORD, start_session

    with client.session_transaction() as session:
        session.clear()
        if user is not None:
            secret, _ = start_session(user, PASSWORD if user.is_team else LINK, dt.timedelta(days=1))
            session["sid"] = secret
            session["user_id"] = user.id
    return client


def csrf_token(client: FlaskClient) -> str:
    """A CSRF token for the client's session, read from a page's form like a browser would."""
    page = client.get("/login")
    match = CSRF_RE.search(page.get_data(as_text=True))
    if match is None:  # signed in: /login redirects, so read it from the sign-out form of any page
        page = client.get("/login", follow_redirects=True)
        match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, "no CSRF token on the page"
    return match.group(1)


def post_form(client: FlaskClient, url: str, data: dict[str, Any] | None = None, *, json: bool = False,
              **kwargs: Any) -> Any:
    data = dict(data or {})
    data.setdefault("csrf_token", csrf_token(client))
    headers = {"Accept": "application/json"} if json else {}
    return client.post(url, data=data, headers=headers, **kwargs)


def newest(thread: Thread) -> Message:
    return Message.select().where(Message.thread == thread).order_by(Message.id.desc()).get()
