"""A message read live is not emailed, in a real browser against the real product (`workrate run` with
NOTIFY_DELAY unset, so each person's timing decides): the client's open page shows a new message as it
arrives, its script moves the read marker, and the worker leaves that message out at send time; a message
posted while the page was closed is emailed. The worker's clock is injected (a worker in this test, on the
product's database), never slept; the product's own worker would hold both for five minutes."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import (
    TEAM_PASSWORD,
    Product,
    browser_unavailable_reason,
    launch,
    new_context,
    open_magic_link,
    running_product,
    wait_live,
)
from procs import wait_until

from config import load_settings
from gateway.outbound.worker import OutboxWorker
from storage import db
from storage.mail_log import SKIPPED, OutboxEmail
from storage.models import Message, ReadMarker, User, utcnow

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEAM = "kim@agency.test"
CLIENT = "bob@acme.test"

_reason = browser_unavailable_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("browser-notify"), WORKRATE_NOTIFY_DELAY="") as p:
        p.cli("user", "add", TEAM, "--name", "Kim Lee", "--team", "--password", TEAM_PASSWORD)
        p.cli("workspace", "create", "Acme Corp", "--slug", "acme")
        p.cli("user", "add", CLIENT, "--name", "Bob Stone", "--client", "acme", "--messages-access")
        yield p


def _marker(message_id: int) -> bool:
    with db.connection():
        bob = User.get(User.email == CLIENT)
        marker = ReadMarker.select(ReadMarker.last_read_message_id).where(ReadMarker.user == bob.id).scalar()
        return (marker or 0) >= message_id


def _message_id(text: str) -> int:
    with db.connection():
        return int(Message.select(Message.id).where(Message.text == text).scalar())


def test_a_message_seen_live_is_not_emailed_one_posted_while_away_is(product: Product) -> None:
    settings = load_settings(product.env)
    db.bind(settings)
    seen, unseen = "Seen live on the open page.", "Posted after Bob closed the page."
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            ctx = new_context(browser)
            page = ctx.new_page()
            open_magic_link(page, product.login_link(CLIENT))
            page.goto(f"{product.url}/portal/w/acme")
            wait_live(page)
            product.cli("post", "acme", seen, "--as", TEAM)
            expect(page.locator("#messages .message", has_text=seen)).to_be_visible()
            seen_id = _message_id(seen)
            wait_until(lambda: _marker(seen_id), 20, "the page's script to mark the live message read")
            page.goto(f"{product.url}/settings/notifications")  # the thread is no longer shown
            ctx.close()
        finally:
            browser.close()
    product.cli("post", "acme", unseen, "--as", TEAM)
    worker = OutboxWorker(settings)
    try:
        asyncio.run(worker.run_once(utcnow() + dt.timedelta(minutes=10)))
    finally:
        worker.close()
    mails: Any = wait_until(lambda: product.relay.to(CLIENT) or None, 20, "the email about the unread message")
    assert len(mails) == 1
    assert unseen in mails[0].text() and seen not in mails[0].text()
    with db.connection():
        row = OutboxEmail.get(OutboxEmail.message == seen_id)
        assert (row.status, row.last_error) == (SKIPPED, "read before the email went out")
