"""Assembling and running the gate: keys, state, cache, follower, decision log, gRPC server.

This is the one place that picks implementations: the registry feed the gate reads (``SqlFeed``)
and the sinks it writes to (``SqlDecisionStore``, ``SqlNotificationStore``), all on the registry
database. ``GateApp.create`` builds everything and binds the port (port 0 picks a free one, for
tests); ``start`` serves at once and loads the registry in the background, health NOT_SERVING
until that first verified load (checks meanwhile get REVIEW at best); ``first_poll`` waits.
``stop`` turns health to NOT_SERVING first, lets calls in flight finish, and writes the rest of
the decision log (keeping in the state directory what cannot be written).

With ``redis_url`` the gate runs in shared mode: many gates, one shared cache. It holds the
registry's map top and a bounded L1 of records (``server.shared_cache``), follows heads through
Redis (``server.shared_follower``), and reads the database only when Redis fails or lies; the
state directory then holds the head it follows and the log's frontier at it.

The state directory holds the gate's own verified state (``gate.sqlite``: the head it holds and
that head's status map, see ``server.verifier``) beside the decision log's files. One gate uses
it at a time: it holds the directory's lock (``gate.lock``) from ``create`` to ``stop``.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from permitgate_client import VerifierKey
from permitgate_client.v1 import gate_pb2 as pb

from registry.admin import ROLE as REGISTRY_ROLE
from registry.decisions import SqlDecisionStore
from registry.feed import RegistryFeed, SqlFeed
from registry.notifications import SqlNotificationStore
from registry.redis_feed import RedisFeed
from registry.redis_layout import DEFAULT_PREFIX
from registry.signing import Signer, ensure_signer, load_verifier
from registry.storage import Database
from registry.trusted_state import StateLocked, TrustedState
from server.cache import RegistryCache
from server.decision_log import DEFAULT_LIMIT as DEFAULT_DECISION_LOG_LIMIT
from server.decision_log import DecisionLog
from server.follower import RegistryFollower
from server.gate import Gate
from server.guard import CallLimit, GuardedServer, MalformedRequests
from server.health import GateHealth
from server.incidents import Incidents
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE, GateKeyVouch, ReceiptSigner
from server.reflection import enable_reflection
from server.service import SERVICE_NAME, PermitGateService
from server.shared_cache import DEFAULT_CACHE_SIZE, SharedCache
from server.shared_follower import SharedFollower
from server.verifier import GateStateError, RegistryVerifier
from server.watch import WatchHub

__all__ = [
    "DEFAULT_AUDIT_INTERVAL",
    "DEFAULT_MAX_CONCURRENT_RPCS",
    "GateApp",
    "GateStateError",
    "TlsFiles",
    "default_state_dir",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_RPCS = 1000
"""Calls in flight (streams and health checks included) beyond which new ones get
RESOURCE_EXHAUSTED. Measured on the project's 2-core machine: 1,000 unary calls kept in flight
are all answered (p99 0.5 s), and 2,000 idle BatchCheck streams cost 22 MiB; with 2,000 unary
calls in flight gRPC itself cancels some (a bare grpc.aio server as well)."""


DEFAULT_AUDIT_INTERVAL = 3600.0
"""Seconds between re-reads of every record to find those altered in the database (a full
read: about 5 s of one core's time for a million structures)."""


def default_state_dir(keys_dir: Path) -> Path:
    """Where a gate keeps its own files (its verified state, decision-log records set aside):
    beside its keys."""
    return keys_dir.parent / "state"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # when set, clients must present a certificate it signed

    def credentials(self) -> grpc.ServerCredentials:
        client_ca = None if self.client_ca is None else self.client_ca.read_bytes()
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


class GateApp:
    def __init__(
        self,
        *,
        db: Database,
        feed: RegistryFeed,
        gate: Gate,
        verifier: RegistryVerifier,
        follower: RegistryFollower | SharedFollower,
        server: grpc.aio.Server,
        health: GateHealth,
        port: int,
        address: str,
        tls: bool,
    ) -> None:
        self.db = db
        self.feed = feed
        self.gate = gate
        self.cache = gate.cache
        self.verifier = verifier
        self.state = verifier.state
        self.registry_key = verifier.key
        self.follower = follower
        self.incidents = follower.incidents
        self.server = server
        self.health = health
        self.port = port
        self.address = address
        self.tls = tls
        self._held = ExitStack()  # the state directory's lock, and the state's file
        self._first_load: asyncio.Task[bool] | None = None
        self.watch: WatchHub | None = None  # WatchStatus's hub, told of each head installed

    @classmethod
    async def create(
        cls,
        *,
        db_url: str | None,
        keys_dir: Path,
        listen: str = "127.0.0.1:50051",
        max_staleness: float = 300.0,
        poll_interval: float = 0.25,
        tls: TlsFiles | None = None,
        gate_name: str = DEFAULT_GATE_NAME,
        state_dir: Path | None = None,
        max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
        decision_log_limit: int = DEFAULT_DECISION_LOG_LIMIT,
        audit_interval: float | None = DEFAULT_AUDIT_INTERVAL,
        reuse_port: bool = False,
        redis_url: str | None = None,
        redis_prefix: str = DEFAULT_PREFIX,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> GateApp:
        """Build the gate and bind its port.

        ``redis_url``: shared mode, following the registry through that Redis (``redis_prefix``
        its keys), with at most ``cache_size`` structures in memory; None: the embedded gate.

        ``reuse_port`` lets other processes of the same user listen on the same port
        (``SO_REUSEPORT``), the kernel spreading connections among them: that is how the workers
        of ``serve --workers`` share one. A single gate binds without it, so that a second gate
        started on its port by mistake fails loudly rather than silently taking half of its
        connections, each answering from its own state.
        """
        if max_concurrent_rpcs < 1:
            raise ValueError(f"max_concurrent_rpcs: {max_concurrent_rpcs} is not a positive number")
        registry_key = load_verifier(keys_dir, REGISTRY_ROLE)
        if (keys_dir / f"{REGISTRY_ROLE}.key").exists():
            log.warning(
                "%s holds the registry's private key; a gate needs only %s.pub (keep the "
                "private key with the registry)",
                keys_dir,
                REGISTRY_ROLE,
            )
        gate_signer, _ = ensure_signer(keys_dir, GATE_ROLE, gate_name)
        state_dir = default_state_dir(keys_dir) if state_dir is None else state_dir
        with ExitStack() as held:
            verifier = _open_state(state_dir, registry_key, held, audit_interval)
            app = await cls._assemble(
                db_url=db_url,
                registry_key=registry_key,
                gate_signer=gate_signer,
                verifier=verifier,
                listen=listen,
                max_staleness=max_staleness,
                poll_interval=poll_interval,
                tls=tls,
                state_dir=state_dir,
                max_concurrent_rpcs=max_concurrent_rpcs,
                decision_log_limit=decision_log_limit,
                reuse_port=reuse_port,
                shared=None if redis_url is None else (redis_url, redis_prefix, cache_size),
            )
            app._held = held.pop_all()  # from now on the app releases them, at stop
        return app

    @classmethod
    async def _assemble(
        cls,
        *,
        db_url: str | None,
        registry_key: VerifierKey,
        gate_signer: Signer,
        verifier: RegistryVerifier,
        listen: str,
        max_staleness: float,
        poll_interval: float,
        tls: TlsFiles | None,
        state_dir: Path,
        max_concurrent_rpcs: int,
        decision_log_limit: int,
        reuse_port: bool,
        shared: tuple[str, str, int] | None = None,
    ) -> GateApp:
        db = Database(db_url, create=False)  # a gate reads a registry; it never makes one
        feed = SqlFeed(db)
        cache: RegistryCache
        follower: RegistryFollower | SharedFollower
        if shared is None:
            cache = RegistryCache(max_staleness=max_staleness, incidents=verifier.incidents)
            follower = RegistryFollower(feed, cache, verifier, interval=poll_interval)
        else:
            redis_url, redis_prefix, cache_size = shared
            redis = RedisFeed(redis_url, prefix=redis_prefix)
            cache = SharedCache(
                max_staleness=max_staleness,
                redis=redis,
                database=feed,
                size=cache_size,
                incidents=verifier.incidents,
            )
            follower = SharedFollower(
                redis,
                feed,
                cache,
                registry_key,
                verifier.state,
                verifier.incidents,
                interval=poll_interval,
            )
        decision_log = DecisionLog(
            SqlDecisionStore(db), state_dir=state_dir, limit=decision_log_limit
        )
        gate = Gate(
            notifications=SqlNotificationStore(db),
            cache=cache,
            receipts=ReceiptSigner(
                gate_signer, GateKeyVouch.from_registry(db, registry_key, gate_signer.verifier)
            ),
            decision_log=decision_log,
        )

        def keys() -> pb.KeySet:
            return pb.KeySet(
                verifier_keys=[registry_key.text, gate_signer.verifier.text],
                registry_key=registry_key.text,
                gate_key=gate_signer.verifier.text,
                checkpoint=cache.checkpoint_note,
            )

        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", int(reuse_port)),
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_concurrent_streams", 2 * max_concurrent_rpcs),  # see CallLimit
            ],
        )
        # Every service registers through the guard: no request bytes reach it unparsed, and
        # no call runs beyond the limit (kept there rather than by grpc.aio: see CallLimit).
        guarded = GuardedServer(server, MalformedRequests(), CallLimit(max_concurrent_rpcs))
        watch = WatchHub(gate)  # one of the cache's listeners from now on
        PermitGateService(
            gate,
            keys,
            client_certificates=tls is not None and tls.client_ca is not None,
            watch=watch,
        ).add_to_server(guarded)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, guarded)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), guarded)
        guarded.check()  # every service registered is served, and guarded
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, tls.credentials())
        if port == 0:
            raise OSError(f"cannot listen on {listen}")
        host = listen.rsplit(":", 1)[0]
        gate_health = GateHealth(
            health_servicer,
            cache,
            decision_log,
            services=("", SERVICE_NAME),
            interval=min(poll_interval, 1.0),
        )
        app = cls(
            db=db,
            feed=feed,
            gate=gate,
            verifier=verifier,
            follower=follower,
            server=server,
            health=gate_health,
            port=port,
            address=f"{host}:{port}",
            tls=tls is not None,
        )
        app.watch = watch
        return app

    async def start(self) -> None:
        """Serve at once; the registry loads in the background (health says when it has)."""
        await self.health.start()
        self.gate.decision_log.start()
        await self.server.start()
        self.follower.start()
        # health says SERVING as soon as the first load is verified, not at its next turn
        self._first_load = asyncio.get_running_loop().create_task(self.first_poll())

    async def first_poll(self) -> bool:
        """Wait until the first look at the registry has ended; True if it loaded data."""
        await self.follower.attempted.wait()
        await self.health.update()  # now, not at the health watch's next turn
        return self.cache.checkpoint is not None

    def describe(self) -> str:
        """The one line the gate logs at start: where it listens, on what data, by which key."""
        head = self.cache.head
        version = (
            "registry loading"
            if head is None
            else f"registry version {head.size} (head serial {head.map.serial}), "
            f"{len(self.cache)} structures"
        )
        held = self.verifier.head
        state = (
            "no head verified before"
            if held is None
            else f"holds head serial {held.map.serial}, version {held.size}"
        )
        data = f"{self.feed!r}"
        if isinstance(self.follower, SharedFollower) and isinstance(self.cache, SharedCache):
            data = f"{self.follower.redis!r} (shared, at most {self.cache.bound} cached), {data}"
        return (
            f"permitgate gate listening on {self.address} ({'TLS' if self.tls else 'plaintext'}); "
            f"data: {data}, registry key {self.registry_key.keyid_text}, {version}; "
            f"state {self.state.directory} ({state}); "
            f"max staleness {self.cache.max_staleness:g}s"
        )

    async def stop(self, grace: float = 5.0) -> None:
        if self._first_load is not None:
            self._first_load.cancel()
        await self.health.stop()  # NOT_SERVING first, so balancers move on
        if self.watch is not None:
            self.watch.close()  # watches never end by themselves: end them, to be resumed
        await self.server.stop(grace)
        await self.follower.close()
        await self.gate.decision_log.close()
        self.feed.close()
        self.db.dispose()
        self._held.close()


def _open_state(
    directory: Path, registry_key: VerifierKey, held: ExitStack, audit_interval: float | None
) -> RegistryVerifier:
    """The gate's verified state in ``directory``, locked for this gate (``held`` releases it)."""
    state = TrustedState(directory, "gate")
    held.callback(state.close)
    try:
        held.enter_context(state.lock(wait=0.0))
    except StateLocked as exc:
        raise GateStateError(
            f"another gate uses the state directory {directory} ({exc}): give each gate its own "
            "--state"
        ) from exc
    return RegistryVerifier(registry_key, state, Incidents(), audit_interval=audit_interval)
