"""The gateway's group commit (gateway/smtp/committer.py) on a real database: mails under way share one
transaction, a quiet gateway commits at once, a mail that never comes does not hold the others, and each
mail's raw bytes are written with its row."""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest
from gateway_support import People, eml, inbound_rows, posts

from gateway import errors
from gateway.inbound.authenticate import resolve_recipient
from gateway.inbound.files import WriteAtCommit
from gateway.inbound.mail import InboundMail
from gateway.inbound.pipeline import run_steps
from gateway.smtp import committer as committer_module
from gateway.smtp.committer import GroupCommitter
from storage.db import database, is_sqlite, write_transaction
from storage.files import FileStore
from storage.mail_log import ACCEPTED, RawMail
from storage.models import User


def ready_mails(people: People, count: int, *, sender: User | None = None, raw: bytes | None = None
                ) -> list[InboundMail]:
    """count replies (from Bob unless told), their steps run (as the SMTP handler runs them), ready to be stored."""
    sender = sender or people.bob
    address = people.address(sender)
    mails = []
    for _ in range(count):
        mail = InboundMail(raw=raw or eml("plain_reply.eml", to=address, sender=sender.email),
                           settings=people.settings, mail_from=sender.email,
                           recipients=[resolve_recipient(address, people.settings)])
        if is_sqlite():
            mail.files = WriteAtCommit(mail.files.store)
        run_steps(mail)
        mails.append(mail)
    return mails


async def run_committer(people: People, body: Any, *, receiving: Any = lambda: 0,
                        pool: concurrent.futures.Executor | None = None) -> list[int]:
    """Runs body(committer) against a started group commit (its worker threads: pool, or asyncio's default);
    returns the size of each batch it committed."""
    loop = asyncio.get_running_loop()

    def in_thread(fn: Any, *args: Any) -> Any:
        return loop.run_in_executor(pool, fn, *args)

    committer = GroupCommitter(FileStore(people.settings.effective_files_dir), in_thread, on_loop=is_sqlite(),
                               receiving=receiving)
    sizes: list[int] = []
    commit = committer._commit

    async def counting(batch: list[Any]) -> None:
        sizes.append(len(batch))
        await commit(batch)

    committer._commit = counting  # type: ignore[method-assign]
    committer.start()
    try:
        await body(committer)
    finally:
        await committer.close()
    database.close()  # the loop thread's connection (the committer's statements ran here on SQLite)
    return sizes


async def store_later(committer: GroupCommitter, mail: InboundMail, turns: int) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)  # other mails' work runs on the loop meanwhile
    await committer.store(mail)


def test_mails_under_way_share_one_transaction(people: People, monkeypatch) -> None:
    # Four mails under way (expect()ed), reaching the group commit one loop turn apart: one commit holds them
    # all. (The delay is made long so that a slow machine cannot split them; the wait ends when the last
    # one arrives, not when the delay runs out.)
    monkeypatch.setattr(committer_module, "COMMIT_DELAY", 30.0)
    mails = ready_mails(people, 4)

    async def body(committer: GroupCommitter) -> None:
        for mail in mails:
            committer.expect(mail)
        await asyncio.gather(*(store_later(committer, mail, turns=3 * i) for i, mail in enumerate(mails)))

    assert asyncio.run(run_committer(people, body)) == [4]
    assert len(posts(people.thread)) == 4
    assert [r.outcome for r in inbound_rows()] == [ACCEPTED] * 4
    assert [bytes(RawMail.get_by_id(m.raw_key).data) for m in mails] == [bytes(m.raw) for m in mails]


def test_a_quiet_gateway_commits_each_mail_at_once(people: People, monkeypatch) -> None:
    # Nothing else under way: no waiting, every mail is its own commit.
    monkeypatch.setattr(committer_module, "COMMIT_DELAY", 30.0)
    mails = ready_mails(people, 3)

    async def body(committer: GroupCommitter) -> None:
        for mail in mails:
            committer.expect(mail)
            await committer.store(mail)

    assert asyncio.run(run_committer(people, body)) == [1, 1, 1]
    assert len(posts(people.thread)) == 3


def test_a_mail_still_arriving_is_waited_for(people: People, monkeypatch) -> None:
    # A mail still arriving over SMTP (answered 354, not all read): the batch waits for it too.
    monkeypatch.setattr(committer_module, "COMMIT_DELAY", 30.0)
    first, second = ready_mails(people, 2)
    arriving = [1]

    async def body(committer: GroupCommitter) -> None:
        async def second_arrives() -> None:
            for _ in range(5):
                await asyncio.sleep(0)
            arriving[0] = 0
            committer.expect(second)
            await committer.store(second)

        await asyncio.gather(committer.store(first), second_arrives())

    assert asyncio.run(run_committer(people, body, receiving=lambda: arriving[0])) == [2]


def test_a_mail_that_never_comes_does_not_hold_the_others(people: People, monkeypatch) -> None:
    # An expected mail that never reaches the group commit (stuck, or its client went away): the others are
    # committed when the delay runs out.
    monkeypatch.setattr(committer_module, "COMMIT_DELAY", 0.05)
    stuck, mail = ready_mails(people, 2)

    async def body(committer: GroupCommitter) -> None:
        committer.expect(stuck)
        committer.expect(mail)
        await committer.store(mail)

    assert asyncio.run(run_committer(people, body)) == [1]
    assert len(posts(people.thread)) == 1


def test_a_mail_that_fails_is_left_out_and_the_others_are_committed(people: People, make, monkeypatch) -> None:
    # In one batch: a reply, the same reply again (a duplicate), a reply from a client deactivated since its
    # steps ran (no longer postable), and one more reply. The batch goes again without each failed mail: the
    # two good replies are posted once each, the others get their own outcome.
    monkeypatch.setattr(committer_module, "COMMIT_DELAY", 30.0)
    carl = make.client(people.workspace, "carl@acme.test", "Carl Hale")
    [first] = ready_mails(people, 1)
    [again] = ready_mails(people, 1, raw=bytes(first.raw))
    [from_carl] = ready_mails(people, 1, sender=carl)
    [last] = ready_mails(people, 1)
    User.update(active=False).where(User.id == carl.id).execute()
    mails = [first, again, from_carl, last]
    outcomes: list[object] = []

    async def body(committer: GroupCommitter) -> None:
        async def store(mail: InboundMail, turns: int) -> object:
            try:
                await store_later(committer, mail, turns)
                return "stored"
            except Exception as e:
                return type(e)

        for mail in mails:
            committer.expect(mail)
        outcomes.extend(await asyncio.gather(*(store(m, turns=2 * i) for i, m in enumerate(mails))))

    assert asyncio.run(run_committer(people, body)) == [4]
    assert outcomes == ["stored", errors.Duplicate, errors.NotPostable, "stored"]
    assert [m.text for m in posts(people.thread)] == ["Looks great, approved!"] * 2
    assert [r.outcome for r in inbound_rows()] == [ACCEPTED] * 2


def test_a_writer_waiting_in_the_shared_pool_never_stops_the_commit(people: People, monkeypatch) -> None:
    # While a batch holds the process's SQLite writer lock, every thread of the gateway's shared pool may be
    # waiting for that lock (a refused mail's record, a bounce). The batch's COMMIT must not queue behind
    # them: it runs in the committer's own thread, and then they go on.
    if not is_sqlite():
        pytest.skip("the writer lock and the group commit on the event loop are SQLite's")
    [mail] = ready_mails(people, 1)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    waiting: list[concurrent.futures.Future[None]] = []

    def other_writer() -> None:
        with write_transaction():
            pass

    apply_all = GroupCommitter._apply_all

    def apply_and_fill_the_pool(batch: list[Any]) -> None:
        waiting.append(pool.submit(other_writer))  # the pool's only thread now waits for the lock
        apply_all(batch)

    monkeypatch.setattr(GroupCommitter, "_apply_all", staticmethod(apply_and_fill_the_pool))

    async def body(committer: GroupCommitter) -> None:
        committer.expect(mail)
        await asyncio.wait_for(committer.store(mail), 20)  # without its own thread: never returns

    try:
        assert asyncio.run(run_committer(people, body, pool=pool)) == [1]
        waiting[0].result(timeout=20)
    finally:
        pool.shutdown(wait=False)
    assert len(posts(people.thread)) == 1
