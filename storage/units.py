"""Sizes as people read them, in one unit system everywhere (app, emails, limits): binary units, written
KiB/MiB/GiB, so the default 25 MiB limit reads "25 MiB" wherever it is shown."""
from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def human_size(size: int) -> str:
    """1 byte, 900 bytes, 31.9 KiB, 25 MiB (no ".0")."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            text = f"{value:.1f}"
            return f"{text.removesuffix('.0')} {unit}"
    raise AssertionError("unreachable")


__all__ = ["human_size"]
