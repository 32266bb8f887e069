"""`workrate init-db | run | smtp | web | worker`: create the schema and run the product's roles."""
from __future__ import annotations

import click

from cli.context import App, handle_errors, pass_app


@click.command("init-db")
@pass_app
@handle_errors
def init_db(app: App) -> None:
    """Create or upgrade the database schema (other commands do this too when needed)."""
    from storage import db, migrations

    db.bind(app.settings)
    db.check_connection()
    applied = migrations.migrate()
    click.echo(f"Schema at version {migrations.LATEST_VERSION}" + (f" (applied {applied})." if applied else "."))


@click.command("run")
@click.option("--demo", is_flag=True, help="Add a sample workspace and people, and print sign-in links.")
@pass_app
@handle_errors
def run_all(app: App, demo: bool) -> None:
    """Run everything in one process: SMTP gateway, web app and outgoing-mail worker."""
    from cli.processes import run_roles

    settings = app.open_db()
    if demo:
        from cli.demo import create_demo

        create_demo(settings, echo=click.echo)
    else:
        from web.setup import announce_setup

        announce_setup(settings, echo=click.echo)  # on a database without a team: the setup URL
    run_roles(settings, smtp=True, web=True, worker=True)


@click.command("smtp")
@click.option("--processes", type=click.IntRange(min=0), default=None,
              help="Gateway processes sharing the port (SO_REUSEPORT); 0: one per CPU core. "
                   "Default: WORKRATE_SMTP_PROCESSES.")
@pass_app
@handle_errors
def run_smtp(app: App, processes: int | None) -> None:
    """Run the SMTP gateway alone (any number of them against PostgreSQL)."""
    from cli.processes import run_roles

    settings = app.open_db()
    if processes is not None:
        settings = settings.replace(smtp_processes=processes)
    run_roles(settings, smtp=True)


@click.command("web")
@pass_app
@handle_errors
def run_web(app: App) -> None:
    """Run the web app alone, on the production WSGI server."""
    from cli.processes import run_roles

    run_roles(app.open_db(), web=True)


@click.command("worker")
@pass_app
@handle_errors
def run_worker(app: App) -> None:
    """Run the outgoing-mail worker alone (several may run at once)."""
    from cli.processes import run_roles

    run_roles(app.open_db(), worker=True)


COMMANDS = [init_db, run_all, run_smtp, run_web, run_worker]
