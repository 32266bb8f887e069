"""The agency's accent colour replaces the stylesheet's in both colour schemes (/branding/theme.css), so it must
bring a readable text colour and a dark-scheme shade of its own (web/branding.py)."""
from __future__ import annotations

import itertools
from typing import Any

from web.branding import DARK_SURFACE, contrast, lighter_for_dark, text_on

GRID = ["#" + "".join(f"{c:02x}" for c in rgb) for rgb in itertools.product(range(0, 256, 51), repeat=3)]


def test_contrast_is_the_wcag_ratio() -> None:
    assert round(contrast("#ffffff", "#000000"), 1) == 21.0
    assert contrast("#777777", "#777777") == 1.0


def test_button_text_reads_on_any_accent() -> None:
    # White or near-black, whichever is better; 4.35:1 is the floor of the better of the two (mid pinks).
    assert text_on("#2457d6") == "#ffffff" and text_on("#ffd400") != "#ffffff"
    assert min(contrast(text_on(c), c) for c in GRID) >= 4.3


def test_dark_scheme_shade_reads_on_dark_surfaces_and_under_its_text() -> None:
    for colour in GRID:
        night = lighter_for_dark(colour)
        assert contrast(night, DARK_SURFACE) >= 6, colour
        assert contrast(text_on(night), night) >= 4.5, colour
    assert lighter_for_dark("#ffd400") == "#ffd400"  # light enough already: unchanged


def test_theme_css_carries_both_schemes(app: Any) -> None:
    css = app.test_client().get("/branding/theme.css").get_data(as_text=True)
    assert "--on-accent: #ffffff" in css
    assert "@media (prefers-color-scheme: dark)" in css and "--on-accent: #0b1020" in css
