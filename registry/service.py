"""The registry service: ``permitgate.v1.Registry`` over gRPC, with health and reflection, and
the heartbeat that keeps its verified state and cosigns its head (``registry.heartbeat``).

The one long-running process that holds the registry's private key. It answers from the state
it verified itself (``registry.service_state``), never from the database as read: ``GetHead``
the newest head with its latest cosignature, ``GetStatus`` a structure's envelope with its map
proof (or the proof that it has none) against the head sent with it, ``GetConsistency`` the
RFC 9162 proof between two log sizes. While that state is not loaded, or the database disagrees
with it, every call answers ``UNAVAILABLE`` saying why, and health (``grpc.health.v1``, for
``""`` and ``permitgate.v1.Registry``) is ``NOT_SERVING``.

Every service on the port registers through ``server.guard``, so bytes that are not a valid
message are answered ``INVALID_ARGUMENT`` before any code here runs, and reflection
(``server.reflection``) describes them under both protocol versions, as on the gate.
``RegistryApp.create`` binds the port (0 picks a free one); ``start`` serves at once and loads
the registry in the background; ``stop`` turns health to NOT_SERVING first, lets calls in flight
finish, and stops the jobs (a cosignature under way may finish; nothing is left half written).
With a Redis URL, the verified state is also published there for gates (``registry.publisher``);
Redis being down never stops the service answering.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from permitgate_client.v1 import registry_pb2 as pb

from registry.admin import load_registry_signer
from registry.heartbeat import Heartbeat, NotServing, open_registry_writer, run_blocking
from registry.publisher import RedisPublisher
from registry.redis_layout import DEFAULT_PREFIX
from registry.service_state import ServedState
from registry.storage import Database
from registry.vocabulary import id_error
from server.guard import CallLimit, GuardedServer, MalformedRequests
from server.listen import serve_until_signalled as serve_app_until_signalled
from server.reflection import enable_reflection

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_LISTEN",
    "DEFAULT_REFRESH_EVERY",
    "SERVICE_NAME",
    "RegistryApp",
    "RegistryService",
    "serve_until_signalled",
]

log = logging.getLogger(__name__)

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Registry"].full_name
DEFAULT_LISTEN: Final = "127.0.0.1:50060"
DEFAULT_HEARTBEAT: Final = 10.0
DEFAULT_REFRESH_EVERY: Final = 3600.0
MAX_CONCURRENT_RPCS: Final = 1000

Context = Any  # grpc.aio.ServicerContext: the grpc package ships no type information


async def _abort(context: Context, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)  # raises
    raise AssertionError("context.abort returned")  # pragma: no cover


class RegistryService:
    """``permitgate.v1.Registry``: GetHead, GetStatus, GetConsistency, from the held state."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self._heartbeat = heartbeat

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Every method of the service by name (register them through a ``GuardedServer``)."""
        return {
            "GetHead": grpc.unary_unary_rpc_method_handler(
                self.get_head,
                request_deserializer=pb.GetHeadRequest.FromString,
                response_serializer=pb.Head.SerializeToString,
            ),
            "GetStatus": grpc.unary_unary_rpc_method_handler(
                self.get_status,
                request_deserializer=pb.GetStatusRequest.FromString,
                response_serializer=pb.Status.SerializeToString,
            ),
            "GetConsistency": grpc.unary_unary_rpc_method_handler(
                self.get_consistency,
                request_deserializer=pb.GetConsistencyRequest.FromString,
                response_serializer=pb.Consistency.SerializeToString,
            ),
        }

    def add_to_server(self, server: GuardedServer) -> None:
        """Serve every method under its wire name, ``permitgate.v1.Registry/<Method>``."""
        server.add_registered_method_handlers(SERVICE_NAME, self.method_handlers())

    async def _serving(self, context: Context) -> ServedState:
        try:
            return self._heartbeat.serving()
        except NotServing as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"registry service: {exc}")

    async def get_head(self, request: pb.GetHeadRequest, context: Context) -> pb.Head:
        state = await self._serving(context)
        return pb.Head(note=state.head.note)

    async def get_status(self, request: pb.GetStatusRequest, context: Context) -> pb.Status:
        why = id_error(request.structure_id)
        if why is not None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"structure_id: {why}")
        state = await self._serving(context)
        envelope, proof = state.status(request.structure_id)  # one state: no await between
        return pb.Status(head=state.head.note, envelope=envelope or b"", map_proof=proof.to_bytes())

    async def get_consistency(
        self, request: pb.GetConsistencyRequest, context: Context
    ) -> pb.Consistency:
        old, new = request.from_size, request.to_size
        if old > new:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"from_size: {old} is larger than to_size {new}",
            )
        state = await self._serving(context)
        if new > state.size:
            await _abort(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                f"to_size: {new} is beyond the newest head's size, {state.size}",
            )
        # Proportional to the leaves between the sizes: off the event loop.
        hashes = await run_blocking(lambda: state.consistency(old, new), "consistency")
        return pb.Consistency(hashes=hashes)


class RegistryHealth:
    """``grpc.health.v1`` for the service: SERVING exactly while the heartbeat says it serves."""

    def __init__(self, servicer: health.aio.HealthServicer) -> None:
        self._servicer = servicer
        self.serving = False

    async def start(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def update(self, refusal: str | None) -> None:
        serving = refusal is None
        if serving != self.serving:
            self.serving = serving
            status = health_pb2.HealthCheckResponse
            await self._set(status.SERVING if serving else status.NOT_SERVING)
        if serving:
            log.info("health: SERVING")
        else:
            log.error("health: NOT_SERVING: %s", refusal)

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in ("", SERVICE_NAME):
            await self._servicer.set(name, status)

    async def stop(self) -> None:
        """NOT_SERVING from now on (graceful stop): later updates change nothing."""
        self.serving = False
        await self._servicer.enter_graceful_shutdown()


class RegistryApp:
    """The service assembled: database, key, heartbeat, gRPC server."""

    def __init__(
        self,
        *,
        db: Database,
        heartbeat: Heartbeat,
        health: RegistryHealth,
        server: grpc.aio.Server,
        address: str,
        key_id: str,
        heartbeat_interval: float,
        refresh_every: float,
        state_dir: Path,
        publisher: RedisPublisher | None = None,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.heartbeat = heartbeat
        self.health = health
        self.server = server
        self.address = address
        self.key_id = key_id
        self.heartbeat_interval = heartbeat_interval
        self.refresh_every = refresh_every
        self.state_dir = state_dir

    @classmethod
    async def create(
        cls,
        *,
        db_url: str | None,
        keys_dir: Path,
        state_dir: Path,
        listen: str = DEFAULT_LISTEN,
        heartbeat: float = DEFAULT_HEARTBEAT,
        refresh_every: float = DEFAULT_REFRESH_EVERY,
        redis_url: str | None = None,
        redis_prefix: str = DEFAULT_PREFIX,
    ) -> RegistryApp:
        """The service on ``listen``; with ``redis_url``, its verified state is also published
        there under ``redis_prefix`` (``registry.publisher``) at each heartbeat."""
        if heartbeat <= 0 or refresh_every <= 0:
            raise ValueError(
                f"heartbeat ({heartbeat:g} s) and refresh_every ({refresh_every:g} s) must be "
                "positive"
            )
        db = Database(db_url, create=False)  # the service serves a registry; it never makes one
        try:
            signer = load_registry_signer(db, keys_dir)
            health_servicer = health.aio.HealthServicer()
            registry_health = RegistryHealth(health_servicer)
            publisher = (
                None
                if redis_url is None
                else RedisPublisher(redis_url, prefix=redis_prefix, interval=heartbeat)
            )
            beat = Heartbeat(
                db,
                signer.verifier,
                open_registry_writer(db, signer, state_dir),
                interval=heartbeat,
                refresh_every=refresh_every,
                on_change=registry_health.update,
                publisher=publisher,
            )
            server = grpc.aio.server(
                options=[
                    ("grpc.so_reuseport", 0),
                    ("grpc.max_concurrent_streams", 2 * MAX_CONCURRENT_RPCS),  # see CallLimit
                ]
            )
            guarded = GuardedServer(server, MalformedRequests(), CallLimit(MAX_CONCURRENT_RPCS))
            RegistryService(beat).add_to_server(guarded)
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, guarded)
            enable_reflection((SERVICE_NAME, health.SERVICE_NAME), guarded)
            guarded.check()
            port = server.add_insecure_port(listen)
            if port == 0:
                raise OSError(f"cannot listen on {listen}")
        except BaseException:
            db.dispose()
            raise
        return cls(
            db=db,
            heartbeat=beat,
            health=registry_health,
            server=server,
            address=f"{listen.rsplit(':', 1)[0]}:{port}",
            key_id=signer.verifier.keyid_text,
            heartbeat_interval=heartbeat,
            refresh_every=refresh_every,
            state_dir=state_dir,
            publisher=publisher,
        )

    async def start(self) -> None:
        """Serve at once (NOT_SERVING until the registry is verified); start the jobs."""
        await self.health.start()
        await self.server.start()
        self.heartbeat.start()
        if self.publisher is not None:
            self.publisher.start()

    def describe(self) -> str:
        """The one line the service logs at start."""
        return (
            f"permitgate registry service listening on {self.address} (plaintext); "
            f"registry key {self.key_id}; data: {self.db}; state: {self.state_dir}; "
            f"heartbeat every {self.heartbeat_interval:g} s, refresh every "
            f"{self.refresh_every:g} s"
            + ("" if self.publisher is None else f"; publishing to {self.publisher}")
        )

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.stop()  # NOT_SERVING first, so balancers move on
        await self.server.stop(grace)
        await self.heartbeat.close(grace)
        if self.publisher is not None:
            await self.publisher.close(grace)
        self.db.dispose()


async def serve_until_signalled(**options: Any) -> None:
    """Create and start the service, log its start line, stop cleanly on SIGINT or SIGTERM."""
    await serve_app_until_signalled(await RegistryApp.create(**options), log)
