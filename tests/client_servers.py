"""Helpers for the client tests: a scripted ``grpc.aio`` server of the gate's service, peers that
misbehave (silent, absent), counting iterables, and mixed check streams with their answers.

The scripted server is for what the real gate cannot be made to do on demand: answer any gRPC
status, hold a call (so that ``maximum_concurrent_rpcs`` bites), or show from the server's side
how many batches a stream delivered and whether the client cancelled it. It runs on the same
background loop as the test gates (``gate_helpers.gate_loop``), over real sockets.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from gate_helpers import gate_loop
from permitgate_client import (
    Check,
    Client,
    ConflictError,
    DeadlineError,
    FailedPreconditionError,
    GateError,
    InvalidCheckError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    Reason,
    UnavailableError,
    Verdict,
)
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

from registry.demo import SCENARIOS, structure_id

ALL_STATUSES = [s for s in grpc.StatusCode if s is not grpc.StatusCode.OK]
TYPED: dict[grpc.StatusCode, type[GateError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidCheckError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverloadedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: ConflictError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
}
"""The typed error each status becomes; every other status is a plain ``GateError``."""


# --- the scripted server ---------------------------------------------------------------------


class _Script(gate_pb2_grpc.PermitGateServicer):
    """Answers by the structure id it is sent:

    * ``abort:NAME``: aborts the call (or the stream) with status NAME, details ``scripted NAME``;
    * ``hold``: waits until released (counts as held meanwhile);
    * ``verdict:N``: a Decision with verdict number N;
    * anything else: ALLOW, echoing the correlation id.

    In ``BatchCheck``, as a faulty gate might: a batch holding ``end:N`` is left unanswered, and
    so are the N-1 batches after it, then the stream ends with OK; a batch holding ``end-after``
    ends it with OK once answered; a batch holding ``twice`` is answered twice.
    """

    def __init__(self, gate: ScriptedGate) -> None:
        self.gate = gate

    async def _answer(self, check: Any, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Decision:
        sid: str = check.structure_id
        if sid.startswith("abort:"):
            status = grpc.StatusCode[sid.removeprefix("abort:")]
            await context.abort(status, f"scripted {status.name}")
        if sid == "hold":
            self.gate._held.release()
            await self.gate.released().wait()
        if sid.startswith("verdict:"):
            return pb.Decision(verdict=int(sid.removeprefix("verdict:")))  # type: ignore[arg-type]
        return pb.Decision(verdict=pb.VERDICT_ALLOW, decision_id="scripted", registry_version=1)

    async def CheckConnection(  # noqa: N802  (gRPC method names)
        self, request: pb.ConnectionCheck, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Decision:
        return await self._answer(request, context)

    async def GetKeys(  # noqa: N802
        self, request: pb.GetKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.KeySet:
        return pb.KeySet()

    async def BatchCheck(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.CheckBatch],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DecisionBatch]:
        gate = self.gate
        gate.streams += 1
        try:
            unanswered = 0  # batches still to take without answer before ending (``end:N``)
            async for batch in request_iterator:
                gate.received += 1
                bodies = [getattr(c, c.WhichOneof("check") or "connection") for c in batch.checks]
                scripted = {body.structure_id for body in bodies}
                ends = [int(s.removeprefix("end:")) for s in scripted if s.startswith("end:")]
                unanswered = ends[0] if ends else unanswered
                if unanswered:
                    unanswered -= 1
                    if not unanswered:
                        gate.ended += 1
                        return
                    continue
                answer = pb.DecisionBatch()
                for check, body in zip(batch.checks, bodies, strict=True):
                    decision = await self._answer(body, context)
                    decision.correlation_id = check.correlation_id
                    answer.decisions.append(decision)
                yield answer
                if "twice" in scripted:
                    yield answer
                if "end-after" in scripted:
                    gate.ended += 1
                    return
            # A cancel from the client can reach this handler as the end of its requests; the
            # server's own cancellation of the handler follows at once, so wait for it here.
            await asyncio.sleep(0.05)
            gate.finished += 1
        except (asyncio.CancelledError, GeneratorExit):  # GeneratorExit: closed mid-yield
            gate.cancelled += 1
            raise


@dataclass
class ScriptedGate:
    """A running scripted server: its target, and what it saw."""

    target: str = ""
    streams: int = 0  # BatchCheck calls begun
    received: int = 0  # batches received, over all streams
    cancelled: int = 0  # streams the client cancelled
    finished: int = 0  # streams the client ended by closing its side (all sent)
    ended: int = 0  # streams this server ended early, as scripted (``end``, ``end-after``)
    _held: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _released: asyncio.Event | None = None

    def released(self) -> asyncio.Event:
        if self._released is None:
            self._released = asyncio.Event()
        return self._released

    def wait_held(self, n: int, timeout: float = 10) -> None:
        """Wait until ``n`` calls are being held."""
        for _ in range(n):
            assert self._held.acquire(timeout=timeout), "no call reached the server in time"

    def release(self) -> None:
        """Let every held call (and every later one) answer."""
        gate_loop().loop.call_soon_threadsafe(self.released().set)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.005)


@contextmanager
def scripted_gate(*, maximum_concurrent_rpcs: int | None = None) -> Iterator[ScriptedGate]:
    """A scripted server on 127.0.0.1 (a free port), on the shared test loop."""
    gate = ScriptedGate()
    loop = gate_loop()

    async def start() -> grpc.aio.Server:
        server = grpc.aio.server(maximum_concurrent_rpcs=maximum_concurrent_rpcs)
        gate_pb2_grpc.add_PermitGateServicer_to_server(_Script(gate), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        gate.released()  # created on the loop
        gate.target = f"127.0.0.1:{port}"
        return server

    server = loop.run(start())
    try:
        yield gate
    finally:
        gate.release()
        loop.run(server.stop(0.5))


# --- peers that misbehave --------------------------------------------------------------------


@contextmanager
def silent_peer() -> Iterator[str]:
    """A port that accepts connections and never says a word."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield f"127.0.0.1:{silent.getsockname()[1]}"


@contextmanager
def closed_port() -> Iterator[str]:
    """A loopback port nobody listens on (taken from the system, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield f"127.0.0.1:{port}"


# --- streams of checks -------------------------------------------------------------------------


class CountingChecks:
    """An endless stream of connection checks for one structure that counts what it handed out."""

    def __init__(self, structure: str = "S-1") -> None:
        self.structure = structure
        self.pulled = 0
        self._lock = threading.Lock()

    def __iter__(self) -> CountingChecks:
        return self

    def __next__(self) -> Check:
        with self._lock:
            self.pulled += 1
            n = self.pulled
        return Check.connection(self.structure, utility="water", correlation_id=f"n{n}")


@dataclass(frozen=True)
class Ask:
    """One check, as the single call that asks it alone: method name, structure, options."""

    method: str
    structure_id: str
    options: dict[str, Any]

    def check(self, correlation_id: str) -> Check:
        factory = {
            "check_connection": Check.connection,
            "check_registration": Check.registration,
            "verify_premises": Check.premises,
        }[self.method]
        check: Check = factory(self.structure_id, correlation_id=correlation_id, **self.options)  # type: ignore[operator]
        return check

    def key(self) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
        return self.method, self.structure_id, tuple(sorted(self.options.items()))


_UTILITIES = ("water", "power", "gas", "heat")
_REGISTRATIONS = ("initial", "transfer", "mortgage")
_BLOCKING_OFFICES = ("fire", "civil_defense", "environment")  # no notices recorded
_USES = ("residential", "office", "restaurant")


def interleaved_asks(n: int, *, invalid_every: int = 41) -> tuple[list[Ask], set[int]]:
    """``n`` checks cycling over every demo structure and every kind of check, and the indexes
    of the invalid ones (an empty or a 129-character structure id) spread among them."""
    asks: list[Ask] = []
    invalid: set[int] = set()
    for i in range(n):
        sid = structure_id(i % len(SCENARIOS))
        if i % invalid_every == 7:
            invalid.add(i)
            sid = "" if i % 2 else "x" * 129
        kind = i % 3
        if kind == 0:
            options: dict[str, Any] = {"utility": _UTILITIES[i % 4]}
            asks.append(Ask("check_connection", sid, options))
        elif kind == 1:
            asks.append(Ask("check_registration", sid, {"kind": _REGISTRATIONS[i % 3]}))
        else:
            office = _BLOCKING_OFFICES[i % 3]
            asks.append(
                Ask("verify_premises", sid, {"office": office, "declared_use": _USES[i % 3]})
            )
    return asks, invalid


def interleaved_checks(n: int) -> tuple[list[Check], set[int]]:
    """``interleaved_asks`` as ``Check`` objects, correlation ids ``c0``, ``c1``, ..."""
    asks, invalid = interleaved_asks(n)
    return [ask.check(f"c{i}") for i, ask in enumerate(asks)], invalid


Expected = dict[int, tuple[Verdict, tuple[Reason, ...]]]


def expected_answers(client: Client, checks: list[Check]) -> Expected:
    """What each valid check of ``interleaved_checks(len(checks))`` answers when asked alone."""
    asks, invalid = interleaved_asks(len(checks))
    alone: dict[Any, tuple[Verdict, tuple[Reason, ...]]] = {}
    out: Expected = {}
    for i, ask in enumerate(asks):
        if i in invalid:
            continue
        key = ask.key()
        if key not in alone:
            decision = getattr(client, ask.method)(ask.structure_id, **ask.options)
            alone[key] = (decision.verdict, decision.reasons)
        out[i] = alone[key]
    return out
