"""The command line (CLI.md): thin commands over the runner and, for a running server,
over its HTTP client. Bad usage exits 2 with one line, a failure 1, never a traceback."""

from __future__ import annotations

import sys

import click

from storsync import __version__
from storsync.cli import control, manage
from storsync.cli.serve import serve
from storsync.cli.sync import sync
from storsync.errors import StorsyncError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="storsync")
def cli() -> None:
    """storsync keeps a local directory and a remote storage synchronized."""


for command in (sync, serve, *control.COMMANDS, *manage.COMMANDS):
    cli.add_command(command)


def main() -> None:
    """Entry point: bad usage exits 2 with one line, a failure 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("storsync: interrupted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StorsyncError as exc:
        click.echo(f"storsync: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        click.echo(f"storsync: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, never a traceback
        click.echo(f"storsync: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
