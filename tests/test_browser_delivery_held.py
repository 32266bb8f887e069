"""The team's delivery line in a real browser against the real product (`workrate run` with NOTIFY_DELAY unset,
so each person's timing decides): emails the product's own worker holds say what holds them ("in digest",
"waiting: unread", "scheduled" for a client's quiet hours, "scheduled HH:MM" for a teammate's), at desktop and
phone sizes with nothing sticking out sideways (screenshots to WORKRATE_SHOTS, default
artifacts/screenshots/delivery)."""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    TEAM_PASSWORD,
    Product,
    browser_unavailable_reason,
    horizontal_overflow,
    launch,
    new_context,
    running_product,
    sign_in_team,
)
from procs import wait_until

from config import load_settings
from storage import db
from storage import notify_schedule as ns
from storage.mail_log import PENDING, OutboxEmail
from storage.models import User, Workspace, utcnow
from storage.notify_settings import set_modes, set_timing

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_reason = browser_unavailable_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

SHOTS = Path(os.environ.get("WORKRATE_SHOTS", str(SCREENSHOTS / "delivery")))
TEAM, LEE = "kim@agency.test", "lee@agency.test"
BOB, ELI = "bob@acme.test", "eli@acme.test"


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("browser-delivery"), WORKRATE_NOTIFY_DELAY="") as p:
        p.cli("user", "add", TEAM, "--name", "Kim Lee", "--team", "--password", TEAM_PASSWORD)
        p.cli("user", "add", LEE, "--name", "Lee Park", "--team")
        p.cli("workspace", "create", "Acme Corp", "--slug", "acme")
        p.cli("user", "add", BOB, "--name", "Bob Stone", "--client", "acme", "--messages-access")
        p.cli("user", "add", ELI, "--name", "Eli Ward", "--client", "acme", "--messages-access")
        yield p


def _all_held() -> bool:
    """Every email still to go is held by its person's timing (the worker has decided on each)."""
    with db.connection():
        pending = OutboxEmail.select().where(OutboxEmail.status == PENDING)
        return pending.exists() and not pending.where(OutboxEmail.held_for == "").exists()


def test_held_emails_show_what_holds_them(product: Product) -> None:
    db.bind(load_settings(product.env))
    # Quiet hours around now (UTC: neither has a time zone); Eli takes a daily digest.
    now = utcnow()
    quiet = ((now.hour * 60 - 60) % (24 * 60), (now.hour * 60 + 120) % (24 * 60))
    with db.connection():
        acme = Workspace.get(Workspace.slug == "acme")
        bob, eli, lee = (User.get(User.email == e) for e in (BOB, ELI, LEE))
        set_modes(eli, {acme.id: ns.DIGEST})
        # Kim's zone is stored, so that the page's script, which stores the browser's zone when none is,
        # times nothing again (a new timing would find Bob's message read by Kim's page load, and drop it).
        User.update(time_zone="UTC").where(User.email == TEAM).execute()
        for person in (bob, lee):
            set_modes(person, {acme.id: ns.NOW})
            set_timing(person, ns.Defaults(), unread_minutes=5, digest_minute=8 * 60, quiet=quiet)
    product.cli("post", "acme", "The first mockups are attached; could you look at them this week?", "--as", TEAM)
    product.cli("post", "acme", "Thanks! We will look at them on Friday.", "--as", BOB)
    until = dt.datetime.combine(now.date(), dt.time(quiet[1] // 60, quiet[1] % 60))
    # The product's worker holds the four emails within a round or two; Kim's page load must come after, as
    # it reads Bob's message (an email about a message read is dropped, which is not what is shown here).
    wait_until(_all_held, 60, "the worker to hold every email")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = new_context(browser, timezone_id="UTC").new_page()
            sign_in_team(page, product, TEAM)
            lines = page.locator("#messages .message .delivery")
            for _ in range(30):  # the product's worker holds them within a round or two
                page.goto(f"{product.url}/w/acme")
                if "in digest" in lines.first.inner_text() and "scheduled" in lines.last.inner_text():
                    break
                page.wait_for_timeout(500)
            to_clients, to_team = lines.first, lines.last
            expect(to_clients).to_contain_text("1 in digest")
            expect(to_clients.locator(".held", has_text="scheduled")).to_have_text("1 scheduled")  # Bob's: no time
            expect(to_team).to_contain_text("1 waiting: unread")  # Kim's own, the default
            expect(to_team.locator(".held time")).to_contain_text(until.strftime("%H:%M"))  # Lee's quiet hours
            assert "queued" not in to_clients.inner_text() + to_team.inner_text()
            SHOTS.mkdir(parents=True, exist_ok=True)
            for size, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
                page.set_viewport_size(size)
                page.locator("#messages .message").last.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / f"delivery-held-{label}.png"))
                assert horizontal_overflow(page) == [], label
        finally:
            browser.close()
