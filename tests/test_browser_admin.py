"""A new agency in a real browser (Debian's chromium, Playwright) against the real product (`workrate run` on
an empty database, a loopback relay capturing the mail):

- `workrate run` prints a setup URL; the setup page creates the agency and its first admin;
- the admin invites a teammate, who sets a password from the emailed link and signs in;
- the admin creates a workspace, adds a client contact with Messages access;
- the client gets the invitation email, clicks once, lands in the thread, posts, and turns notifications
  off and on again;
- the admin revokes the client's access: the old link, the client's open session and their reply address
  are all refused.

Screenshots at 1280x800 and 390x844 go to WORKRATE_SHOTS (default artifacts/screenshots/admin).
"""
from __future__ import annotations

import os
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    SCREENSHOTS,
    Product,
    new_context,
    running_product,
    shoot,
    skip_module_without_browser,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

skip_module_without_browser()

from playwright.sync_api import expect  # noqa: E402
from procs import wait_until  # noqa: E402

SHOTS = Path(os.environ.get("WORKRATE_SHOTS", str(SCREENSHOTS / "admin")))
ADMIN, ADMIN_PASSWORD = "kim@brightside.test", "kim's long password"
TEAMMATE, TEAMMATE_PASSWORD = "ann@brightside.test", "ann's long password"
CLIENT = "bob@acme.test"


def emailed(product: Product, to: str, pattern: str, count: int = 1) -> tuple[str, Any]:
    """The newest link matching pattern in the count-th email to `to`, and that email."""
    regex = re.compile(re.escape(product.url) + pattern)

    def found() -> Any:
        mails = [r for r in product.relay.to(to) if regex.search(r.text())]
        return mails[count - 1] if len(mails) >= count else None

    mail = wait_until(found, 30, f"email {count} to {to} with {pattern}")
    return regex.search(mail.text()).group(0), mail


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("browser-admin")) as p:
        yield p


def test_a_new_agency_from_setup_to_revoked_client(product: Product, browser: Any) -> None:
    product.proc.wait_log(r"/setup/\S+", timeout=30)
    setup_url = re.search(re.escape(product.url) + r"/setup/\S+", product.proc.log()).group(0)

    # Nothing works before setup.
    admin = new_context(browser).new_page()
    admin.goto(f"{product.url}/login")
    expect(admin.locator("#not-set-up")).to_be_visible()

    # First run: the setup page, with a mistake first (kept values, error beside the field).
    admin.goto(setup_url)
    admin.fill("#f-agency", "Brightside Studio")
    admin.fill("#f-name", "Kim Lee")
    admin.fill("#f-email", ADMIN)
    admin.fill("#f-password", "short")
    admin.fill("#f-password_again", "short")
    admin.click("#setup-submit")
    expect(admin.locator("#f-password-error")).to_contain_text("at least 8 characters")
    expect(admin.locator("#f-agency")).to_have_value("Brightside Studio")
    shoot(admin, SHOTS, "01-setup-error")
    admin.fill("#f-password", ADMIN_PASSWORD)
    admin.fill("#f-password_again", ADMIN_PASSWORD)
    admin.click("#setup-submit")
    expect(admin.locator("#workspace-form")).to_be_visible()
    shoot(admin, SHOTS, "02-new-workspace")
    # The setup URL works once.
    other = new_context(browser).new_page()
    other.goto(setup_url)
    expect(other.locator("#login-form")).to_be_visible()
    other.context.close()

    # Invite a teammate, who sets a password from the email and signs in.
    admin.goto(f"{product.url}/people")
    admin.fill("#invite-name", "Ann Berg")
    admin.fill("#invite-email", TEAMMATE)
    admin.click("#team-invite-submit")
    expect(admin.locator('.team-row[data-status="pending"]')).to_contain_text("Ann Berg")
    shoot(admin, SHOTS, "03-team")
    welcome, _ = emailed(product, TEAMMATE, r"/welcome/[A-Za-z0-9_\-]+")
    ann = new_context(browser, phone=True).new_page()
    ann.goto(welcome)
    ann.fill("#f-password", TEAMMATE_PASSWORD)
    ann.fill("#f-password_again", TEAMMATE_PASSWORD)
    ann.click("#welcome-submit")
    expect(ann.locator("#signed-in-as")).to_have_text("Ann Berg")
    ann.click("#sign-out")
    ann.fill("#login-email", TEAMMATE)
    ann.fill("#login-password", TEAMMATE_PASSWORD)
    ann.click("#login-submit")
    expect(ann.locator("#signed-in-as")).to_have_attribute("data-role", "team")
    expect(ann.locator("#nav-people")).to_have_count(0)  # a member manages nothing
    ann.context.close()

    # Create a workspace, add a client contact with Messages access.
    admin.goto(f"{product.url}/workspaces/new")
    admin.fill("#f-name", "Acme Corp")
    admin.click("#workspace-submit")
    expect(admin.locator("#invite-form")).to_be_visible()
    admin.fill("#invite-name", "Bob Stone")
    admin.fill("#invite-email", "bob@acme")  # the browser lets it through; the server does not
    admin.click("#invite-submit")
    expect(admin.locator("#invite-email-error")).to_contain_text("valid email address")
    expect(admin.locator("#invite-name")).to_have_value("Bob Stone")
    admin.fill("#invite-email", CLIENT)
    admin.click("#invite-submit")
    expect(admin.locator('.client-row[data-status="invited"]')).to_contain_text("Bob Stone")
    shoot(admin, SHOTS, "04-workspace-people")

    # The client clicks the invitation once, lands in the thread and posts.
    link, _ = emailed(product, CLIENT, r"/login/[A-Za-z0-9_\-]+")
    bob = new_context(browser, phone=True).new_page()
    bob.goto(link)
    shoot(bob, SHOTS, "05-client-confirm")
    bob.click("#link-confirm")
    expect(bob.locator("#composer")).to_be_visible()
    assert bob.url.endswith("/portal/w/acme-corp")
    bob.fill("#composer-text", "Hello from Bob, all good here.")
    bob.click("#send")
    expect(bob.locator("#messages")).to_contain_text("Hello from Bob")
    shoot(bob, SHOTS, "06-client-thread")

    # The client turns notifications off, then on again.
    bob.goto(f"{product.url}/settings/notifications")
    bob.uncheck("#email-on-acme-corp")
    bob.click("#notifications-save")
    expect(bob.locator("#email-on-acme-corp")).not_to_be_checked()
    admin.goto(f"{product.url}/w/acme-corp/members")
    expect(admin.locator(".no-email")).to_contain_text("gets no emails: unsubscribed on")
    bob.check("#email-on-acme-corp")
    bob.click("#notifications-save")
    expect(bob.locator("#email-on-acme-corp")).to_be_checked()
    shoot(bob, SHOTS, "07-client-notifications")
    admin.reload()
    expect(admin.locator(".no-email")).to_have_count(0)

    # The team posts: the client's notification carries a reply address and a signed-in link to the message.
    admin.goto(f"{product.url}/w/acme-corp")
    admin.fill("#composer-text", "Thanks Bob, the draft comes Friday.")
    admin.click("#send")
    notification_link, mail = emailed(product, CLIENT, r"/login/[A-Za-z0-9_\-]+\?next=\S+", count=1)
    reply_address = mail.mail["Reply-To"].addresses[0].addr_spec
    bob.goto(notification_link)  # a remembered device: straight to the message
    expect(bob.locator("#messages")).to_contain_text("the draft comes Friday")
    assert "#m-" in bob.url
    bob.goto(f"{product.url}/account")
    shoot(bob, SHOTS, "08-client-account")

    # Revoke: the open session, the links and the reply address are refused at once.
    admin.goto(f"{product.url}/w/acme-corp/members")
    admin.click(".client-row .access-button")
    expect(admin.locator('.client-row[data-status="no access"]')).to_be_visible()
    bob.goto(f"{product.url}/portal/w/acme-corp")
    expect(bob.locator("#login-form")).to_be_visible()
    for old in (link, notification_link):
        response = bob.goto(old)
        assert response is not None and response.status == 410
    smtp_port = int(product.env["WORKRATE_SMTP_PORT"])
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail(CLIENT, [reply_address], b"Subject: hi\r\n\r\nstill here?\r\n")
    code, text = refused.value.recipients[reply_address]
    assert code == 550, text
    shoot(admin, SHOTS, "09-revoked")

    # The workspace's mail log lists the notifications sent; branding reaches the sign-in page.
    admin.goto(f"{product.url}/w/acme-corp/mail?tab=sent")
    expect(admin.locator("#sent-log")).to_contain_text(CLIENT)
    shoot(admin, SHOTS, "10-mail-log")
    admin.goto(f"{product.url}/settings/branding")
    admin.fill("#f-name", "Brightside Studio")
    admin.locator("#f-accent").fill("#0e7c66")
    admin.click("#branding-submit")
    expect(admin.locator("#brand")).to_have_text("Brightside Studio")
    shoot(admin, SHOTS, "11-branding")
    bob.goto(f"{product.url}/login")
    expect(bob.locator("#brand")).to_have_text("Brightside Studio")
    shoot(bob, SHOTS, "12-branded-sign-in")
