"""Client is away, in a real browser against the real product (`workrate run`): a client contact's
out-of-office reply goes to the running gateway over SMTP; the team's thread page shows the note beside the
composer and the workspace list shows the mark, at desktop and phone sizes (screenshots to WORKRATE_SHOTS,
default artifacts/screenshots/away), with nothing sticking out sideways; the client's portal shows nothing;
the contact's next message takes the note off the team's open page as it arrives.
"""
from __future__ import annotations

import datetime as dt
import os
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from browser_support import (
    DESKTOP,
    SCREENSHOTS,
    Product,
    launch,
    new_context,
    open_magic_link,
    running_product,
    shoot,
    sign_in_team,
    skip_module_without_browser,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

skip_module_without_browser()

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from procs import wait_until  # noqa: E402

from storage.models import utcnow  # noqa: E402

SHOTS = Path(os.environ.get("WORKRATE_SHOTS", str(SCREENSHOTS / "away")))
TEAM, TEAM_PASSWORD = "kim@agency.test", "kim's long password"
CLIENT = "dana@northwind.test"


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("browser-away")) as p:
        yield p


def test_team_sees_the_away_note_and_mark_and_the_client_does_not(product: Product) -> None:
    product.add_team(TEAM, "Kim Lee", TEAM_PASSWORD)
    product.add_workspace("Northwind Traders", "northwind")
    product.add_workspace("Globex Ltd", "globex")
    product.add_client(CLIENT, "Dana Whitfield", "northwind")
    product.cli("post", "northwind", "The first mockups are attached; could you look at them this week?",
                "--as", TEAM)
    product.cli("post", "globex", "Kick-off is on Monday.", "--as", TEAM)
    address = product.cli("reply-address", "northwind", "--as", CLIENT).strip().splitlines()[-1]
    back = utcnow().date() + dt.timedelta(days=12)
    mail = EmailMessage()
    mail["From"], mail["To"] = f"Dana Whitfield <{CLIENT}>", address
    mail["Subject"], mail["Auto-Submitted"] = "Out of office: Northwind Traders", "auto-replied"
    mail.set_content(f"Thank you for your message. I am out of the office until {back.day} {back:%B %Y} "
                     "with no access to email.\n\nDana")
    with smtplib.SMTP("127.0.0.1", int(product.env["WORKRATE_SMTP_PORT"]), timeout=30) as smtp:
        smtp.send_message(mail, from_addr=CLIENT, to_addrs=[address])
    wait_until(lambda: "away" in product.cli("inbound"), 30, "the auto-reply in the inbound log")

    with sync_playwright() as playwright:
        browser = launch(playwright)
        team_ctx, client_ctx = new_context(browser), new_context(browser)
        try:
            team = team_ctx.new_page()
            sign_in_team(team, product, TEAM, TEAM_PASSWORD)
            team.goto(f"{product.url}/w/northwind")
            note = team.locator("#away-note")
            expect(note).to_contain_text(f"Dana Whitfield is away until {back:%a} {back.day} {back:%b}")
            # Beside the composer: right above it.
            assert team.evaluate("""() => document.getElementById('away-note').getBoundingClientRect().bottom
                                    <= document.getElementById('composer').getBoundingClientRect().top + 1""")
            shoot(team, SHOTS, "away-composer-note")
            team.set_viewport_size({"width": 1440, "height": 900})  # wide enough for the live sidebar
            expect(team.locator("#sidebar-list .away-mark")).to_have_count(1)
            team.screenshot(path=str(SHOTS / "away-sidebar-wide.png"))
            team.set_viewport_size(DESKTOP)
            team.goto(f"{product.url}/workspaces")
            mark = team.locator('#workspaces li[data-slug="northwind"] .away-mark')
            expect(mark).to_contain_text("Dana Whitfield away until")
            expect(team.locator('#workspaces li[data-slug="globex"] .away-mark')).to_have_count(0)
            shoot(team, SHOTS, "away-workspace-list")
            # The workspace's People page: beside the contact's name.
            team.goto(f"{product.url}/w/northwind/members")
            year = f" {back.year}" if back.year != utcnow().date().year else ""
            expect(team.locator("#clients .client-row .away")).to_have_text(
                f"away until {back:%a} {back.day} {back:%b}{year}")
            shoot(team, SHOTS, "away-people")

            client = client_ctx.new_page()
            open_magic_link(client, product.login_link(CLIENT))
            for path in ("/portal/", "/portal/w/northwind"):
                client.goto(f"{product.url}{path}")
                html = client.content()
                assert "away-note" not in html and "away-mark" not in html and "out of the office" not in html
                assert "is away" not in html and "away until" not in html

            # The contact writes: the team's open page drops the note as the message arrives live, and the
            # workspace list no longer marks them.
            team.goto(f"{product.url}/w/northwind")
            expect(team.locator("#thread")).to_have_attribute("data-live", "on")
            expect(team.locator("#away-note")).to_be_visible()
            product.cli("post", "northwind", "Back early, the mockups look great.", "--as", CLIENT)
            expect(team.locator("#messages .message", has_text="Back early")).to_be_visible()
            expect(team.locator("#away-note")).to_have_count(0)
            team.goto(f"{product.url}/workspaces")
            expect(team.locator(".away-mark")).to_have_count(0)
        finally:
            team_ctx.close()
            client_ctx.close()
            browser.close()
