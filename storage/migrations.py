"""Schema versions. Each migration runs once, in order, inside a transaction that holds a lock, so that
several processes starting at the same moment upgrade the database exactly once and never lose data.

To change the schema: append a function to MIGRATIONS; never edit one that has shipped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from peewee import AutoField, DateTimeField, IntegerField

from storage.agency import Agency
from storage.avatars import Avatar
from storage.away import ContactAway
from storage.db import database, is_sqlite
from storage.episodes import EmailEpisode
from storage.file_removals import FileRemoval
from storage.held import HeldPost
from storage.learned_signatures import LearnedSignature
from storage.mail_log import InboundEmail, OutboxEmail, RawMail, ThreadEvent
from storage.models import (
    ApiToken,
    Attachment,
    BaseModel,
    LoginAttempt,
    LoginToken,
    Membership,
    Message,
    MessageVersion,
    ReadMarker,
    ReplyToken,
    Thread,
    User,
    Workspace,
    utcnow,
)
from storage.notify_schedule import NotifyChoice, NotifyPreference
from storage.rate_limits import RateCount
from storage.refusals import RcptRefusal
from storage.sessions import WebSession

log = logging.getLogger(__name__)

# Any 64-bit number works as long as every WorkRate process uses the same one.
PG_MIGRATION_LOCK = 0x576F726B52617465

# The tables version 1 created; later versions add theirs (a shipped migration never changes).
_V1_MODELS = [
    Workspace, User, Membership, Thread, Message, Attachment, ReplyToken, LoginToken, ApiToken,
    ReadMarker, LoginAttempt, InboundEmail, OutboxEmail, ThreadEvent,
]
ALL_MODELS = [
    *_V1_MODELS, RawMail, WebSession, Agency, RcptRefusal, MessageVersion,
    ContactAway,
    EmailEpisode,
    LearnedSignature,
    FileRemoval,
    Avatar,
    NotifyPreference,
    NotifyChoice,
    HeldPost,
    RateCount,
]


class SchemaVersion(BaseModel):
    id = AutoField()
    version = IntegerField(unique=True)
    applied_at = DateTimeField(default=utcnow)


def _v1_initial() -> None:
    database.create_tables(_V1_MODELS)
    # Only accepted mail is unique per reply address: a retry after a logged 451 must be processed.
    database.execute_sql(
        "CREATE UNIQUE INDEX inbound_email_accepted_once ON inbound_email (message_id_hash, reply_token) "
        "WHERE outcome = 'accepted'")
    database.execute_sql("CREATE INDEX message_thread_visibility_id ON message (thread_id, visibility, id)")
    database.execute_sql("CREATE INDEX outbox_due ON outbox_email (status, next_attempt_at)")
    database.execute_sql("CREATE INDEX outbox_recipient_thread ON outbox_email (recipient_id, thread_id, status)")
    database.execute_sql("CREATE INDEX thread_event_by_thread ON thread_event (thread_id, id)")
    if is_sqlite():
        database.execute_sql(
            "CREATE VIRTUAL TABLE message_fts USING fts5(text, content='message', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 2')")
        database.execute_sql(
            "CREATE TRIGGER message_fts_ai AFTER INSERT ON message BEGIN "
            "INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END")
        database.execute_sql(
            "CREATE TRIGGER message_fts_ad AFTER DELETE ON message BEGIN "
            "INSERT INTO message_fts(message_fts, rowid, text) VALUES ('delete', old.id, old.text); END")
        database.execute_sql(
            "CREATE TRIGGER message_fts_au AFTER UPDATE OF text ON message BEGIN "
            "INSERT INTO message_fts(message_fts, rowid, text) VALUES ('delete', old.id, old.text); "
            "INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END")
    else:
        database.execute_sql(
            "CREATE INDEX message_fts ON message USING gin (to_tsvector('simple', text))")


def _v2_postgres_search_column() -> None:
    # Searching through an expression index let the planner walk the primary key backwards and recompute
    # to_tsvector on every row for rare words; a stored column avoids it (bench/web.py measures search).
    if is_sqlite():
        return
    database.execute_sql("DROP INDEX IF EXISTS message_fts")
    database.execute_sql(
        "ALTER TABLE message ADD COLUMN search_tsv tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED")
    database.execute_sql("CREATE INDEX message_search_tsv ON message USING gin (search_tsv)")


def _v3_raw_mail_table() -> None:
    # Small raw mails are kept in the database, in the transaction that records them (storage/mail_log.py).
    if is_sqlite():
        # The key is the table's own order: no second index (a page more to write per mail) for it.
        database.execute_sql(
            'CREATE TABLE IF NOT EXISTS "raw_mail" ("key" VARCHAR(64) NOT NULL PRIMARY KEY, "data" BLOB NOT NULL) '
            "WITHOUT ROWID")
    else:
        database.create_tables([RawMail])
    # Every index is one more page written per received mail: these were covered by others or never read.
    for index in ("thread_event_thread_id", "inbound_email_received_at"):
        database.execute_sql(f"DROP INDEX IF EXISTS {index}")
    # A thread's last activity is read off its newest message (storage.visibility.last_activity): updating
    # it with every post made concurrent posts to one thread wait for each other on its row.
    # (A database created since has no such column: version 1 makes the tables as the models are now.)
    if any(column.name == "last_activity_at" for column in database.get_columns("thread")):
        database.execute_sql('ALTER TABLE "thread" DROP COLUMN "last_activity_at"')


def _v4_reply_token_without_last_used() -> None:
    # reply_token.last_used_at was never written. (A database created since has no such column.)
    if any(column.name == "last_used_at" for column in database.get_columns("reply_token")):
        database.execute_sql('ALTER TABLE "reply_token" DROP COLUMN "last_used_at"')


def _add_missing_columns(model: type[BaseModel], names: list[str]) -> None:
    """Adds the model's fields `names` to its table, those that are not there yet (version 1 makes the
    tables as the models are now, so a database created since has them already)."""
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

    table = model._meta.table_name
    have = {column.name for column in database.get_columns(table)}
    migrator = SqliteMigrator(database) if is_sqlite() else PostgresqlMigrator(database)
    fields = [model._meta.fields[name] for name in names]
    migrate(*[migrator.add_column(table, field.column_name, field)
              for field in fields if field.column_name not in have])


def _v5_sessions_roles_agency() -> None:
    # Server-side sessions (storage/sessions.py), the agency and its setup (storage/agency.py), team roles,
    # archived workspaces, unsubscribe dates, and sign-in links that land somewhere and last for days.
    database.create_tables([WebSession, Agency], safe=True)
    database.execute_sql("CREATE INDEX IF NOT EXISTS web_session_user ON web_session (user_id, ended_at)")
    _add_missing_columns(User, ["team_role", "last_seen_at"])
    _add_missing_columns(Workspace, ["archived_at"])
    _add_missing_columns(Membership, ["unsubscribed_at"])
    _add_missing_columns(LoginToken, ["purpose", "target", "reusable", "workspace_id"])
    # Everyone on the team before roles existed managed everything (through the CLI): they stay admins.
    User.update(team_role="admin").where((User.role == "team") & User.team_role.is_null()).execute()


def _v6_rcpt_refusals() -> None:
    # Refusals at RCPT time, counted per network, recipient and reason (storage/refusals.py).
    database.create_tables([RcptRefusal], safe=True)


def _v7_edits_deletes_time_zones() -> None:
    # Edited messages keep their earlier texts; deleted ones stay as a mark; times in emails use the
    # reader's own time zone.
    database.create_tables([MessageVersion], safe=True)
    _add_missing_columns(Message, ["deleted_at"])
    _add_missing_columns(User, ["time_zone"])


def _v8_reply_tokens_hashed() -> None:
    # Reply tokens were stored as they are: whoever read the database (a backup, a dump) could post as
    # anyone. Now only their SHA-256 is kept (and a salt from which the secret key rebuilds new ones, see
    # storage/tokens.py). Addresses already handed out keep working: they are looked up by their hash.
    # The inbound log's reply_token (the key that posts a mail once) becomes a hash too, and its rcpt_to
    # keeps only a hint of the token.
    from storage.redaction import redact
    from storage.tokens import hash_secret

    columns = {c.name for c in database.get_columns("reply_token")}
    if "token" in columns:
        database.execute_sql('ALTER TABLE "reply_token" RENAME COLUMN "token" TO "token_hash"')
        for row_id, token in database.execute_sql('SELECT "id", "token_hash" FROM "reply_token"').fetchall():
            database.execute_sql('UPDATE "reply_token" SET "token_hash" = %s WHERE "id" = %s'
                                 .replace("%s", _param()), (hash_secret(str(token).lower()), row_id))
    if "salt" not in columns:
        database.execute_sql('ALTER TABLE "reply_token" ADD COLUMN "salt" VARCHAR(32)')
    keys = [k for (k,) in database.execute_sql(
        'SELECT DISTINCT "reply_token" FROM "inbound_email" WHERE "reply_token" IS NOT NULL').fetchall()]
    for key in keys:
        database.execute_sql('UPDATE "inbound_email" SET "reply_token" = %s WHERE "reply_token" = %s'
                             .replace("%s", _param()), (hash_secret(key), key))
    addresses = [a for (a,) in database.execute_sql(
        """SELECT DISTINCT "rcpt_to" FROM "inbound_email" WHERE "rcpt_to" LIKE '%%+%%'"""
        .replace("%%", "%" if is_sqlite() else "%%")).fetchall()]
    for address in addresses:
        if redact(address) != address:
            database.execute_sql('UPDATE "inbound_email" SET "rcpt_to" = %s WHERE "rcpt_to" = %s'
                                 .replace("%s", _param()), (redact(address), address))


def _v9_inbound_auth_column() -> None:
    # What the gateway found about the sender (SPF, DKIM, DMARC) and decided, kept with each received mail.
    if "auth" not in {c.name for c in database.get_columns("inbound_email")}:
        database.execute_sql("ALTER TABLE \"inbound_email\" ADD COLUMN \"auth\" VARCHAR(300) NOT NULL DEFAULT ''")


def _v10_notification_timing() -> None:
    # Each person's email timing per workspace, and their minutes, digest hour and quiet hours
    # (storage/notify_schedule.py). No row means the defaults, so nothing to fill in.
    database.create_tables([NotifyPreference, NotifyChoice], safe=True)


def _v11_contact_away() -> None:
    # Client contacts whose out-of-office auto-reply says they are away (storage/away.py).
    database.create_tables([ContactAway], safe=True)


def _v12_email_episodes() -> None:
    # Notification emails are grouped into episodes, each with its own root Message-ID and subject.
    database.create_tables([EmailEpisode], safe=True)


def _v13_held_posts_shared_counts_redacted_refusals() -> None:
    # Replies held until their sender confirms them, or held by the loop breaker (storage/held.py).
    database.create_tables([HeldPost], safe=True)
    # Rate counts shared by every gateway process (storage/rate_limits.py), where each counted its own.
    database.create_tables([RateCount], safe=True)
    # Refused reply addresses were kept in full in the RCPT refusal log: now redacted like the logs, with
    # the token's hash (for the per-workspace mail log). Rows that become alike are merged.
    _redact_refused_addresses()


def _redact_refused_addresses() -> None:
    import re

    from storage.redaction import redact
    from storage.tokens import hash_secret

    if "token_hash" not in {c.name for c in database.get_columns("rcpt_refusal")}:
        database.execute_sql('ALTER TABLE "rcpt_refusal" ADD COLUMN "token_hash" VARCHAR(64)')
        database.execute_sql('CREATE INDEX IF NOT EXISTS "rcpt_refusal_token_hash" ON "rcpt_refusal" ("token_hash")')
    token_of = re.compile(r"^(?:reply|bounce)\+([0-9a-f]{32,64})@")
    for row in list(RcptRefusal.select().where(RcptRefusal.rcpt_to.contains("+"))):
        clean = redact(row.rcpt_to)
        if clean == row.rcpt_to:
            continue
        match = token_of.match(row.rcpt_to.lower())
        twin = RcptRefusal.get_or_none((RcptRefusal.network == row.network) & (RcptRefusal.rcpt_to == clean)
                                       & (RcptRefusal.reason == row.reason))
        if twin is not None:
            RcptRefusal.update(count=RcptRefusal.count + row.count, last_at=max(twin.last_at, row.last_at),
                               first_at=min(twin.first_at, row.first_at)).where(RcptRefusal.id == twin.id).execute()
            RcptRefusal.delete().where(RcptRefusal.id == row.id).execute()
        else:
            RcptRefusal.update(rcpt_to=clean, token_hash=hash_secret(match.group(1)) if match else None).where(
                RcptRefusal.id == row.id).execute()


def _v14_learned_signatures() -> None:
    # Blocks that end a sender's mails, counted per sender address (storage/learned_signatures.py).
    database.create_tables([LearnedSignature], safe=True)


def _v15_file_removals_avatars() -> None:
    # The files of deleted messages still to remove from the store (storage/file_removals.py), and people's
    # pictures (storage/avatars.py).
    database.create_tables([FileRemoval, Avatar], safe=True)


def _v16_outbox_held_for() -> None:
    # What holds a notification email (its recipient's unread window, digest or quiet hours), for the
    # team's delivery line (storage/outbox.py delivery_status).
    _add_missing_columns(OutboxEmail, ["held_for"])


def _v17_held_sizes_and_decisions() -> None:
    # Held posts: the bytes of their files (counted against quotas while held) and a mark when an admin
    # discarded one; received mail: which admin posted or discarded its held reply, and when (storage/held.py).
    import json

    _add_missing_columns(HeldPost, ["discarded_at", "size"])
    _add_missing_columns(InboundEmail, ["decided_by", "decided_at"])
    for row in list(HeldPost.select(HeldPost.id, HeldPost.attachments)):
        size = sum(int(item.get("size", 0)) for item in json.loads(row.attachments or "[]"))
        if size:
            HeldPost.update(size=size).where(HeldPost.id == row.id).execute()


def _v18_outbox_message_id_index() -> None:
    # reply@ finds the notification a mail answers by its Message-ID: without an index, every such mail from
    # anyone scanned the whole outbox.
    database.execute_sql('CREATE INDEX IF NOT EXISTS "outbox_email_mail_message_id" '
                         'ON "outbox_email" ("mail_message_id")')


def _param() -> str:
    return "?" if is_sqlite() else "%s"


MIGRATIONS: list[tuple[int, Callable[[], None]]] = [
    (1, _v1_initial),
    (2, _v2_postgres_search_column),
    (3, _v3_raw_mail_table),
    (4, _v4_reply_token_without_last_used),
    (5, _v5_sessions_roles_agency),
    (6, _v6_rcpt_refusals),
    (7, _v7_edits_deletes_time_zones),
    (8, _v8_reply_tokens_hashed),
    (9, _v9_inbound_auth_column),
    (10, _v10_notification_timing),
    (11, _v11_contact_away),
    (12, _v12_email_episodes),
    (13, _v13_held_posts_shared_counts_redacted_refusals),
    (14, _v14_learned_signatures),
    (15, _v15_file_removals_avatars),
    (16, _v16_outbox_held_for),
    (17, _v17_held_sizes_and_decisions),
    (18, _v18_outbox_message_id_index),
]

# Helpers' branches number their migrations ahead of merging, so the list may have gaps.
LATEST_VERSION = max(version for version, _ in MIGRATIONS)


def current_version() -> int:
    if not database.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select(SchemaVersion.version).order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def migrate() -> list[int]:
    """Brings the schema to LATEST_VERSION; returns the versions applied by this call."""
    applied: list[int] = []
    if is_sqlite():
        # BEGIN IMMEDIATE takes the write lock at once, so a second process waits and then sees
        # the versions the first one applied.
        with database.connection_context():
            with database.atomic("IMMEDIATE"):
                applied = _apply_pending()
    else:
        with database.connection_context():
            with database.atomic():
                database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK,))
                applied = _apply_pending()
    return applied


def _apply_pending() -> list[int]:
    database.create_tables([SchemaVersion], safe=True)
    done = {row.version for row in SchemaVersion.select(SchemaVersion.version)}
    applied = []
    for version, step in MIGRATIONS:
        if version in done:
            continue
        log.info("applying schema migration %d (%s)", version, step.__name__)
        step()
        SchemaVersion.create(version=version)
        applied.append(version)
    return applied


def drop_everything() -> None:
    """Removes every table (tests only)."""
    with database.connection_context():
        if is_sqlite():
            database.execute_sql("DROP TABLE IF EXISTS message_fts")
        database.drop_tables(ALL_MODELS + [SchemaVersion], safe=True, cascade=not is_sqlite())


__all__ = ["ALL_MODELS", "LATEST_VERSION", "SchemaVersion", "current_version", "migrate"]
