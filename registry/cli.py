"""``permitgate registry ...``: the registry's command line.

Exit codes: 0 done; 1 verification found a difference; 2 bad input or usage (nothing written).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click
import orjson
from tqdm import tqdm

from registry.admin import (
    DEFAULT_ORIGIN,
    ROLE,
    RegistryRefused,
    export_lines,
    init_registry,
    latest_checkpoint_note,
    refresh_records,
    status_envelope,
)
from registry.audit import audit_registry
from registry.demo import demo_lines
from registry.importer import MAX_REPORTED_ERRORS, import_lines
from registry.notifications import iter_notifications
from registry.records import format_time
from registry.signing import DEFAULT_KEYS_DIR, KeyFileError, load_signer, load_verifier
from registry.storage import Database

db_option = click.option(
    "--db",
    "db_url",
    envvar="PERMITGATE_DB",
    default=None,
    metavar="URL",
    help="Database URL (env PERMITGATE_DB; default sqlite:///permitgate.db).",
)
keys_option = click.option(
    "--keys",
    "keys_dir",
    envvar="PERMITGATE_KEYS",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_KEYS_DIR,
    show_default=True,
    help="Directory of signing keys (env PERMITGATE_KEYS).",
)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"permitgate: {message}", err=True)
    sys.exit(code)


@click.group()
def registry() -> None:
    """The signed registry of structures, permits and violation cases."""


@registry.command()
@db_option
@keys_option
@click.option(
    "--origin",
    default=DEFAULT_ORIGIN,
    show_default=True,
    help="Checkpoint origin, also the signing key's name.",
)
def init(db_url: str | None, keys_dir: Path, origin: str) -> None:
    """Create or upgrade the registry and its signing key."""
    db = Database(db_url)
    try:
        result = init_registry(db, keys_dir, origin)
    except (KeyFileError, ValueError) as exc:
        fail(str(exc))
        return
    if result.created_key:
        click.echo(f"created signing key {keys_dir / (ROLE + '.key')} (mode 0600)")
    state = "created" if result.created_registry else "upgraded"
    click.echo(f"registry {state} at {db!r}, origin {result.origin}")
    click.echo(f"verifier key: {result.signer.verifier.text}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    yield from stream


@registry.command("import")
@click.argument("file", type=click.File("rb"))
@db_option
@keys_option
def import_(file: BinaryIO, db_url: str | None, keys_dir: Path) -> None:
    """Import JSON Lines from FILE ('-' for standard input): all or nothing."""
    try:
        signer = load_signer(keys_dir, ROLE)
    except KeyFileError as exc:
        fail(str(exc))
        return
    total = None
    try:
        info = os.fstat(file.fileno())
        total = info.st_size if stat.S_ISREG(info.st_mode) else None
    except (OSError, ValueError):
        pass
    db = Database(db_url)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc="importing",
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
        leave=False,
    ) as bar:
        try:
            report = import_lines(db, _lines(file), signer, on_chunk=bar.update)
        except RegistryRefused as exc:
            fail(str(exc))
            return
    if not report.ok:
        for error in report.errors:
            click.echo(str(error), err=True)
        more = report.error_count - len(report.errors)
        if more > 0:
            click.echo(
                f"... and {more} more errors (the first {MAX_REPORTED_ERRORS} shown)", err=True
            )
        fail(
            f"{_count(report.error_count, 'error')} in {_count(report.lines, 'line')}; "
            "nothing was imported"
        )
    if report.checkpoint is None:
        click.echo(f"{report.lines} lines, no changes; the registry is unchanged")
        return
    click.echo(
        f"{report.lines} lines: {report.changes} changes, {report.unchanged} unchanged; "
        f"registry version {report.checkpoint.size}; {report.signed} status records signed"
    )


@registry.command()
@db_option
def export(db_url: str | None) -> None:
    """Write the current state as JSON Lines to standard output."""
    db = Database(db_url)
    if not db.is_initialised():
        fail("no registry here: run 'permitgate registry init' first")
        return
    out = sys.stdout.buffer
    for line in export_lines(db):
        out.write(line)
    out.flush()


@registry.command()
@db_option
def checkpoint(db_url: str | None) -> None:
    """Print the latest signed checkpoint (a C2SP signed note)."""
    note = latest_checkpoint_note(Database(db_url))
    if note is None:
        fail("no registry here: run 'permitgate registry init' first")
        return
    sys.stdout.buffer.write(note)


@registry.command()
@click.argument("structure_id")
@db_option
def status(structure_id: str, db_url: str | None) -> None:
    """Print the signed status record (a DSSE envelope) of STRUCTURE_ID."""
    db = Database(db_url)
    if not db.is_initialised():
        fail("no registry here: run 'permitgate registry init' first")
        return
    envelope = status_envelope(db, structure_id)
    if envelope is None:
        fail(f"structure {structure_id!r} is not in the registry", 1)
        return
    sys.stdout.buffer.write(envelope + b"\n")


@registry.command()
@db_option
@keys_option
def verify(db_url: str | None, keys_dir: Path) -> None:
    """Check the log, the tables and every signed record against the registry's key."""
    try:
        key = load_verifier(keys_dir, ROLE)
    except KeyFileError as exc:
        fail(str(exc))
        return
    report = audit_registry(Database(db_url), key)
    for problem in report.problems:
        click.echo(problem, err=True)
    if not report.ok:
        fail(f"verification failed: {len(report.problems)} differences", 1)
    click.echo(
        f"ok: {report.tree_size} events match the signed checkpoint; "
        f"{report.structures} structures match their signed status records"
    )


@registry.command("demo-data")
@click.option(
    "--structures",
    default=5000,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many structures (each with its permits and cases).",
)
def demo_data(structures: int) -> None:
    """Write a demo registry as JSON Lines to standard output; every rule fires somewhere."""
    out = sys.stdout.buffer
    for record in demo_lines(structures):
        out.write(orjson.dumps(record) + b"\n")
    out.flush()


@registry.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def notifications(db_url: str | None, as_json: bool) -> None:
    """List the notifications recorded for the working group (Art. 13)."""
    db = Database(db_url)
    if not db.is_initialised():
        fail("no registry here: run 'permitgate registry init' first")
    for notice in iter_notifications(db):
        if as_json:
            click.echo(orjson.dumps(notice.to_json()).decode())
            continue
        codes = ", ".join(str(r.get("code")) for r in notice.reasons)
        click.echo(
            f"{notice.id}  {format_time(notice.created_at)}  {notice.office}  "
            f"{notice.structure_id}  application {notice.application_id or '-'}: {codes}"
        )


@registry.command()
@db_option
@keys_option
@click.option("--all", "everything", is_flag=True, help="Re-sign every record, not only those due.")
def refresh(db_url: str | None, keys_dir: Path, everything: bool) -> None:
    """Re-sign status records that expire within half their validity (run daily)."""
    try:
        signer = load_signer(keys_dir, ROLE)
    except KeyFileError as exc:
        fail(str(exc))
        return
    try:
        count = refresh_records(Database(db_url), signer, everything=everything)
    except RegistryRefused as exc:
        fail(str(exc))
        return
    click.echo(f"{count} status records re-signed")
