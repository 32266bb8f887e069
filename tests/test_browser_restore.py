"""In chromium: an emailed message that arrives by a live update offers "Restore into the message" to the
team, and one click puts its trimmed part back in place (the copy carries no CSRF token of its own; the
page's script adds the reader's), for the team at desktop size and on a phone."""
from __future__ import annotations

from typing import Any

import pytest
from browser_support import browser_unavailable_reason, launch, new_context
from test_events import cookie_for, server, server_settings  # noqa: F401
from web_support import World

from storage.models import Message, MessageVersion
from storage.posting import post_message

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.skipif(bool(browser_unavailable_reason()),
                                                      reason=browser_unavailable_reason() or "-")]


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_restore_a_live_message_in_one_click(server: Any, world: World, phone: bool) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{server.port}"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = new_context(browser, phone=phone)
            context.add_cookies([{"name": "workrate_session", "url": base,
                                  "value": cookie_for(server.app, world.team).split("=", 1)[1]}])
            page = context.new_page()
            page.goto(base + "/w/acme")
            page.locator("#thread[data-events-url]").wait_for(state="attached")
            message = post_message(world.thread, world.client, "Live one.", source="email",
                                   trimmed_text="Bob Stone\nLIVE-SIGNATURE line")
            page.locator(f"#m-{message.id} details.trimmed summary").click(timeout=20_000)
            page.locator(f"#m-{message.id} .restore-button").click()
            page.locator(f"#m-{message.id} .message-body", has_text="LIVE-SIGNATURE").wait_for(timeout=20_000)
            page.locator(f"#m-{message.id} .edited, #m-{message.id} summary", has_text="edited").first.wait_for()
        finally:
            browser.close()
    assert Message.get_by_id(message.id).text == "Live one.\n\nBob Stone\nLIVE-SIGNATURE line"
    assert MessageVersion.select().where(MessageVersion.message == message.id).count() == 1
