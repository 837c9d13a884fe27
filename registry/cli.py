"""``permitgate registry ...``: the registry's command line.

Exit codes (``EXIT_CODES`` below, shown in ``--help``): 0 done; 1 ``verify`` found a difference,
or ``status`` found no such structure or a record whose signature fails; 2 bad input, bad usage,
or a database, key or registry that cannot be used as asked (nothing written). Errors of the last
kind are raised, not caught here: ``permitgate.cli`` prints them as one line (``registry.errors``).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click
import orjson
import uvloop
from permitgate_client import VerifierKey
from permitgate_client._statements import DepartmentKey
from tqdm import tqdm

from registry.admin import (
    DEFAULT_ORIGIN,
    ROLE,
    NotInitialised,
    default_state_dir,
    export_lines,
    init_registry,
    latest_checkpoint_note,
    load_registry_signer,
    status_envelope,
)
from registry.audit import audit_registry
from registry.demo import demo_lines
from registry.department_keys import (
    enrol_department,
    list_departments,
    load_department_key,
    revoke_department,
    rotate_department_key,
)
from registry.departments import Role
from registry.errors import PlainError
from registry.importer import MAX_REPORTED_ERRORS, import_lines
from registry.notifications import iter_notifications
from registry.publisher import redis_client
from registry.records import format_time
from registry.redis_layout import DEFAULT_PREFIX
from registry.service import (
    DEFAULT_DEPARTMENTS_LISTEN,
    DEFAULT_HEARTBEAT,
    DEFAULT_LISTEN,
    DEFAULT_REFRESH_EVERY,
    DepartmentTls,
    serve_until_signalled,
)
from registry.signing import DEFAULT_KEYS_DIR, load_verifier
from registry.snapshot import write_snapshot
from registry.status_view import Signature, read_status_view
from registry.storage import Database
from registry.vouch import DEFAULT_DAYS, MAX_DAYS, list_gate_keys, retire_gate_key, vouch_gate_key
from registry.writer import refresh_records
from server.listen import ListenError, bind_failure, check_free, parse_listen

db_option = click.option(
    "--db",
    "db_url",
    envvar="PERMITGATE_DB",
    default=None,
    metavar="URL",
    help="Database URL (env PERMITGATE_DB; default sqlite:///permitgate.db).",
)
state_option = click.option(
    "--state",
    "state_dir",
    envvar="PERMITGATE_REGISTRY_STATE",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The registry's own verified state (env PERMITGATE_REGISTRY_STATE; default "
    "registry-state beside the keys directory). Keep it with the private key, apart from "
    "the database.",
)


def registry_state_dir(keys_dir: Path, state_dir: Path | None) -> Path:
    """``--state``, else ``registry-state`` beside the keys directory."""
    return default_state_dir(keys_dir) if state_dir is None else state_dir


keys_option = click.option(
    "--keys",
    "keys_dir",
    envvar="PERMITGATE_KEYS",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_KEYS_DIR,
    show_default=True,
    help="Directory of signing keys (env PERMITGATE_KEYS).",
)


EXIT_CODES = """\b
Exit codes:
  0  done
  1  'verify' found a difference; 'status' found no such structure, or a
     record whose signature fails
  2  bad input or usage, or a database, key or registry that cannot be used
     as asked (one line says why); nothing was written"""


def fail(message: str, code: int = 2) -> None:
    click.echo(f"permitgate: {message}", err=True)
    sys.exit(code)


def existing(db_url: str | None) -> Database:
    """The database of a read-only command: it must hold a registry, and is never created."""
    db = Database(db_url, create=False)
    if not db.is_initialised():
        raise NotInitialised("no registry here: run 'permitgate registry init' first")
    return db


class _EchoWarnings(logging.Handler):
    """The registry's warnings (a state rebuilt from the database) as lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"permitgate: warning: {record.getMessage()}", err=True)


@click.group(epilog=EXIT_CODES)
@click.pass_context
def registry(ctx: click.Context) -> None:
    """The signed registry of structures, permits and violation cases.

    The database is --db, else PERMITGATE_DB, else sqlite:///permitgate.db (SQLite files
    or postgresql://USER@HOST/NAME; a PostgreSQL database must be created first, e.g. with
    createdb NAME). Only 'init' creates one; 'import' and 'refresh' change it.
    """
    handler, logger = _EchoWarnings(logging.WARNING), logging.getLogger("registry")
    logger.addHandler(handler)
    ctx.call_on_close(lambda: logger.removeHandler(handler))


@registry.command(epilog=EXIT_CODES)
@db_option
@keys_option
@state_option
@click.option(
    "--origin",
    default=None,
    help=f"Checkpoint origin, also the signing key's name (default {DEFAULT_ORIGIN}); fixed "
    "once the registry exists.",
)
def init(db_url: str | None, keys_dir: Path, state_dir: Path | None, origin: str | None) -> None:
    """Create or upgrade the registry, its signing key and its own state."""
    db = Database(db_url)
    result = init_registry(db, keys_dir, origin, state_dir=registry_state_dir(keys_dir, state_dir))
    if result.created_key:
        click.echo(f"created signing key {keys_dir / (ROLE + '.key')} (mode 0600)")
    state = "created" if result.created_registry else "upgraded"
    click.echo(f"registry {state} at {db!r}, origin {result.origin}")
    click.echo(f"verifier key: {result.signer.verifier.text}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    yield from stream


@registry.command("import", epilog=EXIT_CODES)
@click.argument("file", type=click.File("rb"))
@db_option
@keys_option
@state_option
def import_(file: BinaryIO, db_url: str | None, keys_dir: Path, state_dir: Path | None) -> None:
    """Import JSON Lines from FILE ('-' for standard input): all or nothing.

    UTF-8 text, one record a line (a byte-order mark is allowed); every error is reported as
    'line N: field: why'. An id given twice in one file is an error.
    """
    db = Database(db_url, create=False)
    signer = load_registry_signer(db, keys_dir)
    total = None
    try:
        info = os.fstat(file.fileno())
        total = info.st_size if stat.S_ISREG(info.st_mode) else None
    except (OSError, ValueError):
        pass
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc="importing",
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
        leave=False,
    ) as bar:
        report = import_lines(
            db,
            _lines(file),
            signer,
            state_dir=registry_state_dir(keys_dir, state_dir),
            on_chunk=bar.update,
        )
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
    else:
        click.echo(
            f"{report.lines} lines: {report.changes} changes, {report.unchanged} unchanged; "
            f"registry version {report.checkpoint.size}; {report.signed} status records signed"
        )
    if report.unknown_uses:
        examples = ", ".join(repr(use) for use in report.unknown_use_examples)
        click.echo(
            f"{_count(report.unknown_uses, 'use')} matched no category (kept as written): "
            f"{examples}{', ...' if report.more_unknown_uses else ''}"
        )


@registry.command(epilog=EXIT_CODES)
@db_option
def export(db_url: str | None) -> None:
    """Write the current state as JSON Lines to standard output."""
    out = sys.stdout.buffer
    for line in export_lines(existing(db_url)):
        out.write(line)
    out.flush()


@registry.command(epilog=EXIT_CODES)
@db_option
def checkpoint(db_url: str | None) -> None:
    """Print the latest signed checkpoint (a C2SP signed note)."""
    note = latest_checkpoint_note(existing(db_url))
    if note is None:
        raise NotInitialised("this registry has no signed checkpoint")
    sys.stdout.buffer.write(note)


@registry.command(epilog=EXIT_CODES)
@click.argument("structure_id")
@db_option
@keys_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the envelope as signed, the decoded record and the signature's status as JSON.",
)
def status(structure_id: str, db_url: str | None, keys_dir: Path, as_json: bool) -> None:
    """Show the signed status record of STRUCTURE_ID: the structure, its permits and cases.

    The signature is checked with the registry's public key (registry.pub in --keys); without
    that file the record is shown as not checked.
    """
    envelope = status_envelope(existing(db_url), structure_id)
    if envelope is None:
        fail(f"structure {structure_id!r} is not in the registry", 1)
        return
    key_file = keys_dir / f"{ROLE}.pub"
    key = load_verifier(keys_dir, ROLE) if key_file.exists() else None
    view = read_status_view(structure_id, envelope, key, key_file)
    if as_json:
        click.echo(orjson.dumps(view.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        for line in view.lines():
            click.echo(line)
    if view.signature is Signature.FAILED:
        sys.exit(1)


@registry.command(epilog=EXIT_CODES)
@db_option
@keys_option
@state_option
def verify(db_url: str | None, keys_dir: Path, state_dir: Path | None) -> None:
    """Check the heads, the log, the status map, every signed record and the tables against
    the registry's key, and against the registry's state when it is there (a database older
    than the state is named as rolled back)."""
    if not (keys_dir / f"{ROLE}.pub").exists():
        raise PlainError(
            f"{keys_dir / (ROLE + '.pub')} does not exist: 'verify' checks the registry against "
            "its public key; pass --keys the folder that holds it"
        )
    key = load_verifier(keys_dir, ROLE)
    report = audit_registry(
        Database(db_url, create=False), key, state_dir=registry_state_dir(keys_dir, state_dir)
    )
    for problem in report.problems:
        click.echo(problem, err=True)
    if not report.ok:
        fail(f"verification failed: {len(report.problems)} differences", 1)
    click.echo(
        f"ok: {report.tree_size} events match the signed checkpoint; "
        f"{report.structures} structures match their signed status records"
        + (
            f"; {report.statements} department statements verify with the keys their "
            "departments held"
            if report.statements
            else ""
        )
    )


@registry.command("demo-data", epilog=EXIT_CODES)
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


@registry.command(epilog=EXIT_CODES)
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def notifications(db_url: str | None, as_json: bool) -> None:
    """List the notifications recorded for the working group (Art. 13)."""
    for notice in iter_notifications(existing(db_url)):
        if as_json:
            click.echo(orjson.dumps(notice.to_json()).decode())
            continue
        codes = ", ".join(str(r.get("code")) for r in notice.reasons)
        click.echo(
            f"{notice.id}  {format_time(notice.created_at)}  {notice.office}  "
            f"{notice.structure_id}  application {notice.application_id or '-'}: {codes}"
        )


@registry.command(epilog=EXIT_CODES)
@db_option
@keys_option
@state_option
@click.option("--all", "everything", is_flag=True, help="Re-sign every record, not only those due.")
def refresh(db_url: str | None, keys_dir: Path, state_dir: Path | None, everything: bool) -> None:
    """Re-sign status records that expire within half their validity (run daily)."""
    db = Database(db_url, create=False)
    count = refresh_records(
        db,
        load_registry_signer(db, keys_dir),
        state_dir=registry_state_dir(keys_dir, state_dir),
        everything=everything,
    )
    click.echo(f"{count} status records re-signed")


@registry.command(epilog=EXIT_CODES)
@click.argument(
    "gate_pub",
    required=False,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
)
@click.option(
    "--days",
    default=DEFAULT_DAYS,
    show_default=True,
    type=click.IntRange(1, MAX_DAYS),
    help="How long the statement holds, from now.",
)
@click.option(
    "--retire",
    "retire",
    metavar="KEYID",
    help="End the validity of this gate key now (name+keyid, or its 8 hex digits).",
)
@click.option("--list", "listing", is_flag=True, help="List the gate keys vouched for.")
@db_option
@keys_option
def vouch(
    gate_pub: Path | None,
    days: int,
    retire: str | None,
    listing: bool,
    db_url: str | None,
    keys_dir: Path,
) -> None:
    """Vouch for a gate's receipt key (its GATE_PUB file, e.g. keys/gate.pub) for --days.

    The statement, signed with the registry key, is stored in the database; the gate reads it
    (at start, then every minute) and puts it into every receipt, so that receipts verify with
    the registry's public key alone. Run it again to renew; --retire KEYID ends a key's
    validity now (receipts decided before still verify).
    """
    if sum((gate_pub is not None, retire is not None, listing)) != 1:
        raise click.UsageError("give one of GATE_PUB, --retire KEYID or --list")
    db = existing(db_url)
    if listing:
        for stored in list_gate_keys(db, load_verifier(keys_dir, ROLE)):
            if stored.statement is None:
                click.echo(f"{stored.key_id}  NOT VERIFIED: {stored.problem}")
                continue
            click.echo(
                f"{stored.key_id}  from {format_time(stored.statement.not_before)} "
                f"until {format_time(stored.statement.not_after)}"
            )
        return
    signer = load_registry_signer(db, keys_dir)
    if retire is not None:
        retired = retire_gate_key(db, signer, retire)
        click.echo(
            f"gate key {retired.gate_key.keyid_text} retired: vouched for until "
            f"{format_time(retired.not_after)} (receipts decided before then still verify)"
        )
        return
    assert gate_pub is not None
    try:
        gate_key = VerifierKey.from_text(gate_pub.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise PlainError(f"{gate_pub}: not a verifier key file ({exc})") from exc
    statement = vouch_gate_key(db, signer, gate_key, days=days)
    click.echo(
        f"gate key {gate_key.keyid_text} vouched for from {format_time(statement.not_before)} "
        f"until {format_time(statement.not_after)}; the gate takes it up within a minute"
    )


@registry.command(epilog=EXIT_CODES)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--district",
    default=None,
    help="Only this district's structures (a check for another id then answers REVIEW).",
)
@db_option
@keys_option
@state_option
def snapshot(
    out: Path, district: str | None, db_url: str | None, keys_dir: Path, state_dir: Path | None
) -> None:
    """Write an offline snapshot to OUT: the newest cosigned head, then each structure's signed
    status record with its proof in the head's status map (JSON Lines).

    Everything is verified before a byte is written: the head with the registry's public key
    (registry.pub in --keys), the records by rebuilding the status map and comparing its root
    with the head's. A database that does not verify gets no snapshot. Check against it with
    'permitgate check ... --snapshot OUT'.
    """
    report = write_snapshot(
        existing(db_url),
        load_verifier(keys_dir, ROLE),
        out,
        district=district,
        state_dir=registry_state_dir(keys_dir, state_dir),
    )
    head = report.head
    cosigned = "never" if head.cosigned_at is None else format_time(head.cosigned_at)
    which = "every district" if district is None else f"district {district}"
    click.echo(
        f"wrote {out}: registry version {head.size} (head {head.map.serial}, cosigned "
        f"{cosigned}); {report.records} of {report.total} structures ({which})"
    )


SERVICE_EXIT_CODES = """\b
Exit codes:
  0  stopped by SIGINT or SIGTERM, calls in flight finished
  2  bad options, keys, database or address (one line says why); the service did not start"""


@registry.command(epilog=SERVICE_EXIT_CODES)
@db_option
@keys_option
@state_option
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    help="HOST:PORT to listen on ([IPv6]:PORT; 0.0.0.0:PORT: every interface; port 0: any).",
)
@click.option(
    "--heartbeat",
    default=DEFAULT_HEARTBEAT,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between cosignatures of the newest head (and looks for a newer one).",
)
@click.option(
    "--refresh-every",
    default=DEFAULT_REFRESH_EVERY,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between re-signings of the status records due (also done at start).",
)
@click.option(
    "--redis",
    "redis_url",
    envvar="PERMITGATE_REDIS",
    default=None,
    metavar="URL",
    help="Also publish the verified registry to this Redis for gates to share, at each "
    "heartbeat (env PERMITGATE_REDIS; e.g. redis://127.0.0.1:6379/0). Redis being down never "
    "stops the service.",
)
@click.option(
    "--redis-prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="Prefix of the registry's keys in Redis (several registries can share one).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The service's TLS certificate (PEM), for departments' mutual TLS.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Its private key (PEM).",
)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The CA that issues departments' client certificates (subject O = department id).",
)
@click.option(
    "--departments-listen",
    default=DEFAULT_DEPARTMENTS_LISTEN,
    show_default=True,
    help="HOST:PORT where departments call over mutual TLS (with --tls-cert, --tls-key and "
    "--client-ca; port 0: any).",
)
@click.option(
    "--web-listen",
    default=None,
    metavar="HOST:PORT",
    help="Also serve the working group's page, read-only over HTTPS with --tls-cert and "
    "--tls-key, on HOST:PORT (port 0: any).",
)
def serve(
    db_url: str | None,
    keys_dir: Path,
    state_dir: Path | None,
    listen: str,
    heartbeat: float,
    refresh_every: float,
    redis_url: str | None,
    redis_prefix: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    departments_listen: str,
    web_listen: str | None,
) -> None:
    """Run the registry service: keep the newest head cosigned, and serve heads, status records
    with their map proofs, and consistency proofs over gRPC (permitgate.v1.Registry). With
    --redis, also publish the verified heads, records and proofs' data to Redis, where gates
    read them (and check them against the signed head). With --tls-cert, --tls-key and
    --client-ca, departments write and read over mutual TLS on --departments-listen. With
    --web-listen too, the working group's page is served there over HTTPS."""
    address = parse_listen(listen)
    given = [tls_cert is not None, tls_key is not None, client_ca is not None]
    if any(given) and not all(given):
        fail("--tls-cert, --tls-key and --client-ca go together (departments' mutual TLS)")
    tls = None
    departments_address = None
    if tls_cert is not None and tls_key is not None and client_ca is not None:
        tls = DepartmentTls(tls_cert, tls_key, client_ca)
        departments_address = parse_listen(departments_listen)
    web_address = None if web_listen is None else parse_listen(web_listen)
    if web_address is not None and tls is None:
        fail("--web-listen needs --tls-cert, --tls-key and --client-ca (the page is HTTPS only)")
    if redis_url is not None:
        try:
            redis_client(redis_url).close()
        except ValueError as exc:
            fail(f"--redis {redis_url!r}: {exc}")
    db = Database(db_url, create=False)  # the service never creates a registry
    try:
        load_registry_signer(db, keys_dir)  # initialised, and this is its key
    finally:
        db.dispose()
    check_free(address)
    if departments_address is not None:
        check_free(departments_address)
    if web_address is not None:
        check_free(web_address)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        uvloop.run(
            serve_until_signalled(
                db_url=db_url,
                keys_dir=keys_dir,
                state_dir=registry_state_dir(keys_dir, state_dir),
                listen=str(address),
                heartbeat=heartbeat,
                refresh_every=refresh_every,
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                tls=tls,
                departments_listen=str(departments_address or DEFAULT_DEPARTMENTS_LISTEN),
                web_listen=None if web_address is None else str(web_address),
            )
        )
    except RuntimeError as exc:  # gRPC's bind failed after check_free passed (a race)
        if not str(exc).startswith("Failed to bind"):
            raise
        why = bind_failure(address) or "gRPC could not bind it"
        raise ListenError(f"cannot listen on {address}: {why}") from exc


@registry.group(epilog=EXIT_CODES)
def department() -> None:
    """The departments that write as themselves: enrol one with its key, rotate or revoke the
    key, list them. Each change is an event in the registry's log, signed into a head; the
    directory itself is kept in the registry's own state (--state), never in the database."""


@department.command("enrol", epilog=EXIT_CODES)
@click.option("--id", "department_id", required=True, help="The department's id (an id).")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in Role]),
    help="What it is, which fixes what it may write.",
)
@click.option("--name", required=True, help="Its name, for people.")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Its verifier key file (ID.pub, from 'department keygen').",
)
@db_option
@keys_option
@state_option
def department_enrol(
    department_id: str,
    role: str,
    name: str,
    key_file: Path,
    db_url: str | None,
    keys_dir: Path,
    state_dir: Path | None,
) -> None:
    """Enrol a department with its first key."""
    db = existing(db_url)
    key = load_department_key(key_file, department_id)
    entry = enrol_department(
        db,
        load_registry_signer(db, keys_dir),
        registry_state_dir(keys_dir, state_dir),
        department_id=department_id,
        role=role,
        name=name,
        key=key,
    )
    click.echo(
        f"enrolled {entry.id} ({entry.role}, {entry.name}) with key {key.keyid_text} at "
        f"event {entry.seq}"
    )


@department.command("rotate", epilog=EXIT_CODES)
@click.option("--id", "department_id", required=True, help="The department's id.")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Its new verifier key file.",
)
@db_option
@keys_option
@state_option
def department_rotate(
    department_id: str, key_file: Path, db_url: str | None, keys_dir: Path, state_dir: Path | None
) -> None:
    """Give a department a new key; the old one is refused from now on."""
    db = existing(db_url)
    key = load_department_key(key_file, department_id)
    entry = rotate_department_key(
        db,
        load_registry_signer(db, keys_dir),
        registry_state_dir(keys_dir, state_dir),
        department_id=department_id,
        key=key,
    )
    click.echo(f"{entry.id}: key {key.keyid_text} from event {entry.seq} on")


@department.command("revoke", epilog=EXIT_CODES)
@click.option("--id", "department_id", required=True, help="The department's id.")
@click.option("--reason", default=None, help="Why (kept in the log).")
@db_option
@keys_option
@state_option
def department_revoke(
    department_id: str,
    reason: str | None,
    db_url: str | None,
    keys_dir: Path,
    state_dir: Path | None,
) -> None:
    """Revoke a department's key: its writes are refused from now on; earlier ones still
    verify."""
    db = existing(db_url)
    entry = revoke_department(
        db,
        load_registry_signer(db, keys_dir),
        registry_state_dir(keys_dir, state_dir),
        department_id=department_id,
        reason=reason,
    )
    click.echo(f"{entry.id}: key {entry.verifier().keyid_text} revoked at event {entry.seq}")


@department.command("list", epilog=EXIT_CODES)
@db_option
@keys_option
@state_option
def department_list(db_url: str | None, keys_dir: Path, state_dir: Path | None) -> None:
    """List the departments: id, role, name, key id, state."""
    db = existing(db_url)
    entries = list_departments(
        db, load_registry_signer(db, keys_dir), registry_state_dir(keys_dir, state_dir)
    )
    rows = [("ID", "ROLE", "NAME", "KEY ID", "STATE")]
    rows += [(e.id, e.role, e.name, e.verifier().keyid_text, e.state) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4]
        )


@department.command("keygen", epilog=EXIT_CODES)
@click.option("--id", "department_id", required=True, help="The department's id.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for ID.key (mode 0600) and ID.pub.",
)
def department_keygen(department_id: str, out: Path) -> None:
    """Make a department's signing key: OUT/ID.key and OUT/ID.pub (enrol the .pub)."""
    try:
        path = DepartmentKey.generate(department_id).save(out)
    except FileExistsError:
        fail(f"{out / (department_id + '.key')} exists already; not overwritten")
        return
    click.echo(f"wrote {path} and {path.with_suffix('.pub')}")
