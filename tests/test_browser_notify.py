"""A message read live is not emailed, in a real browser against the real product (`workrate run` with
NOTIFY_DELAY unset, so each person's timing decides): the client's open page shows a new message as it
arrives, its script moves the read marker, and the worker leaves that message out at send time; a message
posted while the page was closed is emailed. The worker's clock is injected (a worker in this test, on the
product's database), never slept; the product's own worker would hold both for five minutes. And the
notification settings page in the browser, desktop and phone, checked with axe-core."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import (
    SCREENSHOTS,
    Product,
    axe_unavailable_reason,
    horizontal_overflow,
    launch,
    new_context,
    open_magic_link,
    running_product,
    serious_violations,
    sign_in_team,
    skip_module_without_browser,
    wait_live,
    with_axe,
)
from outbound_relay import new_part
from procs import wait_until

from config import load_settings
from gateway.outbound.worker import OutboxWorker
from storage import db
from storage.mail_log import SKIPPED, OutboxEmail
from storage.models import Message, ReadMarker, User, utcnow

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEAM = "kim@agency.test"
CLIENT = "bob@acme.test"

skip_module_without_browser()

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("browser-notify"), WORKRATE_NOTIFY_DELAY="") as p:
        p.add_team(TEAM, "Kim Lee")
        p.add_workspace("Acme Corp", "acme")
        p.add_client(CLIENT, "Bob Stone", "acme")
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
    assert unseen in new_part(mails[0].text()) and seen not in new_part(mails[0].text())
    with db.connection():
        row = OutboxEmail.get(OutboxEmail.message == seen_id)
        assert (row.status, row.last_error) == (SKIPPED, "read before the email went out")


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_settings_page_in_the_browser_saves_and_is_accessible(product: Product, phone: bool) -> None:
    # A team member picks a daily digest and quiet hours; the page keeps them, fits the screen, and axe-core
    # finds no serious or critical violation. Screenshots go to artifacts/screenshots/.
    if reason := axe_unavailable_reason():
        pytest.skip(reason)
    size = "phone" if phone else "desktop"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            ctx = with_axe(new_context(browser, phone=phone))
            page = ctx.new_page()
            sign_in_team(page, product, TEAM)
            page.goto(f"{product.url}/settings/notifications")
            page.select_option("#mode-acme", "digest")
            page.fill("#notify-digest_time", "07:30")
            page.fill("#notify-quiet_from", "21:00")
            page.fill("#notify-quiet_until", "07:00")
            page.click("#notifications-save")
            expect(page.locator("#mode-acme")).to_have_value("digest")
            expect(page.locator("#notify-digest_time")).to_have_value("07:30")
            expect(page.locator("#notify-quiet_until")).to_have_value("07:00")
            page.fill("#notify-unread_minutes", "0")
            page.click("#notifications-save")
            expect(page.locator("#notify-unread_minutes-error")).to_be_visible()
            assert horizontal_overflow(page) == []
            found = serious_violations(page)
            assert found == [], found
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"notification-settings-{size}.png"), full_page=True)
            ctx.close()
        finally:
            browser.close()
