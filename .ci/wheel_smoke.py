#!/usr/bin/env python3
"""CI: the release install works from anywhere.

Builds a wheel from a clean copy of the checkout (`pip wheel --no-deps`), installs it (not editable)
into a fresh virtual environment outside the checkout, starts `workrate run --demo` from yet another
empty folder with the default relative data folder (./var) on free ports, then signs in as the demo's
team member and its client and fetches pages, the stylesheet, the script, an error page and the
demo's attachment, and waits for the demo's notification emails (written as .eml files). Exits 0 when
all of them answer as expected, 1 with the reason otherwise.

Usage: python .ci/wheel_smoke.py [--keep]   (--keep leaves the temporary folder for a look)
"""
from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
# Never copied into the build: local state, caches and earlier build output (a stale build/ folder
# would put deleted modules into the wheel).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "var", "build", "dist", "artifacts", "__pycache__",
                                    "*.egg-info", ".pytest_cache", ".ruff_cache", ".mypy_cache", "*.pyc")
INSTALL_SECONDS = 900  # building and installing with every dependency, on a busy machine
START_SECONDS = 120  # from `workrate run --demo` to the web port answering
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class SmokeFailure(Exception):
    pass


def run(args: list[str], **kwargs: object) -> None:
    print("+", " ".join(args), flush=True)
    done = subprocess.run(args, capture_output=True, text=True, timeout=INSTALL_SECONDS, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SmokeFailure(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_and_install(work: Path) -> Path:
    """The wheel built from a copy of the checkout, installed into work/venv; returns its bin folder."""
    source = work / "source"
    shutil.copytree(CHECKOUT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(source)])
    [wheel] = (work / "dist").glob("*.whl")
    shutil.rmtree(source)  # nothing may come from the source tree from here on
    run([sys.executable, "-m", "venv", str(work / "venv")])
    bin_dir = work / "venv" / "bin"
    run([str(bin_dir / "pip"), "install", "-q", str(wheel)])
    return bin_dir


def clean_environment(web_port: int, smtp_port: int) -> dict[str, str]:
    """The caller's environment without WORKRATE_* settings or Python paths, plus the two ports."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WORKRATE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(WORKRATE_WEB_PORT=str(web_port), WORKRATE_SMTP_PORT=str(smtp_port))
    return env


class Browser:
    """Just enough of a browser: cookies, no automatic redirects, and the CSRF token of the last form."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  NoRedirect())

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data=data, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, path: str, expect: int = 200) -> str:
        status, _, body = self.request(path)
        if status != expect:
            raise SmokeFailure(f"GET {path} answered {status}, expected {expect}: {body[:300]!r}")
        return body.decode("utf-8", "replace")

    def submit(self, page: str, path: str, fields: dict[str, str]) -> str:
        """POSTs a form of `page` (the CSRF token read from it); expects a redirect, returns its target."""
        token = CSRF_RE.search(page)
        if token is None:
            raise SmokeFailure(f"no CSRF token on the page before POST {path}")
        status, headers, body = self.request(path, {**fields, "csrf_token": token.group(1)})
        if status not in (302, 303):
            raise SmokeFailure(f"POST {path} answered {status}, expected a redirect: {body[:300]!r}")
        return headers.get("Location", "")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SmokeFailure(f"workrate run --demo exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SmokeFailure(f"the web app did not listen on port {port} within {START_SECONDS} s:\n"
                       + log.read_text()[-3000:])


def check_site(base: str, demo_output: str) -> list[str]:
    """Signs in as the demo's team member and client and fetches what a visitor's browser would."""
    fetched = []
    team = Browser(base)
    login = team.get("/login")
    if team.submit(login, "/login", {"email": "kim@agency.example", "password": "demo-password"}) == "/login":
        raise SmokeFailure("the demo team member could not sign in")
    for path in ("/", "/workspaces", "/w/acme/members"):
        status, headers, _ = team.request(path)
        if status not in (200, 302):
            raise SmokeFailure(f"GET {path} answered {status}")
        fetched.append(f"{path} {status}")
    thread = team.get("/w/acme")
    fetched.append("/w/acme 200")
    for asset in ("/static/app.css", "/static/app.js"):
        if asset not in thread:
            raise SmokeFailure(f"the thread page does not link {asset}")
        if not team.get(asset).strip():
            raise SmokeFailure(f"{asset} is empty")
        fetched.append(f"{asset} 200")
    file_link = re.search(r'href="(/attachments/\d+/home-page-outline\.txt)"', thread)
    if file_link is None:
        raise SmokeFailure("the demo thread shows no attachment")
    if not team.get(file_link.group(1)).startswith("Home page outline"):
        raise SmokeFailure(f"{file_link.group(1)} did not send the file's bytes")
    fetched.append(f"{file_link.group(1)} 200")
    if "There is nothing here" not in team.get("/no/such/page", expect=404):
        raise SmokeFailure("the 404 page did not render")
    fetched.append("/no/such/page 404 (error page)")

    client_link = re.search(r"http://\S+/login/\S+", demo_output.split("Client with Messages access", 1)[-1])
    if client_link is None:
        raise SmokeFailure(f"no sign-in link for the demo client in:\n{demo_output}")
    client = Browser(base)
    path = urllib.parse.urlsplit(client_link.group(0)).path
    client.submit(client.get(path), path, {})
    portal = client.get("/portal/w/acme")
    if "Could we see the home page draft" not in portal or "designer is out" in portal:
        raise SmokeFailure("the client's portal page does not show the thread as the client may see it")
    fetched.append("/portal/w/acme 200 (client)")
    if not client.get(file_link.group(1)).startswith("Home page outline"):
        raise SmokeFailure("the client could not download the attachment")
    fetched.append(f"{file_link.group(1)} 200 (client)")
    return fetched


def wait_for_email(folder: Path) -> str:
    """The demo's notifications, rendered from the email templates, written as .eml files (no relay)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        emails = sorted(folder.glob("*.eml")) if folder.is_dir() else []
        if emails:
            text = emails[0].read_text(errors="replace")
            if "Acme Co" not in text:
                raise SmokeFailure(f"{emails[0]} does not look like a notification about Acme Co")
            return f"{len(emails)} notification email(s) rendered"
        time.sleep(0.2)
    raise SmokeFailure(f"no notification email was written to {folder} within {START_SECONDS} s")


def smoke(work: Path) -> list[str]:
    bin_dir = build_and_install(work)
    run_dir = work / "elsewhere"
    run_dir.mkdir()
    # The installed package, not the checkout, must be what runs.
    where = subprocess.run([str(bin_dir / "python"), "-c", "import web, templates; print(web.__file__)"],
                           cwd=run_dir, capture_output=True, text=True, env=clean_environment(0, 0), check=True)
    if not where.stdout.strip().startswith(str(work / "venv")):
        raise SmokeFailure(f"web was imported from {where.stdout.strip()}, not from the installed wheel")
    web_port, smtp_port = free_port(), free_port()
    log = work / "workrate.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(bin_dir / "workrate"), "run", "--demo"], cwd=run_dir, stdout=out,
                                   stderr=subprocess.STDOUT, env=clean_environment(web_port, smtp_port))
    try:
        wait_for_port(web_port, process, log)
        fetched = check_site(f"http://127.0.0.1:{web_port}", log.read_text())
        if not (run_dir / "var" / "workrate.db").exists():
            raise SmokeFailure("the default data folder ./var was not created in the working folder")
        fetched.append(wait_for_email(run_dir / "var" / "outbox-mail"))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise SmokeFailure(f"workrate run exited {process.returncode} after SIGTERM:\n{log.read_text()[-3000:]}")
    return fetched


def main() -> int:
    keep = "--keep" in sys.argv[1:]
    work = Path(tempfile.mkdtemp(prefix="workrate-wheel-"))
    try:
        fetched = smoke(work)
    except (SmokeFailure, subprocess.SubprocessError) as e:
        print(f"wheel smoke test FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("wheel smoke test passed: " + "; ".join(fetched))
    return 0


if __name__ == "__main__":
    sys.exit(main())
