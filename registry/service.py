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

**Departments** write through the same service (``IssuePermit`` ... ``SuspendParty``, one table
``WRITE_METHODS`` from method to action) and read through it (``registry.department_reads``,
when present, given ``authorise``). Their calls need mutual TLS: with ``tls`` (``--tls-cert``,
``--tls-key``, ``--client-ca``), the service also listens on ``departments_listen``, where every
caller must present a client certificate from the client CA (gRPC's Python server cannot make
client certificates optional on one port, so the gates' port stays as it was). The certificate's
department (``registry.identity``) must be enrolled and, for a write, be the statement's.
Writes are taken in groups: one task takes every write waiting (up to ``MAX_GROUP``) and
applies them in one transaction and one head (``registry.department_writes``); then the
heartbeat's follow job runs at once, so the new head (cosigned as it was signed) is served and
published within the moment, while gates polling the database see it as soon as it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from permitgate_client.v1 import registry_pb2 as pb

from registry.admin import RegistryRefused, load_registry_signer
from registry.department_keys import DepartmentDirectory
from registry.department_writes import DepartmentWrites, WriteOutcome, WriteRefused, WriteRequest
from registry.errors import plain_error
from registry.heartbeat import Heartbeat, NotServing, open_registry_writer, run_blocking
from registry.identity import IdentityRefused, certificate_department, enrolled_department
from registry.log import DepartmentEntry
from registry.publisher import RedisPublisher
from registry.redis_layout import DEFAULT_PREFIX
from registry.service_state import ServedState
from registry.signed_reads import SignedState
from registry.storage import Database
from registry.vocabulary import id_error
from registry.web.server import WebServer
from server.guard import CallLimit, GuardedServer, MalformedRequests
from server.listen import serve_until_signalled as serve_app_until_signalled
from server.reflection import enable_reflection

__all__ = [
    "DEFAULT_DEPARTMENTS_LISTEN",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_LISTEN",
    "DEFAULT_REFRESH_EVERY",
    "MAX_GROUP",
    "SERVICE_NAME",
    "WRITE_METHODS",
    "DepartmentTls",
    "RegistryApp",
    "RegistryService",
    "serve_until_signalled",
]

log = logging.getLogger(__name__)

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Registry"].full_name
DEFAULT_LISTEN: Final = "127.0.0.1:50060"
DEFAULT_DEPARTMENTS_LISTEN: Final = "127.0.0.1:50061"
MAX_GROUP: Final = 100
"""At most this many department writes go into one transaction and head."""
WRITE_METHODS: Final[dict[str, str]] = {
    "IssuePermit": "issue_permit",
    "ChangePermitStatus": "change_permit_status",
    "OpenCase": "open_case",
    "MoveCase": "move_case",
    "ReferCase": "refer_case",
    "AnswerReferral": "answer_referral",
    "AcknowledgeNotice": "acknowledge_notice",
    "SuspendParty": "suspend_party",
}
"""The write RPCs, each with the statement action it takes: the one dispatch table."""
DEFAULT_HEARTBEAT: Final = 10.0
DEFAULT_REFRESH_EVERY: Final = 3600.0
MAX_CONCURRENT_RPCS: Final = 1000

Context = Any  # grpc.aio.ServicerContext: the grpc package ships no type information


async def _abort(context: Context, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)  # raises
    raise AssertionError("context.abort returned")  # pragma: no cover


@dataclass(frozen=True)
class DepartmentTls:
    """The mutual TLS departments call through: the service's certificate and key, and the CA
    that issues departments' client certificates (``registry.demo_pki`` makes a throwaway one)."""

    cert: Path
    key: Path
    client_ca: Path

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes(),
            require_client_auth=True,
        )


class WriteQueue:
    """Group commit: one task takes every write waiting (up to ``max_group``), writes them in
    one transaction (each checked on its own), answers each, then calls ``committed``."""

    def __init__(
        self,
        writes: DepartmentWrites,
        committed: Callable[[], None],
        max_group: int = MAX_GROUP,
    ) -> None:
        self._writes = writes
        self._committed = committed
        self._max_group = max_group
        self._queue: asyncio.Queue[tuple[WriteRequest, asyncio.Future[WriteOutcome]]] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # groups written
        self.largest = 0  # the most writes in one group

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="writes")

    async def write(self, request: WriteRequest) -> WriteOutcome:
        done: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((request, done))
        return await done

    async def _run(self) -> None:
        while True:
            waiting = [await self._queue.get()]
            while len(waiting) < self._max_group and not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            waiting = [(r, f) for r, f in waiting if not f.done()]  # callers gone
            if waiting:
                await self._write_group(waiting)

    async def _write_group(
        self, waiting: list[tuple[WriteRequest, asyncio.Future[WriteOutcome]]]
    ) -> None:
        """Write one group and answer each caller; whatever fails, every caller is answered
        and the task goes on to the next group."""
        requests = [request for request, _ in waiting]
        try:
            outcomes = await run_blocking(partial(self._writes.write, requests), "writes")
            if len(outcomes) != len(waiting):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(waiting)} writes")
        except Exception as exc:
            if plain_error(exc) is None and not isinstance(exc, RegistryRefused):
                log.exception("a group of %d department writes failed", len(waiting))
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        self.groups += 1
        self.largest = max(self.largest, len(requests))
        for (_, future), outcome in zip(waiting, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
        if any(not isinstance(o, WriteRefused) and not o.replayed for o in outcomes):
            self._committed()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


Authorise = Callable[[Any], Any]
"""``authorise(context)``: the enrolled department calling (a ``DepartmentEntry``), or the call
is aborted (``UNAUTHENTICATED``/``PERMISSION_DENIED`` saying why). Awaitable."""


class RegistryService:
    """``permitgate.v1.Registry``: GetHead, GetStatus, GetConsistency, from the held state;
    the departments' writes (through ``writes``) and reads (``read_handlers``)."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        *,
        writes: WriteQueue | None = None,
        directory: DepartmentDirectory | None = None,
        departments_address: str | None = None,
        read_handlers: Callable[[Authorise], dict[str, grpc.RpcMethodHandler]] | None = None,
    ) -> None:
        self._heartbeat = heartbeat
        self._writes = writes
        self._directory = directory
        self._departments_address = departments_address
        self._read_handlers = read_handlers

    async def authorise(self, context: Context) -> DepartmentEntry:
        """The enrolled department whose client certificate made this call; else the call is
        aborted saying why."""
        try:
            claimed = certificate_department(context, self._departments_address)
            return enrolled_department(self._directory, claimed)
        except IdentityRefused as exc:
            await _abort(context, getattr(grpc.StatusCode, exc.code), exc.message)

    def _write_handler(self, action: str) -> grpc.RpcMethodHandler:
        async def write(request: pb.SignedWrite, context: Context) -> pb.WriteResult:
            department = await self.authorise(context)
            if self._writes is None:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, "registry service: no writes")
            try:
                outcome = await self._writes.write(
                    WriteRequest(bytes(request.statement), action, department.id)
                )
            except RegistryRefused as exc:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, f"registry service: {exc}")
            except Exception as exc:
                plain = plain_error(exc)
                if plain is None:
                    raise
                await _abort(context, grpc.StatusCode.UNAVAILABLE, f"registry service: {plain}")
            if isinstance(outcome, WriteRefused):
                await _abort(context, getattr(grpc.StatusCode, outcome.code.value), outcome.message)
            return outcome

        return grpc.unary_unary_rpc_method_handler(
            write,
            request_deserializer=pb.SignedWrite.FromString,
            response_serializer=pb.WriteResult.SerializeToString,
        )

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Every method of the service by name (register them through a ``GuardedServer``)."""
        handlers = {method: self._write_handler(action) for method, action in WRITE_METHODS.items()}
        if self._read_handlers is not None:
            handlers.update(self._read_handlers(self.authorise))
        return handlers | {
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
        writes: WriteQueue | None = None,
        directory: DepartmentDirectory | None = None,
        departments_address: str | None = None,
        web: WebServer | None = None,
    ) -> None:
        self.db = db
        self.web = web
        self.writes = writes
        self.directory = directory
        self.departments_address = departments_address
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
        tls: DepartmentTls | None = None,
        departments_listen: str = DEFAULT_DEPARTMENTS_LISTEN,
        writes: DepartmentWrites | None = None,
        web_listen: str | None = None,
    ) -> RegistryApp:
        """The service on ``listen``; with ``redis_url``, its verified state is also published
        there under ``redis_prefix`` (``registry.publisher``) at each heartbeat; with ``tls``,
        departments' calls are served over mutual TLS on ``departments_listen``. ``writes``
        (default: a ``DepartmentWrites`` with the shipped working-day calendar) makes them.
        With ``web_listen`` (and ``tls``), the working group's page is served read-only over
        HTTPS there, with the same certificate and key, to enrolled departments' client
        certificates from the same CA (``registry.web``)."""
        if web_listen is not None and tls is None:
            raise ValueError("web_listen: the page is served over TLS; give tls too")
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
            directory = DepartmentDirectory(state_dir)
            queue = WriteQueue(
                writes or DepartmentWrites(db, signer, state_dir), beat.follow.run_soon
            )
            departments_address: str | None = None
            if tls is not None:
                tls_port = server.add_secure_port(departments_listen, tls.credentials())
                if tls_port == 0:
                    raise OSError(f"cannot listen on {departments_listen}")
                departments_address = f"{departments_listen.rsplit(':', 1)[0]}:{tls_port}"
            RegistryService(
                beat,
                writes=queue,
                directory=directory,
                departments_address=departments_address,
                read_handlers=_department_reads(db, _signed_state(beat)),
            ).add_to_server(guarded)
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, guarded)
            enable_reflection((SERVICE_NAME, health.SERVICE_NAME), guarded)
            guarded.check()
            port = server.add_insecure_port(listen)
            if port == 0:
                raise OSError(f"cannot listen on {listen}")
            web = (
                None
                if web_listen is None or tls is None
                else WebServer(
                    db,
                    web_listen,
                    tls.cert,
                    tls.key,
                    client_ca=tls.client_ca,
                    directory=directory,
                )
            )
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
            writes=queue,
            directory=directory,
            departments_address=departments_address,
            web=web,
        )

    async def start(self) -> None:
        """Serve at once (NOT_SERVING until the registry is verified); start the jobs."""
        await self.health.start()
        await self.server.start()
        self.heartbeat.start()
        if self.writes is not None:
            self.writes.start()
        if self.publisher is not None:
            self.publisher.start()
        if self.web is not None:
            await self.web.start()

    def describe(self) -> str:
        """The one line the service logs at start."""
        return (
            f"permitgate registry service listening on {self.address} (plaintext); "
            f"registry key {self.key_id}; data: {self.db}; state: {self.state_dir}; "
            f"heartbeat every {self.heartbeat_interval:g} s, refresh every "
            f"{self.refresh_every:g} s"
            + ("" if self.publisher is None else f"; publishing to {self.publisher}")
            + (
                ""
                if self.departments_address is None
                else f"; department calls on {self.departments_address} (mutual TLS)"
            )
            + ("" if self.web is None else f"; {self.web.describe()}")
        )

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.stop()  # NOT_SERVING first, so balancers move on
        await self.server.stop(grace)
        if self.web is not None:
            await self.web.stop(grace)
        if self.writes is not None:
            await self.writes.close()
        await self.heartbeat.close(grace)
        if self.publisher is not None:
            await self.publisher.close(grace)
        if self.directory is not None:
            self.directory.close()
        self.db.dispose()


def _department_reads(
    db: Database, signed: SignedState
) -> Callable[[Authorise], dict[str, grpc.RpcMethodHandler]] | None:
    """The department read RPCs (``registry.department_reads``), when that module is there;
    cases and permits are checked against ``signed``."""
    try:
        reads = importlib.import_module("registry.department_reads")
    except ModuleNotFoundError:
        return None
    handlers: Callable[[Authorise], dict[str, grpc.RpcMethodHandler]]
    handlers = reads.DepartmentReads(db, signed=signed).method_handlers
    return handlers


def _signed_state(beat: Heartbeat, wait: float = 2.0) -> SignedState:
    """The heartbeat's held state for the reads, and that state once it has followed the
    database's newest head (asked at once; given up after ``wait`` s: the state as it is)."""

    async def caught_up() -> ServedState:
        before = beat.serving().size
        beat.follow.run_soon()
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
            if beat.serving().size != before:
                break
        return beat.serving()

    return SignedState(beat.serving, caught_up)


async def serve_until_signalled(**options: Any) -> None:
    """Create and start the service, log its start line, stop cleanly on SIGINT or SIGTERM."""
    await serve_app_until_signalled(await RegistryApp.create(**options), log)
