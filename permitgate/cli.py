"""The ``permitgate`` command: one entry point, a subcommand group per part of the system."""

from __future__ import annotations

import click

from registry.cli import registry


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="permitgate")
def main() -> None:
    """permitgate: a signed permit registry and the gate in front of utilities and registries."""


main.add_command(registry)
