"""``permitgate serve``: run the gate, in one process or in ``--workers N``.

Before anything starts, the options are checked (``--listen`` by ``server.listen``), the database
must hold a registry whose log and newest checkpoint agree, the port must be free, and the state
directory (``--state``) must not be another gate's, and what it holds must verify with the
registry key; each failure is one plain line and exit status 2 (``SERVE_EXIT_CODES``).

With ``--workers N`` above 1, those checks run once, in the supervisor (``server.workers``),
which also creates the gate's key if absent (N workers would race to), then forks the workers;
no gRPC object exists before the fork. Each worker builds its own gate on the same port. Port
0 is refused above one worker: each would bind a free port of its own, and a port picked by the
supervisor instead would be free for any program again between its pick and the workers' binds
(and whenever every worker is being restarted) unless the supervisor kept a socket on it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
import uvloop

from registry.admin import ROLE as REGISTRY_ROLE
from registry.admin import require_registry
from registry.cli import db_option, keys_option
from registry.errors import PlainError, plain_error
from registry.redis_layout import DEFAULT_PREFIX
from registry.signing import ensure_signer, load_verifier
from registry.storage import Database
from server.app import (
    DEFAULT_AUDIT_INTERVAL,
    DEFAULT_MAX_CONCURRENT_RPCS,
    GateApp,
    TlsFiles,
    default_state_dir,
)
from server.listen import (
    ListenAddress,
    ListenError,
    bind_failure,
    check_free,
    parse_listen,
    serve_until_signalled,
)
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE
from server.shared_cache import DEFAULT_CACHE_SIZE
from server.workers import Supervisor, SupervisorLink, hold_state, linked, worker_state_dir

log = logging.getLogger("permitgate")

DEFAULT_WORKERS = 1
"""One process unless asked: see ``--workers`` in the README for the figures behind it."""

SERVE_EXIT_CODES = """\b
Exit codes:
  0  stopped by SIGINT or SIGTERM, calls in flight finished
  1  with --workers: a worker kept failing to start, or did not stop cleanly
  2  bad options, keys, database or address (one line says why); the gate did not start"""


def _log_format(who: str) -> str:
    return f"%(asctime)s %(levelname)s {who}%(message)s"


async def _serve(link: SupervisorLink | None, **options: object) -> None:
    app = await GateApp.create(**options)  # type: ignore[arg-type]
    await serve_until_signalled(app if link is None else linked(app, link), log)


def _run_gate(address: ListenAddress, link: SupervisorLink | None, **options: object) -> None:
    """Serve until signalled, gRPC's failures turned into plain lines."""
    try:
        uvloop.run(_serve(link, listen=str(address), **options))
    except OSError as exc:  # a key directory or state directory it cannot write, say
        raise PlainError(str(exc)) from exc
    except RuntimeError as exc:  # gRPC's bind failed after check_free passed (a race)
        if not str(exc).startswith("Failed to bind"):
            raise
        why = bind_failure(address) or "gRPC could not bind it"
        raise ListenError(f"cannot listen on {address}: {why}") from exc


def _run_workers(
    count: int, address: ListenAddress, state_dir: Path, options: dict[str, object]
) -> int:
    """The supervisor's part: hold the state directory, fork ``count`` workers, keep them."""

    def work(number: int, link: SupervisorLink) -> int:
        logging.basicConfig(
            level=logging.INFO, format=_log_format(f"worker {number}: "), force=True
        )
        try:
            _run_gate(
                address,
                link,
                state_dir=worker_state_dir(state_dir, number),
                reuse_port=True,
                **options,
            )
        except Exception as exc:
            plain = plain_error(exc)
            if plain is None:
                raise
            click.echo(f"permitgate: worker {number}: {plain}", err=True)
            return plain.exit_code
        return 0

    with hold_state(state_dir):
        log.info("starting %d workers on %s (state %s/worker-N)", count, address, state_dir)
        return Supervisor(count, work).run()


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
    default=0.25,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between looks at the registry for changes (a department's write reaches "
    "the gate within this, plus the time to verify it).",
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
    help="Calls in flight (BatchCheck streams and health checks included; per worker) beyond "
    "which new calls get RESOURCE_EXHAUSTED.",
)
@click.option(
    "--workers",
    default=DEFAULT_WORKERS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Gate processes sharing the port (SO_REUSEPORT; the kernel spreads connections, not "
    "calls, among them): one core each. Each has its own state directory, --state/worker-K, "
    "and its own copy of the registry in memory; a supervisor restarts any that dies. Above "
    "1, --listen needs a fixed port.",
)
@click.option(
    "--redis",
    "redis_url",
    envvar="PERMITGATE_REDIS",
    default=None,
    metavar="URL",
    help="Shared mode (env PERMITGATE_REDIS): follow the registry through the Redis the "
    "registry service publishes to (redis://HOST:PORT/DB), holding the map top and at most "
    "--cache-size verified records in memory; the database is read only when Redis fails or "
    "lies. Without it, the gate holds every record.",
)
@click.option(
    "--redis-prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="Prefix of the registry's keys in Redis (as the registry service publishes them).",
)
@click.option(
    "--cache-size",
    default=DEFAULT_CACHE_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --redis: structures (records or verified absences) held in memory, at most.",
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
    workers: int,
    redis_url: str | None,
    redis_prefix: str,
    cache_size: int,
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
    if workers > 1 and address.port == 0:
        raise click.UsageError(
            f"--listen {listen}: port 0 would give each of the {workers} workers a port of its "
            "own; give a fixed port with --workers"
        )
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise click.UsageError(
            f"--redis {redis_url}: give a redis://HOST:PORT/DB, rediss:// or unix:// URL"
        )
    db = Database(db_url, create=False)  # a gate never creates a registry
    try:
        require_registry(db)
    finally:
        db.dispose()
    check_free(address)
    options: dict[str, object] = {
        "db_url": db_url,
        "keys_dir": keys_dir,
        "max_staleness": max_staleness,
        "poll_interval": poll_interval,
        "audit_interval": audit_interval or None,
        "tls": tls,
        "gate_name": gate_name,
        "max_concurrent_rpcs": max_concurrent_rpcs,
    }
    if redis_url:
        options.update(redis_url=redis_url, redis_prefix=redis_prefix, cache_size=cache_size)
    if workers == 1:
        logging.basicConfig(level=logging.INFO, format=_log_format(""))
        _run_gate(address, None, state_dir=state_dir, **options)
        return
    load_verifier(keys_dir, REGISTRY_ROLE)  # one plain line now, not one per worker
    ensure_signer(keys_dir, GATE_ROLE, gate_name)  # once, before N workers race to create it
    logging.basicConfig(level=logging.INFO, format=_log_format("supervisor: "))
    cores = os.cpu_count() or 1
    if workers > cores:
        log.warning("%d workers on %d cores: they compete for the same cores", workers, cores)
    state_dir = default_state_dir(keys_dir) if state_dir is None else state_dir
    status = _run_workers(workers, address, state_dir, options)
    if status != 0:
        raise SystemExit(status)
