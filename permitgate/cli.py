"""The ``permitgate`` command: one entry point, a subcommand group per part of the system.

It is also the one boundary where errors a person can act on (a database that does not exist, a
port in use, a key elsewhere) become one plain line and exit status 2: ``registry.errors``
recognises them; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import click

from permitgate.check_cli import check, keys, receipt
from permitgate.check_file import check_file
from permitgate.report_cli import report
from permitgate.watch_cli import watch
from registry.cli import registry
from registry.errors import plain_error
from server.cli import serve


class _Commands(click.Group):
    """The subcommands, with errors a person can act on printed as one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            plain = plain_error(exc)
            if plain is None:
                raise
            click.echo(f"permitgate: {plain}", err=True)
            ctx.exit(plain.exit_code)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="permitgate")
def main() -> None:
    """permitgate: a signed permit registry and the gate in front of utilities and registries."""


for command in (registry, serve, check, check_file, watch, keys, receipt, report):
    main.add_command(command)
