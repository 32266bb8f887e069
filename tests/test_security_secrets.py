"""Issue 16, secrets at rest: reply tokens are neither stored nor logged, the data folder is private, and a
sign-in link written as an .eml file (no relay) disappears once the link is used or has expired."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

from gateway_support import People, eml, send
from web_support import World, csrf_token, post_form

from config import Settings
from config.settings import stored_secret_key
from gateway.outbound import transport
from gateway.outbound.worker import OutboxWorker
from storage import db
from storage.files import FileStore
from storage.link_mail import EML_FOLDER, purge_spent_link_mail
from storage.models import LoginToken
from storage.redaction import install_log_redaction
from storage.tokens import revoke_reply_tokens


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _table_text(table: str) -> str:
    return repr(db.database.execute_sql(f'SELECT * FROM "{table}"').fetchall())


def test_reply_tokens_are_not_stored_nor_logged(gateway: Any, people: People, caplog: Any) -> None:
    # The audit found reply tokens logged at INFO and stored as they are: whoever read a log or a backup
    # could post as the token's owner. A reply, and a refused one, leave no token in the log or the tables.
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    address = people.bob_address
    token = re.search(r"\+([0-9a-f]+)@", address).group(1)
    assert send(gateway.port, eml("plain_reply.eml", to=address), address)[0] == 250
    revoke_reply_tokens(people.bob)
    assert send(gateway.port, eml("plain_reply.eml", to=address), address)[0] == 550
    assert "reply+" in caplog.text and token[:4] in caplog.text
    assert token not in caplog.text
    for table in ("reply_token", "inbound_email", "outbox_email"):
        assert token not in _table_text(table)


def test_the_data_folder_and_its_files_are_private(tmp_path: Path) -> None:
    # The audit found the database and outbox .eml files (with sign-in links) readable by every local user.
    os.umask(0o022)
    data = tmp_path / "var"
    settings = Settings(data_dir=data, secret_key="k", reply_domain="reply.test")
    stored_secret_key(data)
    database = db.make_database(settings)
    database.connect()
    database.execute_sql("CREATE TABLE t (x)")
    database.close()
    stored = FileStore(settings.effective_files_dir).put_bytes(b"an attachment")
    eml_path = transport.write_eml(b"Subject: x\r\n\r\nbody\r\n", settings)
    assert _mode(data) == 0o700 and _mode(data / "secret_key") == 0o600 and _mode(data / "workrate.db") == 0o600
    files = settings.effective_files_dir
    assert _mode(files) == 0o700
    kept = [p for p in files.rglob("*") if p.is_file()]
    assert kept and all(_mode(p) == 0o600 for p in kept) and stored.key in {p.name for p in kept}
    assert all(_mode(p) == 0o700 for p in files.rglob("*") if p.is_dir())
    assert _mode(eml_path) == 0o600 and _mode(eml_path.parent) == 0o700


def _link_files(settings: Settings) -> list[Path]:
    return sorted((Path(settings.data_dir) / EML_FOLDER).glob("login-*.eml"))


def test_sign_in_link_files_go_once_used_or_expired(app: Any, world: World, settings: Settings) -> None:
    # Without a relay, a sign-in link's .eml file stayed in the outbox folder for ever: anyone who could read
    # it could sign in while it was live. It goes when the link is used, and the worker removes expired ones.
    client = app.test_client()
    assert post_form(client, "/login/link", {"email": "bob@acme.test"}).status_code == 200
    asyncio.run(OutboxWorker(settings).run_once())
    [path] = _link_files(settings)
    assert _mode(path) == 0o600
    secret = re.search(r"/login/([A-Za-z0-9_-]+)", path.read_text()).group(1)
    response = client.post(f"/login/{secret}", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302 and _link_files(settings) == []

    assert post_form(app.test_client(), "/login/link", {"email": "bob@acme.test"}).status_code == 200
    asyncio.run(OutboxWorker(settings).run_once())
    assert len(_link_files(settings)) == 1
    assert purge_spent_link_mail(settings.data_dir) == 0  # still live: kept
    LoginToken.update(expires_at=dt.datetime(2000, 1, 1)).execute()
    asyncio.run(OutboxWorker(settings).run_once())  # the worker's housekeeping
    assert _link_files(settings) == []


def test_refused_reply_addresses_already_logged_in_full_are_redacted_by_the_migration(database: object) -> None:
    # Before: the RCPT refusal log kept a revoked (dead, or only sleeping: an archived workspace comes back)
    # reply address in full. Migration 13 cuts each to a hint and keeps its token's hash.
    from storage.migrations import _redact_refused_addresses
    from storage.redaction import redact
    from storage.refusals import RcptRefusal
    from storage.tokens import hash_secret

    token = "0123456789abcdef" * 2
    address = f"reply+{token}@reply.test"
    RcptRefusal.create(network="192.0.2.0/24", rcpt_to=address, reason="revoked_address", smtp_code=550, count=3)
    twin = "0123" + "f" * 28  # the same hint: the two rows merge into one
    RcptRefusal.create(network="192.0.2.0/24", rcpt_to=f"reply+{twin}@reply.test", reason="revoked_address",
                       smtp_code=550, count=2)
    _redact_refused_addresses()
    rows = list(RcptRefusal.select())
    assert [(r.rcpt_to, r.count, r.token_hash) for r in rows] == [(redact(address), 5, hash_secret(token))]
    assert token not in redact(address)
