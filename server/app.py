"""Assembling and running the gate: keys, cache, follower, decision log, gRPC server.

This is the one place that picks implementations: the registry feed the gate reads (``SqlFeed``)
and the sinks it writes to (``SqlDecisionStore``, ``SqlNotificationStore``), all on the registry
database. ``GateApp.create`` builds everything and binds the port (port 0 picks a free one, for
tests); ``start`` serves at once and loads the registry in the background, health NOT_SERVING
until that first verified load (checks meanwhile get REVIEW at best); ``first_poll`` waits.
``stop`` turns health to NOT_SERVING first, lets calls in flight finish, and writes the rest of
the decision log (keeping in the state directory what cannot be written).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from permitgate_client.v1 import gate_pb2 as pb

from registry.admin import ROLE as REGISTRY_ROLE
from registry.decisions import SqlDecisionStore
from registry.feed import RegistryFeed, SqlFeed
from registry.notifications import SqlNotificationStore
from registry.signing import ensure_signer, load_verifier
from registry.storage import Database
from server.cache import RegistryCache
from server.decision_log import DEFAULT_LIMIT as DEFAULT_DECISION_LOG_LIMIT
from server.decision_log import DecisionLog
from server.follower import RegistryFollower
from server.gate import Gate
from server.guard import GuardedServer, MalformedRequests
from server.health import GateHealth
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE, GateKeyVouch, ReceiptSigner
from server.reflection import enable_reflection
from server.service import SERVICE_NAME, PermitGateService

__all__ = ["DEFAULT_MAX_CONCURRENT_RPCS", "GateApp", "TlsFiles", "default_state_dir"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_RPCS = 1000
"""Calls in flight (streams and health checks included) beyond which new ones get
RESOURCE_EXHAUSTED. Measured on the project's 2-core machine: 1,000 unary calls kept in flight
are all answered (p99 0.5 s), and 2,000 idle BatchCheck streams cost 22 MiB; with 2,000 unary
calls in flight gRPC itself cancels some (a bare grpc.aio server as well)."""


def default_state_dir(keys_dir: Path) -> Path:
    """Where a gate keeps its files (decision-log records set aside): beside its keys."""
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
        follower: RegistryFollower,
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
        self.follower = follower
        self.server = server
        self.health = health
        self.port = port
        self.address = address
        self.tls = tls

    @classmethod
    async def create(
        cls,
        *,
        db_url: str | None,
        keys_dir: Path,
        listen: str = "127.0.0.1:50051",
        max_staleness: float = 300.0,
        poll_interval: float = 1.0,
        tls: TlsFiles | None = None,
        gate_name: str = DEFAULT_GATE_NAME,
        state_dir: Path | None = None,
        max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
        decision_log_limit: int = DEFAULT_DECISION_LOG_LIMIT,
    ) -> GateApp:
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
        db = Database(db_url, create=False)  # a gate reads a registry; it never makes one
        feed = SqlFeed(db)
        cache = RegistryCache(registry_key, origin=registry_key.name, max_staleness=max_staleness)
        decision_log = DecisionLog(
            SqlDecisionStore(db),
            state_dir=default_state_dir(keys_dir) if state_dir is None else state_dir,
            limit=decision_log_limit,
        )
        gate = Gate(
            notifications=SqlNotificationStore(db),
            cache=cache,
            receipts=ReceiptSigner(
                gate_signer, GateKeyVouch.from_registry(db, registry_key, gate_signer.verifier)
            ),
            decision_log=decision_log,
        )
        follower = RegistryFollower(feed, cache, interval=poll_interval)

        def keys() -> pb.KeySet:
            return pb.KeySet(
                verifier_keys=[registry_key.text, gate_signer.verifier.text],
                registry_key=registry_key.text,
                gate_key=gate_signer.verifier.text,
                checkpoint=cache.checkpoint_note,
            )

        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 << 20)],
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )
        # Every service registers through the guard: no request bytes reach it unparsed.
        guarded = GuardedServer(server, MalformedRequests())
        PermitGateService(gate, keys).add_to_server(guarded)
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
        return cls(
            db=db,
            feed=feed,
            gate=gate,
            follower=follower,
            server=server,
            health=gate_health,
            port=port,
            address=f"{host}:{port}",
            tls=tls is not None,
        )

    async def start(self) -> None:
        """Serve at once; the registry loads in the background (health says when it has)."""
        await self.health.start()
        self.gate.decision_log.start()
        await self.server.start()
        self.follower.start()

    async def first_poll(self) -> bool:
        """Wait until the first look at the registry has ended; True if it loaded data."""
        await self.follower.attempted.wait()
        await self.health.update()  # now, not at the health watch's next turn
        return self.cache.checkpoint is not None

    def describe(self) -> str:
        """The one line the gate logs at start: where it listens and on what data."""
        checkpoint = self.cache.checkpoint
        version = (
            "registry loading"
            if checkpoint is None
            else (f"registry version {checkpoint.size}, {len(self.cache)} structures")
        )
        return (
            f"permitgate gate listening on {self.address} ({'TLS' if self.tls else 'plaintext'}); "
            f"data: {self.feed!r} origin {self.cache.origin}, {version}; "
            f"max staleness {self.cache.max_staleness:g}s"
        )

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.stop()  # NOT_SERVING first, so balancers move on
        await self.server.stop(grace)
        await self.follower.close()
        await self.gate.decision_log.close()
        self.feed.close()
        self.db.dispose()
