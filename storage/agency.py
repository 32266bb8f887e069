"""The agency itself: its name and branding, and the first-run setup that creates it with its first admin.

There is one Agency row (id 1). Until a team member exists the product is not set up: the web app
shows only the setup page, reachable through a single-use URL that `workrate run` prints.
"""
from __future__ import annotations

import re
import secrets

from peewee import AutoField, CharField, DateTimeField

from storage.db import write_transaction
from storage.directory import DirectoryError, add_user
from storage.models import ADMIN, TEAM, BaseModel, User, utcnow
from storage.tokens import hash_secret

DEFAULT_NAME = "WorkRate Messages"
DEFAULT_ACCENT = "#2457d6"  # the stylesheet's own --accent
ACCENT_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


class Agency(BaseModel):
    id = AutoField()
    name = CharField(max_length=200, default=DEFAULT_NAME)
    accent = CharField(max_length=7, default=DEFAULT_ACCENT)
    logo_key = CharField(max_length=128, null=True)  # key in the file store
    logo_type = CharField(max_length=40, null=True)
    setup_token_hash = CharField(max_length=64, null=True)
    created_at = DateTimeField(default=utcnow)
    setup_done_at = DateTimeField(null=True)


def agency() -> Agency:
    """The agency row, created with defaults on first use."""
    row = Agency.get_or_none(Agency.id == 1)
    if row is None:
        with write_transaction():
            row = Agency.get_or_none(Agency.id == 1) or Agency.create(id=1)
    return row


def is_set_up() -> bool:
    """Whether the agency has a team: created by the setup page, or by the CLI (`workrate user add --team`)."""
    return User.select().where(User.role == TEAM).exists()


def new_setup_token() -> str:
    """A fresh single-use setup secret (any earlier one stops working); only its hash is kept."""
    secret = secrets.token_urlsafe(24)
    row = agency()
    Agency.update(setup_token_hash=hash_secret(secret)).where(Agency.id == row.id).execute()
    return secret


def setup_token_valid(secret: str) -> bool:
    if not secret or len(secret) > 100 or is_set_up():
        return False
    return Agency.select().where((Agency.id == 1) & (Agency.setup_token_hash == hash_secret(secret))).exists()


def complete_setup(secret: str, agency_name: str, name: str, email: str, password_hash: str) -> User:
    """Names the agency and creates its first admin, once: the setup secret is spent in the same
    transaction, so two submits of the form cannot both succeed.

    :raise DirectoryError: a sentence about what is wrong (or that setup is already done).
    """
    agency_name = " ".join((agency_name or "").split())
    if not agency_name:
        raise DirectoryError("Please give your agency's name.")
    if len(agency_name) > 200:
        raise DirectoryError("An agency name can be at most 200 characters long.")
    agency()
    with write_transaction():
        spent = (Agency.update(setup_token_hash=None, setup_done_at=utcnow(), name=agency_name)
                 .where((Agency.id == 1) & (Agency.setup_token_hash == hash_secret(secret or ""))).execute())
        if not spent or User.select().where(User.role == TEAM).exists():
            raise DirectoryError("This setup link was already used. Sign in instead.")
        return add_user(email, name, TEAM, password_hash=password_hash, team_role=ADMIN)


def set_branding(*, name: str | None = None, accent: str | None = None, logo_key: str | None = None,
                 logo_type: str | None = None, remove_logo: bool = False) -> Agency:
    """Changes the agency's name, accent colour or logo. :raise DirectoryError: a value is unusable."""
    row = agency()
    if name is not None:
        name = " ".join(name.split())
        if not name or len(name) > 200:
            raise DirectoryError("The agency's name must be 1 to 200 characters long.")
        row.name = name
    if accent is not None:
        if not ACCENT_RE.match(accent):
            raise DirectoryError("The accent colour must look like #4f46e5 (a # and six hex digits).")
        row.accent = accent.lower()
    if remove_logo:
        row.logo_key, row.logo_type = None, None
    elif logo_key is not None:
        row.logo_key, row.logo_type = logo_key, logo_type
    row.setup_done_at = row.setup_done_at or utcnow()  # branded: shown from now on, however the team was made
    row.save()
    return row


__all__ = ["Agency", "agency", "is_set_up", "new_setup_token", "setup_token_valid", "complete_setup",
           "set_branding", "DEFAULT_NAME", "DEFAULT_ACCENT"]
