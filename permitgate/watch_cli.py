"""``permitgate watch ...``: one line per change to the answer a check would get, as it happens.

A subcommand per question, as for ``permitgate check``: ``watch connection --utility water
S-1 S-2``, ``watch registration --kind transfer --district 110228``, ``watch premises --office
fire --use restaurant --all``. Each change is printed as one line (or one JSON object per line
with ``--json``) and flushed, so a pipe sees it at once. The watch runs until interrupted, or
until ``--count`` changes were printed; a dropped stream is resumed (``Client.watch``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click
import orjson
from permitgate_client import (
    CONNECTION_KINDS,
    OFFICES,
    REGISTRATION_KINDS,
    UTILITIES,
    Check,
    GateError,
    InvalidCheckError,
    StatusChange,
)
from permitgate_client.formats import format_time

from permitgate.check_cli import INVALID_CHECK, UNREACHABLE, GateAddress, _time, gate_options

WATCH_EXIT_CODES = """\b
Exit codes:
  0  --count changes printed (or interrupted)
  2  bad arguments, or a watch the gate calls invalid (it names the field)
  3  the gate could not be reached, or the watch could not be resumed"""


@click.group(epilog=WATCH_EXIT_CODES)
def watch() -> None:
    """Print every change to the answer of a check, for structures watched."""


def scope_options(command: Callable[..., None]) -> Callable[..., None]:
    """STRUCTURE_IDS, --district, --all, --count, --json: handed on as ``scope`` and the rest."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        structure_ids: tuple[str, ...],
        district: str | None,
        all_structures: bool,
        **kwargs: Any,
    ) -> None:
        chosen = sum((bool(structure_ids), district is not None, all_structures))
        if chosen != 1:
            raise click.UsageError("name STRUCTURE_IDS, or give --district or --all (one of them)")
        scope = {
            "structure_ids": list(structure_ids) if structure_ids else None,
            "district": district,
            "all_structures": all_structures,
        }
        command(*args, scope=scope, **kwargs)

    for option in (
        click.argument("structure_ids", nargs=-1),
        click.option("--district", help="Watch every structure of this district."),
        click.option("--all", "all_structures", is_flag=True, help="Watch every structure."),
        click.option(
            "--count",
            type=click.IntRange(min=1),
            help="Stop after printing this many changes.",
        ),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per line."),
    ):
        wrapper = option(wrapper)
    return wrapper


def _line(change: StatusChange) -> str:
    decision = change.decision
    reasons = ", ".join(
        r.code + (f"({r.permit_kind or r.case_id})" if r.permit_kind or r.case_id else "")
        for r in decision.reasons
    )
    until = "" if decision.valid_until is None else f" until {format_time(decision.valid_until)}"
    return (
        f"{format_time(change.at)}  {change.structure_id}  {decision.verdict.value}{until}  "
        f"{change.cause.value}  v{change.registry_version}" + (f"  {reasons}" if reasons else "")
    )


def _watch(
    gate: GateAddress, question: Check, scope: dict[str, Any], count: int | None, as_json: bool
) -> None:
    printed = 0
    try:
        with gate.client() as client:
            for change in client.watch(question, **scope):
                if as_json:
                    click.echo(orjson.dumps(change.to_json()).decode())
                else:
                    click.echo(_line(change))
                sys.stdout.flush()
                printed += 1
                if count is not None and printed >= count:
                    return
    except InvalidCheckError as exc:
        click.echo(f"permitgate: invalid watch: {exc}", err=True)
        sys.exit(INVALID_CHECK)
    except GateError as exc:
        click.echo(f"permitgate: the watch on {gate.target} ended: {exc}", err=True)
        sys.exit(UNREACHABLE)
    except KeyboardInterrupt:
        return


@watch.command(epilog=WATCH_EXIT_CODES)
@click.option("--utility", type=click.Choice(UTILITIES), required=True)
@click.option("--kind", type=click.Choice(CONNECTION_KINDS), default="permanent", show_default=True)
@click.option(
    "--until",
    "until",
    metavar="TIME",
    help="For temporary supply (then required): its end, at most 365 days ahead.",
)
@scope_options
@gate_options
def connection(
    utility: str,
    kind: str,
    until: str | None,
    scope: dict[str, Any],
    count: int | None,
    as_json: bool,
    gate: GateAddress,
) -> None:
    """May a utility connect the structures? Each change, as it happens. (Art. 23)"""
    question = Check.connection("", utility=utility, kind=kind, requested_until=_time(until))
    _watch(gate, question, scope, count, as_json)


@watch.command(epilog=WATCH_EXIT_CODES)
@click.option("--kind", type=click.Choice(REGISTRATION_KINDS), required=True)
@scope_options
@gate_options
def registration(
    kind: str, scope: dict[str, Any], count: int | None, as_json: bool, gate: GateAddress
) -> None:
    """May the housing registry register the structures? Each change. (Art. 11)"""
    _watch(gate, Check.registration("", kind=kind), scope, count, as_json)


@watch.command(epilog=WATCH_EXIT_CODES)
@click.option("--office", type=click.Choice(OFFICES), required=True)
@click.option("--use", "declared_use", required=True, help="The use declared for the premises.")
@scope_options
@gate_options
def premises(
    office: str,
    declared_use: str,
    scope: dict[str, Any],
    count: int | None,
    as_json: bool,
    gate: GateAddress,
) -> None:
    """Do the premises hold their permits for the use? Each change. (Art. 13)"""
    question = Check.premises("", office=office, declared_use=declared_use)
    _watch(gate, question, scope, count, as_json)
