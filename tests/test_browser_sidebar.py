"""Real-browser test of the team's workspace sidebar against the real product (`workrate run`): it follows
posts in other workspaces through the live-update stream alone (no polling: a minute of the page's clock
brings no fetch), and an internal note shows in the team's sidebar preview while the client's page has no
sidebar and its stream no sidebar events. Screenshots go to artifacts/screenshots/."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import (
    SCREENSHOTS,
    Product,
    launch,
    new_context,
    open_magic_link,
    running_product,
    sign_in_team,
    skip_module_without_browser,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEAM = "kim@agency.test"
OTHER = "lee@agency.test"
CLIENT = "bob@acme.test"

skip_module_without_browser()

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("browser-sidebar")) as p:
        p.add_team(TEAM, "Kim Lee")
        p.add_team(OTHER, "Lee Park")
        p.add_workspace("Acme Corp", "acme")
        p.add_workspace("Globex Ltd", "globex")
        p.add_client(CLIENT, "Bob Stone", "acme")
        yield p


def test_the_sidebar_follows_other_workspaces_from_the_live_stream_alone(product: Product) -> None:
    run = secrets.token_hex(3)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            team_ctx = new_context(browser)
            team = team_ctx.new_page()
            fetches: list[str] = []
            team.on("request", lambda r: fetches.append(r.url) if "/workspaces/sidebar" in r.url else None)
            team.clock.install()
            sign_in_team(team, product, TEAM)
            team.goto(f"{product.url}/w/acme")
            expect(team.locator("#thread")).to_have_attribute("data-live-opens", "1")
            expect(team.locator("#sidebar")).to_contain_text("Globex Ltd")
            assert len(fetches) == 1

            # A minute of the page's timers, nothing posted: no fetch (the sidebar does not poll).
            team.clock.fast_forward("01:00")
            team.wait_for_timeout(500)
            assert len(fetches) == 1, fetches

            # A post in another workspace, by another process (the CLI): the sidebar shows it.
            product.cli("post", "globex", "--as", OTHER, f"Globex launch news {run}")
            expect(team.locator("#sidebar")).to_contain_text(f"Globex launch news {run}")
            # An internal note: the team's preview shows it (the rule lets the team see it).
            product.cli("post", "globex", "--as", OTHER, "--internal", f"Team-only pricing {run}")
            expect(team.locator("#sidebar")).to_contain_text(f"Team-only pricing {run}")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            team.screenshot(path=str(Path(SCREENSHOTS) / "sidebar-live-desktop.png"))

            # The client's page: no sidebar, and the stream carries no sidebar events.
            client_ctx = new_context(browser)
            client = client_ctx.new_page()
            events: list[str] = []
            client.expose_function("noteSidebarEvent", lambda: events.append("sidebar"))
            open_magic_link(client, product.cli("login-link", CLIENT).strip())
            client.goto(f"{product.url}/portal/w/acme")
            expect(client.locator("#thread")).to_have_attribute("data-live-opens", "1")
            expect(client.locator("#sidebar")).to_have_count(0)
            client.evaluate("document.getElementById('thread').addEventListener('workrate:sidebar', "
                            "function () { window.noteSidebarEvent(); })")
            product.cli("post", "acme", "--as", OTHER, f"For Acme {run}")
            expect(client.locator("#messages")).to_contain_text(f"For Acme {run}")
            expect(team.locator("#sidebar")).to_contain_text(f"For Acme {run}")
            assert events == []
            team_ctx.close()
            client_ctx.close()
        finally:
            browser.close()
