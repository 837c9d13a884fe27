"""``permitgate serve``: run the gate.

Before anything starts, the options are checked (``--listen`` by ``server.listen``), the database
must hold a registry whose log and newest checkpoint agree, the port must be free, and the state
directory (``--state``) must not be another gate's, and what it holds must verify with the
registry key; each failure is one plain line and exit status 2 (``SERVE_EXIT_CODES``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import uvloop

from registry.admin import require_registry
from registry.cli import db_option, keys_option
from registry.errors import PlainError
from registry.storage import Database
from server.app import DEFAULT_AUDIT_INTERVAL, DEFAULT_MAX_CONCURRENT_RPCS, GateApp, TlsFiles
from server.listen import (
    ListenError,
    bind_failure,
    check_free,
    parse_listen,
    serve_until_signalled,
)
from server.receipts import DEFAULT_GATE_NAME

log = logging.getLogger("permitgate")

SERVE_EXIT_CODES = """\b
Exit codes:
  0  stopped by SIGINT or SIGTERM, calls in flight finished
  2  bad options, keys, database or address (one line says why); the gate did not start"""


async def _serve(**options: object) -> None:
    app = await GateApp.create(**options)  # type: ignore[arg-type]
    await serve_until_signalled(app, log)


@click.command(epilog=SERVE_EXIT_CODES)
@db_option
@keys_option
@click.option(
    "--listen",
    default="127.0.0.1:50051",
    show_default=True,
    help="HOST:PORT to listen on ([IPv6]:PORT; 0.0.0.0:PORT: every interface; port 0: any).",
)
@click.option(
    "--max-staleness",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds after the registry last cosigned the head the gate holds beyond which "
    "checks answer REVIEW (REGISTRY_STALE).",
)
@click.option(
    "--poll-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between looks at the registry for changes.",
)
@click.option(
    "--audit-interval",
    default=DEFAULT_AUDIT_INTERVAL,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between re-reads of every status record, which log and count the records "
    "altered in the database since verified (the gate answers from the verified ones); "
    "0: never.",
)
@click.option(
    "--gate-name",
    default=DEFAULT_GATE_NAME,
    show_default=True,
    help="Name of the gate's receipt-signing key (created in --keys when absent).",
)
@click.option(
    "--state",
    "--state-dir",
    "state_dir",
    envvar="PERMITGATE_GATE_STATE",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the gate's own files (env PERMITGATE_GATE_STATE; one gate each): its "
    "verified state (gate.sqlite: the registry head it holds and that head's status map, so a "
    "restarted gate never goes back to an older head), and decision-log records the database "
    "refused (refused.jsonl) or that were unwritten at shutdown (unwritten.jsonl, written first "
    "at the next start). Default: 'state' beside the --keys directory.",
)
@click.option(
    "--max-concurrent-rpcs",
    default=DEFAULT_MAX_CONCURRENT_RPCS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Calls in flight (BatchCheck streams and health checks included) beyond which new "
    "calls get RESOURCE_EXHAUSTED.",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Require client certificates signed by this CA (mutual TLS).",
)
def serve(
    db_url: str | None,
    keys_dir: Path,
    listen: str,
    max_staleness: float,
    poll_interval: float,
    audit_interval: float,
    gate_name: str,
    state_dir: Path | None,
    max_concurrent_rpcs: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
) -> None:
    """Run the gate: answer checks over gRPC from the signed registry."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    tls = (
        None if tls_cert is None or tls_key is None else TlsFiles(tls_cert, tls_key, tls_client_ca)
    )
    address = parse_listen(listen)
    db = Database(db_url, create=False)  # a gate never creates a registry
    try:
        require_registry(db)
    finally:
        db.dispose()
    check_free(address)
    listen = str(address)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        uvloop.run(
            _serve(
                db_url=db_url,
                keys_dir=keys_dir,
                listen=listen,
                max_staleness=max_staleness,
                poll_interval=poll_interval,
                audit_interval=audit_interval or None,
                tls=tls,
                gate_name=gate_name,
                state_dir=state_dir,
                max_concurrent_rpcs=max_concurrent_rpcs,
            )
        )
    except OSError as exc:  # a key directory or state directory it cannot write, say
        raise PlainError(str(exc)) from exc
    except RuntimeError as exc:  # gRPC's bind failed after check_free passed (a race)
        if not str(exc).startswith("Failed to bind"):
            raise
        why = bind_failure(address) or "gRPC could not bind it"
        raise ListenError(f"cannot listen on {address}: {why}") from exc
