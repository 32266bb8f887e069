"""What every `workrate` command shares: the settings loaded once, the database bound on demand, and
the rule that a user error is one sentence on stderr with exit status 2, never a traceback.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import click

from config import ConfigError, Settings, load_settings

USER_ERROR = 2


class UserError(click.ClickException):
    exit_code = USER_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class App:
    """What every command shares: the settings, loaded once, and the database, bound on demand."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._db_ready = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            logging.basicConfig(level=self._settings.log_level,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return self._settings

    def open_db(self) -> Settings:
        """Binds the database, creating or upgrading the schema when needed."""
        from storage import db, migrations

        settings = self.settings
        if not self._db_ready:
            db.bind(settings)
            db.check_connection()
            with db.database.connection_context():
                behind = migrations.current_version() < migrations.LATEST_VERSION
            if behind:
                migrations.migrate()
            self._db_ready = True
        return settings


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns the errors a user can cause into one clear sentence and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from storage.db import DatabaseUnavailable
        from storage.directory import DirectoryError
        from storage.posting import PostingError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, DirectoryError, PostingError, DatabaseUnavailable) as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"{e.strerror or e}{': ' + str(e.filename) if e.filename else ''}.") from None

    return wrapper


pass_app = click.make_pass_decorator(App, ensure=True)


def with_db(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command body that runs with the database bound, inside one connection; it gets the Settings
    as its first argument. Put it under the click decorators."""

    @functools.wraps(fn)
    @pass_app
    @handle_errors
    def wrapper(app: App, *a: Any, **kw: Any) -> Any:
        from storage.db import database

        settings = app.open_db()
        with database.connection_context():
            return fn(settings, *a, **kw)

    return wrapper
