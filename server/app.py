"""Assembling and running the gate: keys, cache, follower, decision log, gRPC server.

``GateApp.create`` builds everything and binds the port (port 0 picks a free one, for tests);
``start`` loads the registry, starts the background tasks and the server; ``stop`` turns health
to NOT_SERVING first, lets calls in flight finish, and writes the rest of the decision log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from permitgate_client.v1 import gate_pb2 as pb

from registry.admin import ROLE as REGISTRY_ROLE
from registry.signing import ensure_signer, load_verifier
from registry.storage import Database
from server.cache import RegistryCache
from server.decision_log import DecisionLog
from server.follower import RegistryFollower
from server.gate import Gate
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE, ReceiptSigner
from server.reflection import enable_reflection
from server.service import SERVICE_NAME, PermitGateService

__all__ = ["GateApp", "TlsFiles"]

log = logging.getLogger(__name__)


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
        gate: Gate,
        follower: RegistryFollower,
        server: grpc.aio.Server,
        health_servicer: health.aio.HealthServicer,
        port: int,
        address: str,
        tls: bool,
    ) -> None:
        self.db = db
        self.gate = gate
        self.cache = gate.cache
        self.follower = follower
        self.server = server
        self.health = health_servicer
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
    ) -> GateApp:
        registry_key = load_verifier(keys_dir, REGISTRY_ROLE)
        if (keys_dir / f"{REGISTRY_ROLE}.key").exists():
            log.warning(
                "%s holds the registry's private key; a gate needs only %s.pub (keep the "
                "private key with the registry)",
                keys_dir,
                REGISTRY_ROLE,
            )
        gate_signer, _ = ensure_signer(keys_dir, GATE_ROLE, gate_name)
        db = Database(db_url)
        cache = RegistryCache(registry_key, origin=registry_key.name, max_staleness=max_staleness)
        decision_log = DecisionLog(db)
        gate = Gate(
            db=db, cache=cache, receipts=ReceiptSigner(gate_signer), decision_log=decision_log
        )
        follower = RegistryFollower(db, cache, interval=poll_interval)

        def keys() -> pb.KeySet:
            return pb.KeySet(
                verifier_keys=[registry_key.text, gate_signer.verifier.text],
                registry_key=registry_key.text,
                gate_key=gate_signer.verifier.text,
                checkpoint=cache.checkpoint_note,
            )

        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 << 20)]
        )
        PermitGateService(gate, keys).add_to_server(server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), server)
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, tls.credentials())
        if port == 0:
            raise OSError(f"cannot listen on {listen}")
        host = listen.rsplit(":", 1)[0]
        return cls(
            db=db,
            gate=gate,
            follower=follower,
            server=server,
            health_servicer=health_servicer,
            port=port,
            address=f"{host}:{port}",
            tls=tls is not None,
        )

    async def start(self) -> None:
        try:
            await self.follower.poll()
        except Exception as exc:  # serve anyway: stale data answers REVIEW, never ALLOW
            log.error("registry: first load failed (%s); answering REVIEW until it loads", exc)
        self.follower.start()
        self.gate.decision_log.start()
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def describe(self) -> str:
        """The one line the gate logs at start: where it listens and on what data."""
        checkpoint = self.cache.checkpoint
        version = (
            "no registry data yet"
            if checkpoint is None
            else (f"registry version {checkpoint.size}, {len(self.cache)} structures")
        )
        return (
            f"permitgate gate listening on {self.address} ({'TLS' if self.tls else 'plaintext'}); "
            f"data: {self.db!r} origin {self.cache.origin}, {version}; "
            f"max staleness {self.cache.max_staleness:g}s"
        )

    async def stop(self, grace: float = 5.0) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        await self.follower.close()
        await self.gate.decision_log.close()
        self.db.dispose()
