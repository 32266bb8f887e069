"""What the blueprints share with the app factory (web/app.py) without importing it: the Settings the
app was created with, the CSRF guard, and the environ key that marks a live-update read.
"""
from __future__ import annotations

from flask import Flask, current_app
from flask_wtf.csrf import CSRFProtect

from config import Settings

csrf = CSRFProtect()
LIVE_READ = "workrate.live_read"  # environ key of the request contexts live-update reads run in
SETTINGS_KEY = "workrate_settings"  # where create_app keeps the Settings in app.extensions


def app_settings(app: Flask | None = None) -> Settings:
    """The Settings the running app was created with."""
    settings: Settings = (app or current_app).extensions[SETTINGS_KEY]
    return settings
