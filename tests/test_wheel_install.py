"""The release install works from anywhere: .ci/wheel_smoke.py builds a wheel from this checkout, installs
it (not editable) into a fresh virtual environment outside the checkout and runs `workrate run --demo`
from another folder with the default relative data folder, fetching pages, static files and an attachment.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "wheel_smoke.py"


@pytest.mark.slow
@pytest.mark.wheel
def test_wheel_installed_elsewhere_serves_pages_static_files_and_attachments() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "wheel smoke test passed" in done.stdout
    assert "/static/app.css 200" in done.stdout and "home-page-outline.txt 200 (client)" in done.stdout
