"""Reply tokens, sign-in links and API tokens: random secrets bound to a person."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from storage import changes
from storage.models import (
    TEAM,
    ApiToken,
    LoginToken,
    Membership,
    ReplyToken,
    Thread,
    User,
    utcnow,
)

TOKEN_BYTES = 16  # 128 bits; hex keeps it case-insensitive, as some servers fold local parts
_SALT_BYTES = 16
_DERIVATION = "workrate reply token v1:"


def new_reply_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def derive_reply_token(secret_key: str, salt: str) -> str:
    """The token of a reply address: HMAC-SHA256(secret key, salt), its first 128 bits in hex.

    Only the salt and the token's hash are stored, so the token can be rebuilt for every notification
    by whoever holds the secret key, and by nobody who only holds the database.
    """
    if not secret_key:
        raise ValueError("a secret key is needed to issue reply addresses")
    digest = hmac.new(secret_key.encode(), (_DERIVATION + salt).encode(), hashlib.sha256).hexdigest()
    return digest[:TOKEN_BYTES * 2]


def reply_token_for(user: User, thread: Thread, internal: bool = False, *, secret_key: str) -> ReplyToken:
    """The person's live reply token row for the thread and audience, issued on first use; its `token`
    attribute (not a column) holds the token itself.

    A client's token is never internal: asking for one is a programming error. A live row whose token the
    current secret key does not rebuild (issued before tokens were derived, or under another key) still
    answers to its address, but a new row is issued for new mail.
    """
    if internal and user.role != TEAM:
        raise ValueError("a client's reply address can never be internal")
    live = (ReplyToken.select()
            .where((ReplyToken.user == user) & (ReplyToken.thread == thread)
                   & (ReplyToken.internal == internal) & ReplyToken.revoked_at.is_null()
                   & ReplyToken.salt.is_null(False))
            .order_by(ReplyToken.id.desc()))
    for row in live.limit(3):
        token = derive_reply_token(secret_key, str(row.salt))
        if hmac.compare_digest(hash_secret(token), row.token_hash):
            row.token = token
            return row
    salt = secrets.token_hex(_SALT_BYTES)
    token = derive_reply_token(secret_key, salt)
    row = ReplyToken.create(token_hash=hash_secret(token), salt=salt, user=user, thread=thread, internal=internal)
    row.token = token
    return row


def find_live_reply_token(token: str) -> ReplyToken | None:
    """The unrevoked token, compared case-insensitively, or None."""
    return (ReplyToken.select()
            .where((ReplyToken.token_hash == hash_secret(token.lower())) & ReplyToken.revoked_at.is_null())
            .first())


def revoke_reply_tokens(user: User, thread: Thread | None = None) -> int:
    query = ReplyToken.update(revoked_at=utcnow()).where(
        (ReplyToken.user == user) & ReplyToken.revoked_at.is_null())
    if thread is not None:
        query = query.where(ReplyToken.thread == thread)
    return query.execute()


def set_messages_access(user: User, workspace_id: int, granted: bool) -> Membership:
    """Grants or revokes a client's Messages access; revoking kills their reply tokens at once."""
    membership, _ = Membership.get_or_create(user=user, workspace=workspace_id)
    membership.messages_access = granted
    membership.save()
    changes.access_changed(user.id)  # open live-update streams check access again once this commits
    if not granted:
        thread = Thread.get(Thread.workspace == workspace_id)
        revoke_reply_tokens(user, thread)
    return membership


LOGIN = "login"  # asked for on the sign-in page: single use, minutes
EMAIL = "email"  # carried by the links of one notification email: reusable, days
INVITE = "invite"  # a team member's set-your-password link: single use, days
MAX_TARGET = 500


def create_login_token(user: User, minutes: int, *, purpose: str = LOGIN, target: str | None = None,
                       reusable: bool = False, workspace_id: int | None = None) -> str:
    """Issues a sign-in secret valid for `minutes`; returns the secret (only its hash is kept).

    target: the path on this site the person lands on once signed in.
    """
    secret = secrets.token_urlsafe(32)
    LoginToken.create(token_hash=hash_secret(secret), user=user, purpose=purpose,
                      target=(target or None) and target[:MAX_TARGET], reusable=reusable,
                      workspace_id=workspace_id, expires_at=utcnow() + dt.timedelta(minutes=minutes))
    return secret


def live_login_token(secret: str, now: dt.datetime | None = None) -> LoginToken | None:
    """The link's row, with its user loaded, while it can still sign in: not expired (revoking access or
    deactivating someone expires their links), not used when single-use, its person active."""
    if not secret or len(secret) > 200:
        return None
    now = now or utcnow()
    row = (LoginToken.select(LoginToken, User).join(User)
           .where(LoginToken.token_hash == hash_secret(secret)).first())
    if row is None or row.expires_at <= now or (row.used_at is not None and not row.reusable):
        return None
    return row if row.user.active else None


def use_login_token(secret: str) -> LoginToken | None:
    """Spends the link (a single-use one only once, even when two requests race) and returns its row."""
    now = utcnow()
    row = live_login_token(secret, now)
    if row is None:
        return None
    query = LoginToken.update(used_at=now).where(LoginToken.id == row.id)
    if not row.reusable:
        query = query.where(LoginToken.used_at.is_null())
    return row if query.execute() else None


def redeem_login_token(secret: str) -> User | None:
    """Marks the sign-in secret used and returns its active user, or None if unknown, used or expired."""
    row = use_login_token(secret)
    return row.user if row is not None else None


def create_api_token(user: User, name: str = "") -> str:
    secret = "wrk_" + secrets.token_urlsafe(32)
    ApiToken.create(token_hash=hash_secret(secret), user=user, name=name)
    return secret


def user_for_api_token(secret: str) -> User | None:
    row = (ApiToken.select().where((ApiToken.token_hash == hash_secret(secret)) & ApiToken.revoked_at.is_null())
           .first())
    if row is None:
        return None
    user = User.get_by_id(row.user_id)
    return user if user.active else None
