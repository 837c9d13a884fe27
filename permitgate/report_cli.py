"""``permitgate report``: the working group's reports to the city.

``permitgate report monthly --month 2026-10 [--district D] [--db URL] [--out DIR]`` writes
``report-2026-10[-D].csv`` and ``.png`` into ``--out`` (default: the current folder) and prints
where. The figures and their definitions are ``registry.monthly_report``'s; the month is the
city's (Beijing time). A month that is not ``YYYY-MM`` is bad usage (exit status 2).
"""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli import db_option, existing
from registry.monthly_report import (
    month_bounds,
    monthly_report,
    report_name,
    write_chart,
    write_csv,
)


@click.group()
def report() -> None:
    """The working group's reports (Art. 6)."""


def _month(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        month_bounds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("month: ")) from None
    return value


@report.command()
@click.option(
    "--month",
    required=True,
    callback=_month,
    metavar="YYYY-MM",
    help="The month, in the city's time (Asia/Shanghai).",
)
@click.option("--district", default=None, help="One district (default: the whole city).")
@db_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the CSV and PNG files (created if missing).",
)
def monthly(month: str, district: str | None, db_url: str | None, out_dir: Path) -> None:
    """The month's figures (Art. 6) as CSV and a PNG chart."""
    db = existing(db_url)
    try:
        figures = monthly_report(db, month, district or None)
    finally:
        db.dispose()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = report_name(month, district or None)
    csv_path, png_path = out_dir / f"{name}.csv", out_dir / f"{name}.png"
    write_csv(figures, csv_path)
    write_chart(figures, png_path)
    click.echo(f"{len(figures.figures)} figures for {month}: {csv_path} and {png_path}")
