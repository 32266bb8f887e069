"""`workrate run --demo`: a sample workspace with people, messages and a file, and the links to sign in.

Idempotent: running it again finds what it created before and only prints fresh sign-in links.
"""
from __future__ import annotations

from collections.abc import Callable

from config import Settings
from storage.db import database
from storage.directory import add_client, add_user, create_workspace, thread_of
from storage.files import FileStore
from storage.models import TEAM, Message, User, Workspace
from storage.notify_schedule import NOW
from storage.notify_settings import set_modes
from storage.posting import NewAttachment, post_message
from storage.tokens import create_login_token
from web.passwords import hash_password

DEMO_SLUG = "acme"
DEMO_WORKSPACE = "Acme Co"
TEAM_EMAIL = "kim@agency.example"
TEAM_PASSWORD = "demo-password"
CLIENT_EMAIL = "bob@acme.example"
NO_ACCESS_EMAIL = "carol@acme.example"

SAMPLE = [
    ("team", False, "Hi Bob, welcome to **Acme Co**'s thread. Everything about the website redesign goes here.\n\n"
                    "- the new home page\n- the contact form\n- launch date"),
    ("client", False, "Thanks Kim! Could we see the home page draft this week?"),
    ("team", True, "Internal: the draft needs another day; the designer is out on Thursday."),
    ("team", False, "Yes — you'll have it by Friday. You can reply to any notification email to post here. "
                    "Attached: the outline we agreed on."),
]
ATTACHMENT_NAME = "home-page-outline.txt"
ATTACHMENT_TEXT = """Home page outline (draft)

1. Hero: one sentence on what Acme does, one button: Get a quote
2. Three services, each with a photo
3. Customer quotes
4. Contact form: name, email, message
"""


def create_demo(settings: Settings, echo: Callable[[str], object] = print) -> None:
    """Creates (once) the Acme Co workspace, a team member with a password, a client with Messages
    access and one without, and a few messages including an internal note; echoes how to sign in."""
    with database.connection_context():
        workspace = Workspace.get_or_none(Workspace.slug == DEMO_SLUG) or create_workspace(DEMO_WORKSPACE, DEMO_SLUG)
        team = User.get_or_none(User.email == TEAM_EMAIL) or add_user(
            TEAM_EMAIL, "Kim Lee", TEAM, password_hash=hash_password(TEAM_PASSWORD))
        client = User.get_or_none(User.email == CLIENT_EMAIL) or add_client(
            CLIENT_EMAIL, "Bob Stone", workspace, messages_access=True)
        other = User.get_or_none(User.email == NO_ACCESS_EMAIL) or add_client(
            NO_ACCESS_EMAIL, "Carol Park", workspace, messages_access=False)
        thread = thread_of(workspace)
        # The demo's client chose "immediately", so that its emails show at once (the default waits 5 minutes).
        set_modes(client, {workspace.id: NOW})
        if not Message.select().where(Message.thread == thread).exists():
            for n, (who, internal, text) in enumerate(SAMPLE, start=1):
                files = [_outline(settings)] if n == len(SAMPLE) else []
                post_message(thread, team if who == "team" else client, text, internal=internal,
                             source="web" if who == "team" else "portal", attachments=files)
        base = settings.effective_base_url
        client_link = f"{base}/login/{create_login_token(client, settings.login_link_minutes)}"
        other_link = f"{base}/login/{create_login_token(other, settings.login_link_minutes)}"
    echo("")
    echo(f"Demo workspace {workspace.name!r} is ready. Open {base}/")
    echo(f"  Team member:  {TEAM_EMAIL}  password: {TEAM_PASSWORD}   (sign in at {base}/login)")
    echo(f"  Client with Messages access ({CLIENT_EMAIL}), one-time link, {settings.login_link_minutes} minutes:")
    echo(f"    {client_link}")
    echo(f"  Client without access ({NO_ACCESS_EMAIL}):")
    echo(f"    {other_link}")
    echo(f"  More links: workrate login-link {CLIENT_EMAIL}")
    echo("")


def _outline(settings: Settings) -> NewAttachment:
    """The demo's file, stored like an upload."""
    stored = FileStore(settings.effective_files_dir).put_bytes(ATTACHMENT_TEXT.encode())
    return NewAttachment(name=ATTACHMENT_NAME, content_type="text/plain", size=stored.size, sha256=stored.sha256,
                         storage_key=stored.key)
