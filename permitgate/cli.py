"""The ``permitgate`` command: one entry point, a subcommand group per part of the system."""

from __future__ import annotations

import click

from permitgate.check_cli import check, keys, receipt
from registry.cli import registry
from server.cli import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="permitgate")
def main() -> None:
    """permitgate: a signed permit registry and the gate in front of utilities and registries."""


for command in (registry, serve, check, keys, receipt):
    main.add_command(command)
