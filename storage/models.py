"""The data model of the product: workspaces, people, the one thread per workspace and its messages.

Vocabulary: a `Message` is a post in a thread; an email is always "mail" (see storage/mail_log.py).
All timestamps are naive UTC datetimes.
"""
from __future__ import annotations

import datetime as dt

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from storage.db import database

TEAM = "team"
CLIENT = "client"
ROLES = (TEAM, CLIENT)

ADMIN = "admin"  # a team member who manages workspaces and people (storage/permissions.py decides)
MEMBER = "member"  # a team member who reads and posts
TEAM_ROLES = (ADMIN, MEMBER)

VISIBILITY_CLIENT = "client"  # seen by the team and by clients with Messages access
VISIBILITY_INTERNAL = "internal"  # seen by the team only
VISIBILITIES = (VISIBILITY_CLIENT, VISIBILITY_INTERNAL)

SOURCES = ("web", "portal", "email", "cli", "api")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BaseModel(Model):
    """Each foreign key `x` comes with `x_id`, its column's value without loading the row (peewee makes it;
    the `x_id: int` annotations below each foreign key tell the type checker)."""

    class Meta:
        database = database
        legacy_table_names = False


class Workspace(BaseModel):
    id = AutoField()
    name = CharField(max_length=200)
    slug = CharField(max_length=80, unique=True)
    created_at = DateTimeField(default=utcnow)
    archived_at = DateTimeField(null=True)  # archived: read-only, hidden by default, reply addresses refused

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


class User(BaseModel):
    """A team member or a client contact. `email` is stored lower-cased, so it is unique whatever the case."""

    id = AutoField()
    email = CharField(max_length=320, unique=True)
    name = CharField(max_length=200)
    role = CharField(max_length=10, choices=[(r, r) for r in ROLES])
    password_hash = TextField(null=True)
    active = BooleanField(default=True)
    email_muted = BooleanField(default=False)  # mutes every notification email to this person
    hard_bounces = IntegerField(default=0)  # consecutive hard bounces of notifications to this address
    email_disabled = BooleanField(default=False)  # set after repeated hard bounces, until the team re-enables
    time_zone = CharField(max_length=64, null=True)  # IANA name, for times in emails; taken from the browser
    created_at = DateTimeField(default=utcnow)
    team_role = CharField(max_length=10, null=True)  # ADMIN or MEMBER for a team member, None for a client
    last_seen_at = DateTimeField(null=True)  # last request of a signed-in session (None: never signed in)

    @property
    def is_team(self) -> bool:
        return self.role == TEAM

    @property
    def is_client(self) -> bool:
        return self.role == CLIENT

    @property
    def is_admin(self) -> bool:
        return self.role == TEAM and self.team_role == ADMIN

    @property
    def is_pending(self) -> bool:
        """A team member who has not set a password yet (invited)."""
        return self.role == TEAM and not self.password_hash


class Membership(BaseModel):
    """A person's relation to a workspace.

    For a client: belonging to the workspace's client company, and whether they have Messages access.
    For a team member (optional row): whether they follow the workspace; no row means following.
    """

    id = AutoField()
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    user_id: int
    workspace = ForeignKeyField(Workspace, backref="memberships", on_delete="CASCADE")
    workspace_id: int
    messages_access = BooleanField(default=False)
    following = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    unsubscribed_at = DateTimeField(null=True)  # when following was last turned off from an email's link

    class Meta:
        indexes = ((("user", "workspace"), True),)


class Thread(BaseModel):
    """The one conversation of a workspace."""

    id = AutoField()
    workspace = ForeignKeyField(Workspace, backref="threads", unique=True, on_delete="CASCADE")
    workspace_id: int
    created_at = DateTimeField(default=utcnow)
    # (Its last activity is not stored: storage.visibility.last_activity reads it off the newest message
    # the viewer may see, so that posts to one thread never wait for each other on the thread's row.)


class Message(BaseModel):
    id = AutoField()
    # Its own index too, besides (thread, id) and (thread, visibility, id): with it SQLite walks a thread's
    # search matches newest first and stops at a page, where with (thread, id) alone it sorted them all
    # first (bench/web.py measures search).
    thread = ForeignKeyField(Thread, backref="messages", on_delete="CASCADE")
    thread_id: int
    author = ForeignKeyField(User, backref="messages")
    author_id: int
    visibility = CharField(max_length=10, choices=[(v, v) for v in VISIBILITIES])
    text = TextField()  # Markdown source, as written (or as trimmed from an email)
    html = TextField()  # rendered and sanitized
    source = CharField(max_length=10, choices=[(s, s) for s in SOURCES])
    trimmed_text = TextField(null=True)  # what reply extraction cut from an emailed reply
    inbound_email_id = BigIntegerField(null=True)  # the InboundEmail this post came from
    created_at = DateTimeField(default=utcnow)
    edited_at = DateTimeField(null=True)
    # A deleted message keeps its row (and its place, author, visibility) as a "message deleted" mark; its
    # text, versions and attachments are removed (storage/posting.py delete_message).
    deleted_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("thread", "id"), False),)

    @property
    def is_internal(self) -> bool:
        return self.visibility == VISIBILITY_INTERNAL

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class MessageVersion(BaseModel):
    """An earlier text of an edited message. Seen by whoever may see the message (storage/visibility.py
    visible_versions), never by anyone else; removed with the message's content when it is deleted."""

    id = AutoField()
    message = ForeignKeyField(Message, backref="versions", on_delete="CASCADE")
    text = TextField()
    html = TextField()
    written_at = DateTimeField()  # when this text was posted or last edited
    replaced_at = DateTimeField(default=utcnow)  # when an edit replaced it
    editor = ForeignKeyField(User, null=True, on_delete="SET NULL")  # who replaced it


class Attachment(BaseModel):
    id = AutoField()
    message = ForeignKeyField(Message, backref="attachments", on_delete="CASCADE")
    message_id: int
    name = CharField(max_length=255)  # safe display/download name, never a path
    content_type = CharField(max_length=255)
    size = BigIntegerField()
    sha256 = CharField(max_length=64)
    storage_key = CharField(max_length=128)  # key in storage/files.py's content-addressed store
    created_at = DateTimeField(default=utcnow)


class ReplyToken(BaseModel):
    """A reply address reply+TOKEN@REPLY_DOMAIN, bound to one person, one thread and one audience.

    The token itself is not stored: it is HMAC(secret key, salt) (storage/tokens.py), so the database
    alone (a backup, a dump) never lets anyone post as someone. Lookups go by its SHA-256. A row from
    before that (salt NULL) still answers to its old address but is never handed out again.
    """

    id = AutoField()
    token_hash = CharField(max_length=64, unique=True)  # SHA-256 of the lower-case token
    salt = CharField(max_length=32, null=True)
    token: str  # not a column: set by storage.tokens.reply_token_for for the caller
    user = ForeignKeyField(User, backref="reply_tokens", on_delete="CASCADE")
    user_id: int
    thread = ForeignKeyField(Thread, backref="reply_tokens", on_delete="CASCADE")
    thread_id: int
    internal = BooleanField(default=False)  # replies through it are posted as internal notes
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("user", "thread", "internal"), False),)


class LoginToken(BaseModel):
    """A sign-in link; only the SHA-256 of the secret is stored.

    purpose: "login" (asked for on the sign-in page, single use), "email" (carried by the links of one
    notification email, reusable until it expires), "invite" (a team member's set-your-password link).
    target: the path the person lands on once signed in. workspace_id: the workspace an email link is
    about, so revoking access there kills it.
    """

    id = AutoField()
    token_hash = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="login_tokens", on_delete="CASCADE")
    user_id: int
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)
    purpose = CharField(max_length=10, default="login")
    target = CharField(max_length=500, null=True)
    reusable = BooleanField(default=False)
    workspace_id = IntegerField(null=True)


class ApiToken(BaseModel):
    """A personal token for the team's JSON API; only the SHA-256 of the secret is stored."""

    id = AutoField()
    token_hash = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="api_tokens", on_delete="CASCADE")
    user_id: int
    name = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)


class ReadMarker(BaseModel):
    """The newest message a person has seen in a thread, for unread counts."""

    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE")
    user_id: int
    thread = ForeignKeyField(Thread, on_delete="CASCADE")
    thread_id: int
    last_read_message_id = BigIntegerField(default=0)

    class Meta:
        indexes = ((("user", "thread"), True),)


class LoginAttempt(BaseModel):
    """One sign-in attempt, for rate limiting by email and by remote address."""

    id = AutoField()
    key = CharField(max_length=400, index=True)
    created_at = DateTimeField(default=utcnow, index=True)

