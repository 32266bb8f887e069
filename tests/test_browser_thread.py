"""Real-browser tests of the thread and the composer, on both sides (team and client), against the real
product (`workrate run`): the formatting toolbar and its shortcuts, pasted and dropped files with their
progress bars, edit and delete seen live by the other side, the "New" divider and the unread count in the
tab title, search across workspaces jumping to the message, the draft kept across a reload, and axe-core
(the npm package, injected into every page visited) finding no serious or critical violation.

axe-core comes from `npm install axe-core` (.ci/run does it); these tests skip, saying so, without it.
Screenshots of every page, at 1280x800 and 390x844, go to artifacts/screenshots/.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    SCREENSHOTS,
    Product,
    horizontal_overflow,
    new_context,
    open_magic_link,
    running_product,
    serious_violations,
    sign_in_team,
    skip_module_without_browser,
    tiny_png,
    wait_live,
    with_axe,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEAM = "kim@agency.test"
ADMIN = "lee@agency.test"
CLIENT = "bob@acme.test"

skip_module_without_browser(axe=True)

from playwright.sync_api import expect  # noqa: E402


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_product(tmp_path_factory.mktemp("browser-thread")) as p:
        p.add_team(TEAM, "Kim Lee")
        p.add_team(ADMIN, "Lee Park", admin=True)
        p.add_workspace("Acme Corp", "acme")
        p.add_workspace("Globex Ltd", "globex")
        p.add_client(CLIENT, "Bob Stone", "acme")
        yield p


class Axe:
    """axe-core in every page of a context; check() fails on serious or critical violations of the page as it
    is now."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    def context(self, browser: Any, phone: bool = False) -> Any:
        return with_axe(new_context(browser, phone=phone))

    def check(self, page: Any, name: str) -> None:
        found = serious_violations(page)
        assert found == [], f"axe on {name} ({page.url}):\n" + "\n".join(found)
        self.checked.append(name)


def _team(axe: Axe, browser: Any, product: Product, email: str = TEAM, phone: bool = False) -> tuple[Any, Any]:
    ctx = axe.context(browser, phone)
    page = ctx.new_page()
    sign_in_team(page, product, email)
    return ctx, page


def _client(axe: Axe, browser: Any, product: Product, email: str = CLIENT, phone: bool = False) -> tuple[Any, Any]:
    ctx = axe.context(browser, phone)
    page = ctx.new_page()
    open_magic_link(page, product.login_link(email))
    return ctx, page


def _message(page: Any, text: str) -> Any:
    return page.locator("#messages .message", has_text=text)


def _send(page: Any) -> None:
    page.click("#send")
    expect(page.locator("#composer-text")).to_have_value("")


def test_toolbar_shortcuts_preview_and_draft(product: Product, browser: Any) -> None:
    """Bold/italic/lists/link by toolbar and by Ctrl+B/I/K on both sides; the stored text is Markdown, drawn
    formatted; the preview shows it before sending; a draft survives a reload and is cleared on send."""
    axe = Axe()
    for side in ("team", "client"):
        run = secrets.token_hex(3)
        ctx, page = (_team if side == "team" else _client)(axe, browser, product)
        try:
            page.goto(f"{product.url}/{'w' if side == 'team' else 'portal/w'}/acme")
            wait_live(page)
            box = page.locator("#composer-text")
            # Toolbar: select a word, press Bold; then a bulleted list of two lines.
            box.fill(f"plan {run}")
            box.evaluate("el => el.setSelectionRange(0, 4)")
            page.click(".toolbar [data-format=bold]")
            expect(box).to_have_value(f"**plan** {run}")
            # Shortcuts: Ctrl+I around a selection, Ctrl+K makes a link (the address is asked for).
            box.press("End")
            box.type(" soon")
            box.evaluate("el => el.setSelectionRange(el.value.length - 4, el.value.length)")
            box.press("Control+i")
            expect(box).to_have_value(f"**plan** {run} _soon_")
            box.press("End")
            box.type(" docs")
            box.evaluate("el => el.setSelectionRange(el.value.length - 4, el.value.length)")
            page.once("dialog", lambda d: d.accept("https://example.com/docs"))
            box.press("Control+k")
            expect(box).to_have_value(f"**plan** {run} _soon_ [docs](https://example.com/docs)")
            box.press("Control+End")
            box.type("\nfirst\nsecond")
            box.evaluate("el => el.setSelectionRange(el.value.lastIndexOf('first'), el.value.length)")
            page.click(".toolbar [data-format=numbers]")
            assert box.input_value().endswith("1. first\n2. second")
            # The preview draws it as it will be sent.
            page.click("#preview-toggle")
            expect(page.locator("#composer-preview strong")).to_have_text("plan")
            expect(page.locator("#composer-preview a")).to_have_attribute("href", "https://example.com/docs")
            axe.check(page, f"{side} thread with preview")
            page.click("#preview-toggle")
            # The draft is kept across a reload, per workspace, and cleared once sent.
            page.reload()
            expect(page.locator("#composer-text")).to_have_value(re.compile(re.escape(f"**plan** {run}")))
            _send(page)
            sent = _message(page, run)
            expect(sent.locator(".message-body strong")).to_have_text("plan")
            expect(sent.locator(".message-body em")).to_have_text("soon")
            expect(sent.locator(".message-body ol li")).to_have_count(2)
            expect(sent.locator(".message-body a")).to_have_text("docs")
            page.reload()
            expect(page.locator("#composer-text")).to_have_value("")
            # Keyboard only: Tab reaches the toolbar, arrows move in it, Enter applies.
            box.fill("x")
            box.evaluate("el => el.setSelectionRange(0, 1)")
            page.locator(".toolbar .tool").first.focus()
            page.keyboard.press("ArrowRight")
            expect(page.locator(".toolbar [data-format=italic]")).to_be_focused()
            page.keyboard.press("Enter")
            expect(box).to_have_value("_x_")
            box.fill("")
        finally:
            ctx.close()


def _drop_files(page: Any, selector: str, files: list[tuple[str, str, bytes]]) -> None:
    """Dispatches a real drop event carrying files (DataTransfer built in the page)."""
    page.evaluate("""([selector, files]) => {
        const dt = new DataTransfer();
        for (const [name, type, bytes] of files) { dt.items.add(new File([new Uint8Array(bytes)], name, {type})); }
        const target = document.querySelector(selector);
        target.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true}));
        target.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [selector, [[n, t, list(b)] for n, t, b in files]])


def _paste_image(page: Any, png: bytes) -> None:
    page.evaluate("""bytes => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], 'image.png', {type: 'image/png'}));
        document.querySelector('#composer-text').dispatchEvent(
            new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
    }""", list(png))


def test_paste_and_drop_files_with_progress_and_removal(product: Product, browser: Any) -> None:
    """A pasted screenshot and dropped files are listed with sizes and progress bars, one is removed before
    sending; too many bytes are refused before any upload with the limit in words; both sides."""
    axe = Axe()
    for side in ("team", "client"):
        ctx, page = (_team if side == "team" else _client)(axe, browser, product)
        run = secrets.token_hex(3)
        try:
            page.goto(f"{product.url}/{'w' if side == 'team' else 'portal/w'}/acme")
            wait_live(page)
            expect(page.locator("#composer-hint")).to_contain_text("Up to 20 files, 25 MiB in all")
            _paste_image(page, tiny_png(64, 40))
            _drop_files(page, "#messages", [("keep.txt", "text/plain", b"keep me " + run.encode()),
                                            ("drop-me.txt", "text/plain", b"not this one")])
            names = page.locator("#staged-files .staged-name")
            expect(names).to_have_text(["image.png", "keep.txt", "drop-me.txt"])
            expect(page.locator("#staged-files progress")).to_have_count(3)
            page.click("button[aria-label='Remove drop-me.txt']")
            expect(names).to_have_text(["image.png", "keep.txt"])
            axe.check(page, f"{side} composer with files")
            page.fill("#composer-text", f"files {run}")
            _send(page)
            sent = _message(page, f"files {run}")
            expect(sent.locator(".attachment-link")).to_have_text(["image.png", "keep.txt"])
            expect(sent.locator("img.thumb")).to_be_visible()
            expect(page.locator("#staged-files .staged-file")).to_have_count(0)
            # A file over the limit is refused before uploading, saying the limit.
            page.evaluate("""() => {
                const dt = new DataTransfer();
                dt.items.add(new File([new Uint8Array(26 * 1024 * 1024)], 'huge.bin'));
                document.querySelector('#messages').dispatchEvent(
                    new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
            }""")
            expect(page.locator("#composer-error")).to_contain_text("huge.bin")
            expect(page.locator("#composer-error")).to_contain_text("25 MiB")
            expect(page.locator("#staged-files .staged-file")).to_have_count(0)
        finally:
            ctx.close()


def test_edit_and_delete_seen_live_by_the_other_side(product: Product, browser: Any) -> None:
    """The team edits a message and the client's open page shows the new text with "edited" and the earlier
    version; the client edits and deletes their own and the team's page follows; an admin deletes the
    client's message; an internal note's edit never reaches the client's page."""
    axe = Axe()
    run = secrets.token_hex(3)
    team_ctx, team = _team(axe, browser, product)
    client_ctx, client = _client(axe, browser, product)
    try:
        team.goto(f"{product.url}/w/acme")
        client.goto(f"{product.url}/portal/w/acme")
        wait_live(team)
        wait_live(client)
        team.fill("#composer-text", f"Kickoff on Tuesday {run}")
        _send(team)
        team.check("#internal-toggle")
        team.fill("#composer-text", f"Internal thought {run}")
        _send(team)
        team.uncheck("#internal-toggle")
        expect(_message(client, f"Kickoff on Tuesday {run}")).to_be_visible()

        # The team edits in place (menu, Edit, Save).
        mine = _message(team, f"Kickoff on Tuesday {run}")
        mine.locator(".message-menu summary").click()
        mine.locator(".edit-link").click()
        editor = mine.locator(".inline-edit textarea")
        expect(editor).to_have_value(f"Kickoff on Tuesday {run}")
        editor.fill(f"Kickoff on Wednesday {run}")
        axe.check(team, "team thread while editing")
        mine.locator(".inline-edit button[type=submit]").click()
        expect(_message(team, f"Kickoff on Wednesday {run}").locator(".edited")).to_be_visible()
        seen = _message(client, f"Kickoff on Wednesday {run}")
        expect(seen).to_be_visible()
        assert client.evaluate("() => !!document.querySelector('#thread')")  # no reload needed: same page
        seen.locator(".versions summary").click()
        expect(seen.locator(".version-body")).to_contain_text(f"Kickoff on Tuesday {run}")
        axe.check(client, "client thread with an edited message")

        # An internal note's edit stays on the team's side.
        note = _message(team, f"Internal thought {run}")
        note.locator(".message-menu summary").click()
        note.locator(".edit-link").click()
        note.locator(".inline-edit textarea").fill(f"Internal thought, revised {run}")
        note.locator(".inline-edit button[type=submit]").click()
        expect(_message(team, f"Internal thought, revised {run}")).to_be_visible()

        # The client edits then deletes their own message; the team's page follows live.
        client.fill("#composer-text", f"Can we move it {run}")
        _send(client)
        expect(_message(team, f"Can we move it {run}")).to_be_visible()
        own = _message(client, f"Can we move it {run}")
        own.locator(".message-menu summary").click()
        own.locator(".edit-link").click()
        own.locator(".inline-edit textarea").fill(f"Can we move it to Friday {run}")
        own.locator(".inline-edit textarea").press("Control+Enter")
        expect(_message(team, f"Can we move it to Friday {run}").locator(".edited")).to_be_visible()
        own = _message(client, f"Can we move it to Friday {run}")
        own.locator(".message-menu summary").click()
        client.once("dialog", lambda d: d.accept())
        own.locator(".delete-button").click()
        expect(client.locator(".message.deleted .deleted-mark")).to_have_count(1)
        expect(team.locator(".message.deleted .deleted-mark")).to_have_count(1)
        expect(team.locator("#sidebar")).not_to_contain_text(f"Can we move it to Friday {run}")
        assert f"Can we move it to Friday {run}" not in team.content()

        # The team's message deleted by the team: the client sees the mark too.
        kept = _message(team, f"Kickoff on Wednesday {run}")
        kept.locator(".message-menu summary").click()
        team.once("dialog", lambda d: d.accept())
        kept.locator(".delete-button").click()
        expect(client.locator(".message.deleted")).to_have_count(2)

        # An admin (not its author) deletes the client's message; the client sees the mark.
        client.fill("#composer-text", f"Wrong file sent {run}")
        _send(client)
        admin_ctx, admin = _team(axe, browser, product, email=ADMIN)
        try:
            admin.goto(f"{product.url}/w/acme")
            theirs = _message(admin, f"Wrong file sent {run}")
            theirs.hover()  # a message that continues its author's run shows its header on hover
            theirs.locator(".message-menu summary").click()
            expect(theirs.locator(".edit-link")).to_have_count(0)  # an admin deletes, only authors edit
            admin.once("dialog", lambda d: d.accept())
            theirs.locator(".delete-button").click()
            expect(client.locator(".message.deleted")).to_have_count(3)
        finally:
            admin_ctx.close()
        html = client.content()
        for secret in ("Internal thought", f"Kickoff on Wednesday {run}", f"Kickoff on Tuesday {run}",
                       f"Wrong file sent {run}"):
            assert secret not in html
        axe.check(client, "client thread with deleted messages")
    finally:
        team_ctx.close()
        client_ctx.close()


def test_new_divider_tab_title_and_jump(product: Product, browser: Any) -> None:
    """Messages that arrive while the client is away: the tab title counts them while the page is hidden,
    and on coming back the page opens at a "New" divider before the first unread one. Both sides."""
    axe = Axe()
    run = secrets.token_hex(3)
    team_ctx, team = _team(axe, browser, product)
    client_ctx, client = _client(axe, browser, product)
    try:
        client.goto(f"{product.url}/portal/w/acme")
        team.goto(f"{product.url}/w/acme")
        wait_live(client)
        wait_live(team)
        # The client's tab is hidden: new messages count in its title.
        client.evaluate("""() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        for i in range(2):
            team.fill("#composer-text", f"While you were away {i} {run}")
            _send(team)
        expect(client).to_have_title(re.compile(r"^\(2\) Acme Corp"))
        expect(client.locator("#new-divider")).to_be_visible()
        assert client.evaluate("() => document.getElementById('favicon').href.startsWith('data:image/png')")
        client.evaluate("""() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        expect(client).to_have_title(re.compile(r"^Acme Corp"))

        # Away entirely: the next visit opens with the divider before the first unread message.
        client.goto(f"{product.url}/portal")
        team.fill("#composer-text", f"First unseen {run}")
        _send(team)
        team.fill("#composer-text", f"Second unseen {run}")
        _send(team)
        client.goto(f"{product.url}/portal/w/acme")
        divider = client.locator("#new-divider")
        expect(divider).to_be_visible()
        following = divider.evaluate("el => el.nextElementSibling.textContent")
        assert f"First unseen {run}" in following
        axe.check(client, "client thread with the New divider")
        # Same for the team, with a message from the client.
        team.goto(f"{product.url}/workspaces")
        client.fill("#composer-text", f"Client speaks {run}")
        _send(client)
        row = team.locator("#workspaces .workspace-row[data-slug=acme]")
        team.reload()
        expect(row.locator(".unread")).to_be_visible()
        expect(row.locator(".awaiting")).to_have_text("Awaiting your reply")
        axe.check(team, "team workspaces")
        team.goto(f"{product.url}/w/acme")
        expect(team.locator("#new-divider")).to_be_visible()
        expect(team.locator("#sidebar .workspace-row.current")).to_be_visible()
        axe.check(team, "team thread with the New divider and sidebar")
    finally:
        team_ctx.close()
        client_ctx.close()


def test_search_across_workspaces_jumps_to_the_message(product: Product, browser: Any) -> None:
    """The team searches every workspace (results grouped, matches marked, counts in English) and a result
    opens the thread at that message, highlighted; a client finds only client-visible messages."""
    axe = Axe()
    run = secrets.token_hex(3)
    word = f"zanzibar{run}"
    product.cli("post", "acme", f"The {word} proposal is attached", "--as", TEAM)
    product.cli("post", "acme", f"Secret {word} margins", "--as", TEAM, "--internal")
    product.cli("post", "globex", f"Globex {word} kickoff", "--as", TEAM)
    for i in range(60):  # pushes the first match off the thread's first page
        product.cli("post", "acme", f"filler {i}", "--as", TEAM)
    team_ctx, team = _team(axe, browser, product)
    client_ctx, client = _client(axe, browser, product)
    try:
        team.goto(f"{product.url}/workspaces")
        team.fill("#top-search-q", word)
        team.press("#top-search-q", "Enter")
        expect(team.locator("#search-summary")).to_contain_text("3 messages in 2 workspaces match")
        expect(team.locator(".search-group h2")).to_have_count(2)
        expect(team.locator(".search-group mark").first).to_contain_text(word)
        axe.check(team, "team search")
        result = team.locator(".search-group .message", has_text="proposal")
        result.locator(".in-thread").click()
        target = team.locator(".message.target")
        expect(target).to_contain_text(f"The {word} proposal")
        expect(target).to_be_in_viewport()

        client.goto(f"{product.url}/portal/search?q={word}")
        expect(client.locator("#search-summary")).to_contain_text("1 message in 1 conversation match")
        assert "margins" not in client.content() and "Globex" not in client.content()
        axe.check(client, "client search")
        client.locator(".in-thread").click()
        expect(client.locator(".message.target")).to_contain_text("proposal")
        expect(client.locator(".message.target")).to_be_in_viewport()
    finally:
        team_ctx.close()
        client_ctx.close()


PAGES_TEAM = ["/workspaces", "/w/acme", "/w/acme?as=", "/search?q=plan", "/me", "/w/acme/members"]
PAGES_CLIENT = ["/portal", "/portal/w/acme", "/portal/search?q=plan", "/me"]


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_page_is_axe_clean_and_screenshotted(product: Product, browser: Any, size: str) -> None:
    """Every page of both sides at both sizes: no serious or critical axe violation, no sideways scroll,
    and a screenshot to look at."""
    axe = Axe()
    phone = size == "phone"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    product.cli("post", "acme", "A **plan** for the week:\n\n- design\n- [brief](https://example.com)", "--as", TEAM)
    for who, pages, opener in (("team", PAGES_TEAM, _team), ("client", PAGES_CLIENT, _client)):
        ctx, page = opener(axe, browser, product, phone=phone)
        try:
            for path in pages:
                page.goto(product.url + path)
                page.wait_for_load_state("networkidle")
                axe.check(page, f"{who} {path} ({size})")
                assert horizontal_overflow(page) == [], f"{who} {path} at {size} sticks out sideways"
                name = re.sub(r"[^a-z0-9]+", "-", path.strip("/").lower()) or "root"
                page.screenshot(path=str(SCREENSHOTS / f"{who}-{name}-{size}.png"))
            mine = page.locator("#messages .message.mine").first
            page.goto(product.url + ("/w/acme" if who == "team" else "/portal/w/acme"))
            if mine.count():
                edit_url = mine.locator(".edit-link").get_attribute("href")
                page.goto(product.url + edit_url)
                axe.check(page, f"{who} edit page ({size})")
                page.screenshot(path=str(SCREENSHOTS / f"{who}-edit-{size}.png"))
        finally:
            ctx.close()
    assert len(axe.checked) >= len(PAGES_TEAM) + len(PAGES_CLIENT)


def test_avatar_pictures_both_sides(product: Product, browser: Any, tmp_path: Path) -> None:
    """A team member and a client each upload a picture at /me (a wrong file first: the error shows beside
    the field); each sees the other's picture beside their messages instead of initials, at desktop and
    phone size; removing it brings the initials back. Axe-clean, screenshotted."""
    axe = Axe()
    run = secrets.token_hex(3)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (tmp_path / "team.png").write_bytes(tiny_png(200, 200))
    (tmp_path / "client.png").write_bytes(tiny_png(120, 160))
    (tmp_path / "notes.svg").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"/>')
    team_ctx, team = _team(axe, browser, product)
    client_ctx, client = _client(axe, browser, product, phone=True)
    try:
        team.goto(f"{product.url}/me")
        team.set_input_files("#avatar-file", str(tmp_path / "notes.svg"))
        team.click("#avatar-submit")
        expect(team.locator("#avatar-error")).to_contain_text("PNG, JPEG or WebP")
        axe.check(team, "team /me with a picture error")
        team.set_input_files("#avatar-file", str(tmp_path / "team.png"))
        team.click("#avatar-submit")
        expect(team.locator("#avatar-preview img")).to_be_visible()
        axe.check(team, "team /me with a picture")
        team.screenshot(path=str(SCREENSHOTS / "team-me-avatar-desktop.png"))
        client.goto(f"{product.url}/me")
        client.set_input_files("#avatar-file", str(tmp_path / "client.png"))
        client.click("#avatar-submit")
        expect(client.locator("#avatar-preview img")).to_be_visible()
        client.screenshot(path=str(SCREENSHOTS / "client-me-avatar-phone.png"))

        # Each message follows the other side's, so neither continues a run (whose avatar is hidden).
        product.cli("post", "acme", f"Before the plan {run}", "--as", CLIENT)
        product.cli("post", "acme", f"Here is the plan {run}", "--as", TEAM)
        product.cli("post", "acme", f"Looks good {run}", "--as", CLIENT)
        for page, side, size in ((team, "team", "desktop"), (client, "client", "phone")):
            page.goto(f"{product.url}/{'w' if side == 'team' else 'portal/w'}/acme")
            for text in (f"Here is the plan {run}", f"Looks good {run}"):
                picture = _message(page, text).locator(".avatar.picture img")
                expect(picture).to_be_visible()
                assert page.evaluate("img => img.complete && img.naturalWidth", picture.element_handle()) == 256
            axe.check(page, f"{side} thread with pictures ({size})")
            assert horizontal_overflow(page) == []
            page.screenshot(path=str(SCREENSHOTS / f"{side}-thread-avatars-{size}.png"))

        team.goto(f"{product.url}/me")
        team.click("#avatar-remove")
        expect(team.locator("#avatar-preview img")).to_have_count(0)
        client.goto(f"{product.url}/portal/w/acme")
        kim = _message(client, f"Here is the plan {run}").locator(".avatar")
        expect(kim).to_have_text("KL")
        expect(_message(client, f"Looks good {run}").locator(".avatar.picture img")).to_be_visible()
    finally:
        team_ctx.close()
        client_ctx.close()
