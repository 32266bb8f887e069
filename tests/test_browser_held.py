"""Held replies in the mail log, in a real browser against the real product (`workrate run`): a client's
reply held by the loop breaker is posted with "Post it", and a reply@ reply held for confirmation shows in
its workspace's mail log and is discarded there; each decision is shown beside the mail. Desktop and phone
screenshots (to WORKRATE_SHOTS, default artifacts/screenshots/held), nothing sticking out sideways.
"""
from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    Product,
    browser_unavailable_reason,
    horizontal_overflow,
    launch,
    new_context,
    running_product,
    sign_in_team,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_reason = browser_unavailable_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from procs import wait_until  # noqa: E402

SHOTS = Path(os.environ.get("WORKRATE_SHOTS", str(SCREENSHOTS / "held")))
TEAM, TEAM_PASSWORD = "kim@agency.test", "kim's long password"
CLIENT = "dana@northwind.test"


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    # Sender checks off: no DNS here, and reply@ without a check is held for confirmation all the same.
    with running_product(tmp_path_factory.mktemp("browser-held"), WORKRATE_LOOP_POSTS="1",
                         WORKRATE_SENDER_CHECKS="off") as p:
        yield p


def shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
        assert horizontal_overflow(page) == [], f"{name} at {label} size"
    page.set_viewport_size(DESKTOP)


def _send(product: Product, mail: EmailMessage, envelope: str, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", int(product.env["WORKRATE_SMTP_PORT"]), timeout=30) as smtp:
        smtp.send_message(mail, from_addr=envelope, to_addrs=[to])


def test_admins_post_a_loop_held_reply_and_discard_one_waiting_for_confirmation(product: Product) -> None:
    product.cli("user", "add", TEAM, "--name", "Kim Lee", "--team", "--password", TEAM_PASSWORD)
    product.cli("workspace", "create", "Northwind Traders", "--slug", "northwind")
    product.cli("user", "add", CLIENT, "--name", "Dana Whitfield", "--client", "northwind", "--messages-access")
    product.cli("post", "northwind", "The first mockups are attached; could you look at them this week?",
                "--as", TEAM)
    notification = wait_until(lambda: next(iter(product.relay.to(CLIENT)), None), 30, "Dana's notification")
    address = product.cli("reply-address", "northwind", "--as", CLIENT).strip().splitlines()[-1]
    for n, text in enumerate(["Thanks, looking now.", "Here is the signed order form."]):
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = f"Dana Whitfield <{CLIENT}>", address, "Re: Northwind"
        mail.set_content(text)
        if n:
            mail.add_attachment(b"%PDF-1.4 order", maintype="application", subtype="pdf", filename="order.pdf")
        _send(product, mail, CLIENT, address)
    forged = EmailMessage()  # reply@ naming Dana's notification, from somebody else's server
    forged["From"], forged["To"], forged["Subject"] = f"Dana <{CLIENT}>", "reply@reply.browser.test", "Re: Northwind"
    forged["In-Reply-To"] = str(notification.mail["Message-ID"])
    forged.set_content("Please send the invoice to my new address.")
    _send(product, forged, "someone@elsewhere.test", "reply@reply.browser.test")
    wait_until(lambda: product.cli("inbound").count("held") >= 2, 30, "two held replies in the inbound log")

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = new_context(browser).new_page()
        sign_in_team(page, product, TEAM, TEAM_PASSWORD)
        page.goto(f"{product.url}/mail")
        loop = page.locator(".held-reply[data-kind=loop]")
        waiting = page.locator(".held-reply[data-kind=confirm]")
        expect(loop).to_contain_text("Held as a possible mail loop")
        expect(waiting).to_contain_text(f"Waiting for {CLIENT} to confirm")
        expect(waiting.locator(".held-post")).to_have_count(0)  # only its sender can confirm it
        shoot(page, "mail-log-held")

        loop.locator(".held-post").click()
        expect(page.locator(".flash")).to_contain_text("The held reply is posted in Northwind Traders")
        expect(page.locator(".held-decision").first).to_contain_text("Posted by Kim Lee")
        shoot(page, "mail-log-posted")
        page.goto(f"{product.url}/w/northwind")
        expect(page.locator("#messages")).to_contain_text("Here is the signed order form.")
        expect(page.locator("#messages")).to_contain_text("order.pdf")

        page.goto(f"{product.url}/w/northwind/mail")
        page.locator("#received-log .mail-row").first.locator("a").first.click()  # the held mail's own page
        expect(page.locator(".held-text")).to_contain_text("Please send the invoice to my new address.")
        shoot(page, "mail-detail-held")
        page.goto(f"{product.url}/w/northwind/mail")
        page.locator(".held-reply[data-kind=confirm] .held-discard").click()
        expect(page.locator(".flash")).to_contain_text("Its confirmation link no longer works.")
        expect(page).to_have_url(f"{product.url}/w/northwind/mail")
        expect(page.locator("#received-log")).to_contain_text("Discarded by Kim Lee")
        shoot(page, "workspace-mail-log-discarded")
        browser.close()
