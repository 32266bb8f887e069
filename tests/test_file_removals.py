"""A deleted message's attachment bytes leave the file store, with real files: after the delete commits,
durably (a removal row written by the delete's own transaction, swept by the worker at start and every
minute), idempotently, and never while anything else names the same bytes."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from web_support import World, attach, csrf_token, sign_in

from config import Settings
from gateway.outbound.worker import OutboxWorker
from storage.agency import set_branding
from storage.db import write_transaction
from storage.file_removals import FRESH_SECONDS, FileRemoval, sweep_file_removals
from storage.files import FileStore
from storage.held import CONFIRM, confirm, hold
from storage.posting import delete_message, post_message


def _later() -> float:
    """A moment past the window in which a file stored again is left alone."""
    return time.time() + FRESH_SECONDS + 60


def _path(settings: Settings, key: str) -> Path:
    return FileStore(settings.effective_files_dir).path(key)


def _age(path: Path) -> None:
    """Makes a stored file look written long ago (as a file of an old message is)."""
    old = time.time() - 2 * FRESH_SECONDS
    os.utime(path, (old, old))


def test_delete_queues_the_file_and_a_sweep_removes_it_once(world: World, settings: Settings) -> None:
    # The delete commits a removal row and leaves the file (as a crash right after the commit would); the
    # next sweep, as at the worker's start, removes it and the row; another sweep finds nothing to do.
    message = post_message(world.thread, world.team, "Wrong file",
                           attachments=[attach(settings, "wrong.pdf", b"%PDF wrong numbers")])
    path = _path(settings, message.attachments[0].storage_key)
    _age(path)
    delete_message(message, world.team)
    assert path.exists() and FileRemoval.select().count() == 1
    assert sweep_file_removals(settings.effective_files_dir) == 1
    assert not path.exists() and FileRemoval.select().count() == 0
    assert sweep_file_removals(settings.effective_files_dir) == 0


def test_bytes_named_elsewhere_are_kept(world: World, settings: Settings) -> None:
    # Content-addressed: the same bytes in another message, or as the agency's logo, are kept; the removal
    # row goes anyway (nothing left to do for it), and the last message's delete removes them.
    first = post_message(world.thread, world.team, "One", attachments=[attach(settings, "a.txt", b"same bytes")])
    second = post_message(world.thread, world.team, "Two", attachments=[attach(settings, "b.txt", b"same bytes")])
    key = first.attachments[0].storage_key
    _age(_path(settings, key))
    delete_message(first, world.team)
    assert sweep_file_removals(settings.effective_files_dir, now=_later()) == 0
    assert _path(settings, key).exists() and FileRemoval.select().count() == 0
    logo = FileStore(settings.effective_files_dir).put_bytes(b"same bytes").key
    set_branding(logo_key=logo, logo_type="image/png")
    delete_message(second, world.team)
    assert sweep_file_removals(settings.effective_files_dir, now=_later()) == 0 and _path(settings, key).exists()
    set_branding(remove_logo=True)
    delete_message(world.public, world.team)  # any later delete; the logo's bytes are no message's now
    FileRemoval.create(key=key)
    assert sweep_file_removals(settings.effective_files_dir, now=_later()) >= 1 and not _path(settings, key).exists()


def test_bytes_stored_again_lately_wait_for_the_next_sweep(world: World, settings: Settings) -> None:
    # A post that found its bytes already stored may not have committed its row yet: storing touches the
    # file, the sweep leaves it and keeps its row, and a later sweep removes it.
    message = post_message(world.thread, world.team, "Draft", attachments=[attach(settings, "d.txt", b"draft")])
    key = message.attachments[0].storage_key
    _age(_path(settings, key))
    delete_message(message, world.team)
    FileStore(settings.effective_files_dir).put_bytes(b"draft")  # someone else's upload, not yet committed
    assert sweep_file_removals(settings.effective_files_dir) == 0
    assert _path(settings, key).exists() and FileRemoval.select().count() == 1
    assert sweep_file_removals(settings.effective_files_dir, now=_later()) == 1 and not _path(settings, key).exists()


def test_web_delete_then_the_worker_removes_the_file(app: Any, world: World, settings: Settings) -> None:
    # End to end: the team deletes through the page; the file stops downloading at once and the worker's
    # housekeeping (which runs at its start) removes its bytes.
    path = _path(settings, world.internal.attachments[0].storage_key)
    _age(path)
    client = sign_in(app.test_client(), world.team)
    response = client.post(f"/messages/{world.internal.id}/delete", data={"csrf_token": csrf_token(client)})
    assert response.status_code in (200, 302, 303)
    assert client.get(f"/attachments/{world.internal_file}/budget.txt").status_code == 404
    assert path.exists()
    asyncio.run(OutboxWorker(settings).run_once())
    assert not path.exists() and FileRemoval.select().count() == 0


def test_bytes_a_held_reply_carries_are_kept(world: World, settings: Settings) -> None:
    # A reply held for confirmation carries the same bytes as a message that is then deleted: the sweep
    # keeps them, and confirming posts an attachment whose file is there.
    message = post_message(world.thread, world.team, "Contract v1",
                           attachments=[attach(settings, "contract.pdf", b"%PDF the same contract")])
    [stored] = message.attachments
    key = stored.storage_key
    with write_transaction():
        _row, secret = hold(CONFIRM, thread_id=world.thread.id, author_id=world.client.id, internal=False,
                            text="Signed.", trimmed_text="", attachments=[attach(settings, "contract.pdf",
                                                                                 b"%PDF the same contract")],
                            from_address=world.client.email, subject="Re: contract", message_id_hash="h",
                            inbound_email_id=None, hours=48)
    _age(_path(settings, key))
    delete_message(message, world.team)
    assert sweep_file_removals(settings.effective_files_dir, now=_later()) == 0 and _path(settings, key).exists()
    posted = confirm(secret)
    assert [a.storage_key for a in posted.attachments] == [key] and _path(settings, key).exists()
    # Posted, the held reply no longer keeps them: deleting the post lets the sweep remove the file.
    delete_message(posted, world.team)
    assert sweep_file_removals(settings.effective_files_dir, now=_later()) == 1 and not _path(settings, key).exists()
