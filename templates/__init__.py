"""The Jinja templates: web pages (auth/, team/, portal/, errors/, base.html) and emails (email/).

A package so that the templates ship inside the wheel; FOLDER is where they are on disk, wherever the
package is installed.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

FOLDER = Path(str(files(__name__)))
