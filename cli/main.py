"""`workrate`: the command line of WorkRate Messages (click, Flask's own CLI library).

This module assembles the click group from the command modules and is the console script's entry
point. Every user error prints one sentence on stderr and exits 2 (cli/context.py); no traceback ever
reaches the user. The forms and JSON shapes of the commands are a contract other tools rely on (the
README lists them): extend them, never change them.
"""
from __future__ import annotations

import sys

import click

from cli import mail, people, run, thread


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """WorkRate Messages: one conversation thread per client workspace, with replies by email.

    Settings come from WORKRATE_* environment variables over config/defaults.toml (see README.md).
    """


for _module in (run, people, thread, mail):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    try:
        cli.main(prog_name="workrate")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
