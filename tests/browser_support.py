"""Helpers of the browser tests (tests/test_browser*.py): find chromium, Playwright and axe-core (or skip the
module, saying why), start the real product on free loopback ports with a capturing relay and add people to
it, sign people in through the real pages, and check a page at desktop and phone sizes.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from outbound_relay import CapturingRelay
from procs import ROOT, Proc, base_environment, cli, free_port, fresh_postgres_database, start, wait_until

LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these, chromium's own background connections are refused by the closed network.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TEAM_PASSWORD = "correct horse battery staple"
AXE_JS = Path(os.environ.get("WORKRATE_AXE_JS", ROOT / "node_modules" / "axe-core" / "axe.min.js"))


def chromium_path() -> str | None:
    """Debian's chromium: /usr/bin/chromium, else `chromium` on PATH, else None."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def browser_unavailable_reason() -> str:
    """'' when Playwright and a chromium binary are both here, else why the browser tests must skip."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "Debian's chromium is not installed (no /usr/bin/chromium and no chromium on PATH)"
    return ""


def axe_unavailable_reason() -> str:
    """'' when axe-core's script is here (`npm install axe-core`), else why a test that uses it must skip."""
    return "" if AXE_JS.is_file() else f"axe-core is not installed ({AXE_JS}; run `npm install axe-core`)"


def skip_module_without_browser(*, axe: bool = False) -> None:
    """Skips the calling test module at import, saying why, without Playwright and chromium (or axe-core)."""
    reason = browser_unavailable_reason() or (axe_unavailable_reason() if axe else "")
    if reason:
        pytest.skip(reason, allow_module_level=True)


# ---------------------------------------------------------------------------------------------------
# The product


@dataclass
class Product:
    """A running `workrate run` (SMTP gateway, web app, outgoing-mail worker) and how to reach it."""

    url: str
    env: dict[str, str]
    relay: CapturingRelay
    proc: Proc
    tmp: Path

    def cli(self, *args: str) -> str:
        return cli(self.env, *args)

    def login_link(self, email: str) -> str:
        return self.cli("login-link", email).strip()

    def add_team(self, email: str, name: str, password: str = TEAM_PASSWORD, admin: bool = False) -> None:
        """A team member (an admin when `admin`) who signs in with `password`."""
        self.cli("user", "add", email, "--name", name, "--team", *(["--admin"] if admin else []),
                 "--password", password)

    def add_workspace(self, name: str, slug: str) -> None:
        self.cli("workspace", "create", name, "--slug", slug)

    def add_client(self, email: str, name: str, slug: str) -> None:
        """A client contact of workspace `slug` with Messages access."""
        self.cli("user", "add", email, "--name", name, "--client", slug, "--messages-access")

    def emailed_login_link(self, email: str, timeout: float = 20) -> str:
        """The sign-in link of the newest login email the relay received for `email` (waits for it)."""
        pattern = re.compile(re.escape(self.url) + r"/login/[A-Za-z0-9_\-]+")

        def link() -> str | None:
            found = [m.group(0) for r in self.relay.to(email) if (m := pattern.search(r.text()))]
            return found[-1] if found else None

        return str(wait_until(link, timeout, f"a sign-in link emailed to {email}"))


@contextmanager
def running_product(tmp: Path, **overrides: str) -> Iterator[Product]:
    """Starts `workrate run` the way a user does, on SQLite in `tmp`, or on a fresh PostgreSQL database on the
    server of WORKRATE_TEST_DATABASE_URL when that is set; stops it (SIGTERM) and drops the database after.
    `overrides` are WORKRATE_* variables replacing the defaults here."""
    with ExitStack() as stack:
        relay = stack.enter_context(CapturingRelay())
        settings = {}
        pg_url = os.environ.get("WORKRATE_TEST_DATABASE_URL", "")
        if pg_url:
            server = pg_url.rsplit("/", 1)[0]
            settings["WORKRATE_DATABASE_URL"] = stack.enter_context(fresh_postgres_database("wr_browser", server))
        web_port = free_port()
        url = f"http://127.0.0.1:{web_port}"
        env = base_environment(
            WORKRATE_DATA_DIR=str(tmp / "var"), WORKRATE_SECRET_KEY="browser-" + secrets.token_hex(16),
            WORKRATE_BASE_URL=url, WORKRATE_REPLY_DOMAIN="reply.browser.test", WORKRATE_RELAY_URL=relay.url,
            WORKRATE_NOTIFY_DELAY="0", WORKRATE_SMTP_PORT=str(free_port()), WORKRATE_WEB_PORT=str(web_port),
            WORKRATE_LOG_LEVEL="INFO", **settings)
        env.update(overrides)
        cli(env, "init-db")
        proc = start("run", env, tmp / "logs", "workrate-run")
        proc.port = web_port
        try:
            proc.wait_listening(timeout=60)
            proc.wait_log(r"outbox worker \S+ started", timeout=60)
            yield Product(url=url, env=env, relay=relay, proc=proc, tmp=tmp)
        finally:
            proc.stop()


# ---------------------------------------------------------------------------------------------------
# The browser


def launch(playwright: Any) -> Any:
    """Debian's chromium, headless, driven through executable_path (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)


def new_context(browser: Any, phone: bool = False, **options: Any) -> Any:
    """A fresh browser profile (its own cookies) at desktop (1280×800) or phone (390×844) size."""
    if phone:
        options.update(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    else:
        options.update(viewport=DESKTOP)
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    return context


def sign_in_team(page: Any, product: Product, email: str, password: str = TEAM_PASSWORD) -> None:
    """Signs a team member in on the sign-in page with email and password."""
    from playwright.sync_api import expect

    page.goto(f"{product.url}/login")
    page.fill("#login-email", email)
    page.fill("#login-password", password)
    page.click("#login-submit")
    expect(page.locator("#signed-in-as")).to_have_attribute("data-role", "team")


def open_magic_link(page: Any, link: str) -> None:
    """Opens a sign-in link (GET shows a button) and presses it (POST signs in) as a client."""
    from playwright.sync_api import expect

    page.goto(link)
    page.click("#link-confirm")
    expect(page.locator("#signed-in-as")).to_have_attribute("data-role", "client")


def wait_live(page: Any) -> None:
    """Waits until the thread page's script has opened its live-update stream."""
    from playwright.sync_api import expect

    expect(page.locator("#thread")).to_have_attribute("data-live", "on")


def watch_for(page: Any, text: str) -> None:
    """Notes (in the page) the moment a message containing `text` enters #messages, and marks the page so that
    a reload would show (a reload forgets both)."""
    page.evaluate(
        """text => {
            window.__noReload = true;
            window.__seenAt = null;
            const list = document.getElementById('messages');
            const look = obs => {
                for (const el of list.querySelectorAll('.message')) {
                    if (el.textContent.includes(text)) { window.__seenAt = Date.now(); obs.disconnect(); return; }
                }
            };
            new MutationObserver((_, obs) => look(obs)).observe(list, {childList: true, subtree: true});
        }""",
        text,
    )


def seen_at_ms(page: Any) -> float | None:
    """When (epoch ms, the page's clock) the watched message arrived; None if it has not."""
    return page.evaluate("() => window.__seenAt")


def not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("() => window.__noReload === true"))


def horizontal_overflow(page: Any) -> list[str]:
    """Elements that stick out past the right edge of the viewport (page-level horizontal scrolling)."""
    return page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const out = [];
            if (document.documentElement.scrollWidth > width + 1) {
                out.push('document ' + document.documentElement.scrollWidth + 'px wide in ' + width + 'px');
            }
            for (const el of document.querySelectorAll('body *')) {
                const r = el.getBoundingClientRect();
                if (r.width && r.right > width + 1 && getComputedStyle(el).position !== 'fixed'
                        && !el.closest('.visually-hidden')) {
                    out.push((el.id ? '#' + el.id : el.tagName.toLowerCase() + '.' + el.className)
                             + ' right edge at ' + Math.round(r.right) + 'px');
                }
            }
            return out.slice(0, 10);
        }"""
    )


def shoot(page: Any, folder: Path, name: str) -> None:
    """Full-page screenshots at desktop and phone width into `folder`; nothing may stick out sideways at either.
    The page is left at desktop width."""
    folder.mkdir(parents=True, exist_ok=True)
    for size, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
        assert horizontal_overflow(page) == [], f"{name} at {label} size"
    page.set_viewport_size(DESKTOP)


def with_axe(context: Any) -> Any:
    """The browser context with axe-core in every page it opens (an init script runs through DevTools, so the
    page's CSP does not block it)."""
    context.add_init_script(path=str(AXE_JS))
    return context


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations of the page as it is now (its context went through
    with_axe), each with where it is."""
    return page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at '
                 + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")


def tiny_png(width: int = 48, height: int = 32) -> bytes:
    """A real PNG image (a two-colour gradient), made with zlib only."""
    rows = b"".join(b"\x00" + bytes(c for x in range(width)
                                     for c in (36 + 180 * x // width, 87 + 120 * y // height, 214))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
