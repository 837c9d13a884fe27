"""The systems ``make bench`` compares, each a server process of its own on 127.0.0.1.

* ``gate``: the product as users start it, ``permitgate serve``, over the demo registry
  (``benchmarks.demo_registry``); ``gate-w2``: the same with ``--workers 2`` (only when
  ``permitgate serve --help`` offers ``--workers``);
* ``bare``: a ``grpc.aio`` + uvloop server answering every ``CheckConnection`` with one constant
  ``Decision``: the gate's own ALLOW answer, so the messages have the gate's size
  (``benchmarks.servers bare``);
* ``cerbos``: the Cerbos PDP (Go) with Art. 23's rule as a resource policy
  (``benchmarks.cerbos``); ``GOMAXPROCS=1`` when pinned to one core;
* ``naive``: one SQLAlchemy query per check (``benchmarks.naive``).

A system knows how to start (pinned to core 1 with ``taskset -c 1``, or not), its port, the CPU
time of its process tree (``/proc/<pid>/stat``, summed over every worker process), and its
loads: a gRPC method and a request body for h2load. ``check`` makes one real gRPC call per load
with the very bytes h2load will send and raises ``WrongAnswer`` unless the answer is right:
h2load itself cannot see ``grpc-status``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from cerbos.engine.v1 import engine_pb2
from cerbos.response.v1 import response_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from permitgate_client.v1 import gate_pb2 as pb

from benchmarks import cerbos
from benchmarks.demo_registry import ALLOW_STRUCTURE, DENY3_STRUCTURES, STRUCTURES, DemoRegistry
from benchmarks.h2load import grpc_frame
from benchmarks.proctree import cpu_seconds, tree_of
from benchmarks.support import REPO, permitgate_command
from registry.demo import structure_id

__all__ = [
    "BATCH_CHECKS",
    "SERVER_CORE",
    "Load",
    "System",
    "Verdicts",
    "WrongAnswer",
    "bare_system",
    "cerbos_system",
    "gate_system",
    "naive_system",
    "serve_offers_workers",
    "unary_reply",
]

SERVER_CORE = "1"
"""The core a pinned server runs on (h2load gets the other one)."""
BATCH_CHECKS = 1_000
"""Checks in one CheckBatch message."""
SPREAD_CONNECTIONS = 8
"""Connections of the loads that compare 1 and 2 gate workers: the kernel hands each new
connection to one of the processes listening on the port (``SO_REUSEPORT``), so over one
connection a second worker would get no work at all."""
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
MAX_STALENESS = 3600
"""``--max-staleness`` of the benched gates: the registry service is not run alongside to
cosign the head, and a run lasts well under an hour, so every answer rests on fresh data."""

_CHECK_CONNECTION = "/permitgate.v1.PermitGate/CheckConnection"
_BATCH_CHECK = "/permitgate.v1.PermitGate/BatchCheck"

Verdicts = dict[str, tuple[int, int]]
"""Structure id -> (verdict, number of reasons) of the gate's permanent water connection."""


class WrongAnswer(RuntimeError):
    """A system's real answer to a load's request is not the right one."""


@dataclass
class Load:
    """One kind of request to one system: what h2load sends, and what each answer holds."""

    name: str  # "ALLOW", "ALLOW+receipt", "DENY/3", "batch", ...
    method: str
    body: Path  # the gRPC-framed request
    decisions: int = 1  # decisions per request
    batch: bool = False
    connections: int = 1  # the streams in flight are spread over this many connections
    unpinned_only: bool = False
    reply_bytes: int = 0  # the size of the checked answer (set by ``check``)

    @property
    def min_reply_bytes(self) -> int:
        """DATA bytes every answer must carry (the 5-byte prefix, and most of the message:
        times and ids vary in length by a few bytes)."""
        return 5 + self.reply_bytes * 9 // 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class System:
    """One server: how to start it, its loads, and how to check its answers."""

    name: str
    describe: str
    loads: list[Load]
    command: Callable[[bool], tuple[list[str], dict[str, str]]]  # pinned -> (argv, env)
    checker: Callable[[System], None]
    home: Path
    port: int = 0
    port_from_stdout: bool = False
    ready: Callable[[System], bool] = lambda system: True
    pinnable: bool = True
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    def start(self, pinned: bool) -> None:
        """Start the server (pinned to ``SERVER_CORE``, or not) and wait until it answers."""
        if not self.port_from_stdout:
            self.port = free_port()
        argv, env = self.command(pinned)
        if pinned:
            argv = ["taskset", "-c", SERVER_CORE, *argv]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,  # the Python servers stop when it closes
            stdout=subprocess.PIPE if self.port_from_stdout else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        if self.port_from_stdout:
            self.port = self._port_line(deadline)
        while not self._alive_and_ready():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.2)

    def _port_line(self, deadline: float) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
        return int(line.split()[1])

    def _alive_and_ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited {self.proc.returncode} at start:\n{self.log_tail()}"
            )
        try:
            return self.ready(self)
        except grpc.RpcError:
            return False

    def check(self) -> None:
        self.checker(self)

    def pids(self) -> list[int]:
        return [] if self.proc is None else tree_of(self.proc.pid)

    def cpu(self) -> float:
        """CPU seconds of the server's whole process tree (every worker process)."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} is not running:\n{self.log_tail()}")
        return sum(cpu_seconds(pid) or 0.0 for pid in self.pids())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- Real calls -----------------------------------------------------------------------------


def _unary_bytes(target: str, method: str, body: Path) -> bytes:
    """One real unary call sending exactly h2load's request message; the answer's bytes."""
    with grpc.insecure_channel(target) as channel:
        reply: bytes = channel.unary_unary(method)(_message(body), timeout=30)
        return reply


def _stream_bytes(target: str, method: str, body: Path) -> list[bytes]:
    """One real streaming call sending h2load's one request message; every answer's bytes."""
    with grpc.insecure_channel(target) as channel:
        return list(channel.stream_stream(method)(iter([_message(body)]), timeout=60))


def _message(body: Path) -> bytes:
    framed = body.read_bytes()
    if framed[:1] != b"\x00" or int.from_bytes(framed[1:5], "big") != len(framed) - 5:
        raise ValueError(f"{body} is not one uncompressed gRPC message")
    return framed[5:]


def _write_body(path: Path, message: bytes) -> Path:
    path.write_bytes(grpc_frame(message))
    return path


def _expect(system: System, what: str, ok: bool) -> None:
    if not ok:
        raise WrongAnswer(f"{system.name}: {what}")


def _verdict(decision: pb.Decision) -> str:
    return f"{pb.Verdict.Name(decision.verdict)}/{len(decision.reasons)}"


def unary_reply(system: System, load: Load) -> bytes:
    """The bytes of ``system``'s answer to one real call of the unary ``load``."""
    return _unary_bytes(system.target, load.method, load.body)


# --- The gate -------------------------------------------------------------------------------


def serve_offers_workers() -> bool:
    """Whether ``permitgate serve`` has a ``--workers`` option (N processes on one port)."""
    out = subprocess.run(
        [permitgate_command(), "serve", "--help"], capture_output=True, text=True, check=True
    )
    return "--workers" in out.stdout


def _connection(structure: str, *, receipt: bool = False) -> pb.ConnectionCheck:
    return pb.ConnectionCheck(
        structure_id=structure,
        utility=pb.UTILITY_WATER,
        kind=pb.CONNECTION_KIND_PERMANENT,
        application_id="APP-bench",
        receipt=receipt,
    )


def batch_structures() -> list[str]:
    """The structures of the one CheckBatch: every demo scenario, many times over."""
    return [structure_id(i) for i in range(BATCH_CHECKS)]


def _gate_loads(home: Path, name: str, *, single: bool, spread: bool) -> list[Load]:
    """``single``: every answer over one connection, and the batch; ``spread``: ALLOW and the
    batch over ``SPREAD_CONNECTIONS`` connections (unpinned: to compare with N workers)."""
    bodies = home / "bodies"
    bodies.mkdir(exist_ok=True)

    def body(label: str, message: bytes) -> Path:
        safe = label.replace("/", "").replace("+", "-").replace(" ", "-")
        return _write_body(bodies / f"{name}-{safe}.bin", message)

    batch = pb.CheckBatch()
    for n, sid in enumerate(batch_structures()):
        batch.checks.add(correlation_id=f"c{n}").connection.CopyFrom(_connection(sid))
    batch_body = body("batch", batch.SerializeToString())
    allow_body = body("ALLOW", _connection(ALLOW_STRUCTURE).SerializeToString())
    loads: list[Load] = []
    if single:
        loads.append(Load("ALLOW", _CHECK_CONNECTION, allow_body))
        loads += [
            Load(
                label,
                _CHECK_CONNECTION,
                body(label, _connection(sid, receipt=receipt).SerializeToString()),
            )
            for label, sid, receipt in (
                ("ALLOW+receipt", ALLOW_STRUCTURE, True),
                ("DENY/3", DENY3_STRUCTURES[0], False),
                ("DENY/3+receipt", DENY3_STRUCTURES[0], True),
            )
        ]
        loads.append(
            Load(
                f"batch {BATCH_CHECKS}",
                _BATCH_CHECK,
                batch_body,
                decisions=BATCH_CHECKS,
                batch=True,
            )
        )
    if spread:
        c = SPREAD_CONNECTIONS
        loads.append(
            Load(
                f"ALLOW c{c}",
                _CHECK_CONNECTION,
                allow_body,
                connections=c,
                unpinned_only=True,
            )
        )
        loads.append(
            Load(
                f"batch {BATCH_CHECKS} c{c}",
                _BATCH_CHECK,
                batch_body,
                decisions=BATCH_CHECKS,
                batch=True,
                connections=c,
                unpinned_only=True,
            )
        )
    return loads


def _health_serving(system: System) -> bool:
    with grpc.insecure_channel(system.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _check_gate(system: System, answers: Verdicts, scenario_ids: list[str]) -> None:
    """Each load's answer is right; fills ``answers`` with the gate's verdicts on the batch's
    structures and on one structure of every scenario (the other systems must agree)."""
    with grpc.insecure_channel(system.target) as channel:
        call = channel.unary_unary(
            _CHECK_CONNECTION,
            request_serializer=pb.ConnectionCheck.SerializeToString,
            response_deserializer=pb.Decision.FromString,
        )
        for sid in scenario_ids:
            decision: pb.Decision = call(_connection(sid), timeout=30)
            _expect(system, f"{sid}: stale data", decision.registry_version > 0)
            answers[sid] = (decision.verdict, len(decision.reasons))
    for load in system.loads:
        if load.batch:
            replies = [
                pb.DecisionBatch.FromString(raw)
                for raw in _stream_bytes(system.target, load.method, load.body)
            ]
            _expect(system, f"{load.name}: {len(replies)} answers, not 1", len(replies) == 1)
            decisions = replies[0].decisions
            _expect(
                system,
                f"{load.name}: {len(decisions)} decisions of {BATCH_CHECKS}",
                len(decisions) == BATCH_CHECKS,
            )
            for sid, decision in zip(batch_structures(), decisions, strict=True):
                _expect(system, f"{sid}: error {decision.error}", not decision.error)
                _expect(system, f"{sid}: stale data", decision.registry_version > 0)
                answers[sid] = (decision.verdict, len(decision.reasons))
            load.reply_bytes = replies[0].ByteSize()
            continue
        decision = pb.Decision.FromString(_unary_bytes(system.target, load.method, load.body))
        want = (pb.VERDICT_ALLOW, 0) if load.name.startswith("ALLOW") else (pb.VERDICT_DENY, 3)
        got = (decision.verdict, len(decision.reasons))
        _expect(system, f"{load.name}: answered {_verdict(decision)}", got == want)
        if want[1]:
            codes = {r.code for r in decision.reasons}
            only_missing = codes == {pb.REASON_CODE_MISSING_PERMIT}
            _expect(system, f"{load.name}: reasons {codes}", only_missing)
        _expect(
            system,
            f"{load.name}: receipt {'missing' if decision.receipt == b'' else 'unasked for'}",
            load.name.endswith("+receipt") == bool(decision.receipt),
        )
        answers[pb.ConnectionCheck.FromString(_message(load.body)).structure_id] = got
        load.reply_bytes = decision.ByteSize()


def gate_system(
    registry: DemoRegistry, answers: Verdicts, *, workers: int | None = None, spread: bool = False
) -> System:
    """``permitgate serve`` over a copy of the demo registry (``--workers N`` when given).

    ``spread``: also the loads over several connections (always, with ``workers``)."""
    name = "gate" if workers is None else f"gate-w{workers}"
    home = registry.home
    starts = iter(range(1, 1_000))

    def command(pinned: bool) -> tuple[list[str], dict[str, str]]:
        start = next(starts)  # a fresh database copy and state directory at each start
        argv = [
            permitgate_command(),
            "serve",
            "--db",
            registry.copy_database(f"{name}-{start}"),
            "--keys",
            str(registry.gate_keys),
            "--state",
            str(home / f"{name}-{start}-state"),
            "--listen",
            f"127.0.0.1:{system.port}",
            "--max-staleness",
            str(MAX_STALENESS),
        ]
        if workers is not None:
            argv += ["--workers", str(workers)]
        return argv, {}

    system = System(
        name=name,
        describe="permitgate serve"
        + ("" if workers is None else f" --workers {workers}")
        + f", SQLite registry of {STRUCTURES + len(DENY3_STRUCTURES):,} structures",
        loads=_gate_loads(home, name, single=workers is None, spread=spread or bool(workers)),
        command=command,
        checker=lambda s: _check_gate(s, answers, registry.scenario_ids()),
        home=home,
        ready=_health_serving,
        pinnable=workers is None,
    )
    return system


# --- bare -----------------------------------------------------------------------------------


def bare_system(home: Path, answer: bytes, allow_body: Path) -> System:
    """A constant reply: ``answer``, the gate's serialized ALLOW Decision."""
    answer_file = home / "bare-answer.bin"
    answer_file.write_bytes(answer)
    load = Load("ALLOW", _CHECK_CONNECTION, allow_body)

    def check(system: System) -> None:
        reply = _unary_bytes(system.target, load.method, load.body)
        _expect(system, "the answer differs from the gate's", reply == answer)
        load.reply_bytes = len(reply)

    return System(
        name="bare",
        describe="grpc.aio + uvloop, a constant reply (the gate's ALLOW answer)",
        loads=[load],
        command=lambda pinned: (
            [sys.executable, "-m", "benchmarks.servers", "bare", str(answer_file)],
            {},
        ),
        checker=check,
        home=home,
        port_from_stdout=True,
    )


# --- naive ----------------------------------------------------------------------------------


def naive_system(registry: DemoRegistry, answers: Verdicts, allow_body: Path) -> System:
    """One SQLAlchemy query per check, on a copy of the registry database."""
    load = Load("ALLOW", _CHECK_CONNECTION, allow_body)
    db_url = registry.copy_database("naive")

    def check(system: System) -> None:
        with grpc.insecure_channel(system.target) as channel:
            call = channel.unary_unary(
                load.method,
                request_serializer=pb.ConnectionCheck.SerializeToString,
                response_deserializer=pb.Decision.FromString,
            )
            for sid in registry.scenario_ids():
                decision: pb.Decision = call(_connection(sid), timeout=30)
                got = (decision.verdict, len(decision.reasons))
                _expect(
                    system,
                    f"{sid}: answered {_verdict(decision)}, the gate {answers.get(sid)}",
                    got == answers.get(sid),
                )
        load.reply_bytes = len(_unary_bytes(system.target, load.method, load.body))

    return System(
        name="naive",
        describe="grpc.aio + uvloop, one SQLAlchemy ORM query per check, no log",
        loads=[load],
        command=lambda pinned: ([sys.executable, "-m", "benchmarks.naive", db_url], {}),
        checker=check,
        home=registry.home,
        port_from_stdout=True,
    )


# --- Cerbos ---------------------------------------------------------------------------------


def _resources(registry: DemoRegistry, ids: list[str]) -> Iterator[engine_pb2.Resource]:
    for sid in ids:
        yield cerbos.resource_of(registry.records[sid])


def cerbos_system(registry: DemoRegistry, answers: Verdicts, binary: Path) -> System:
    """The Cerbos PDP with Art. 23's policy; the same structures as the gate's loads."""
    home = registry.home
    bodies = home / "bodies"
    bodies.mkdir(exist_ok=True)
    bulk_ids = batch_structures()[: cerbos.MAX_RESOURCES]
    one = cerbos.check_request(list(_resources(registry, [ALLOW_STRUCTURE])))
    bulk = cerbos.check_request(list(_resources(registry, bulk_ids)))
    loads = [
        Load(
            "ALLOW",
            cerbos.CHECK_RESOURCES,
            _write_body(bodies / "cerbos-one.bin", one.SerializeToString()),
        ),
        Load(
            f"bulk {cerbos.MAX_RESOURCES}",
            cerbos.CHECK_RESOURCES,
            _write_body(bodies / "cerbos-bulk.bin", bulk.SerializeToString()),
            decisions=cerbos.MAX_RESOURCES,
            batch=True,
        ),
    ]

    def command(pinned: bool) -> tuple[list[str], dict[str, str]]:
        config = cerbos.write_config(home, system.port, free_port())
        env = {"GOMAXPROCS": "1"} if pinned else {}
        return [str(binary), "server", f"--config={config}"], env

    def ready(system: System) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", system.port)) == 0

    def check(system: System) -> None:
        every = registry.scenario_ids() + bulk_ids
        request = cerbos.check_request(list(_resources(registry, every[: cerbos.MAX_RESOURCES])))
        allowed = cerbos.allowed(cerbos.check_resources(system.target, request))
        for sid, verdict in answers.items():
            if sid in allowed:
                _expect(
                    system,
                    f"{sid}: allowed {allowed[sid]}, the gate answered {verdict}",
                    allowed[sid] == (verdict[0] == pb.VERDICT_ALLOW),
                )
        for load in loads:
            raw = _unary_bytes(system.target, load.method, load.body)
            reply = response_pb2.CheckResourcesResponse.FromString(raw)
            _expect(
                system,
                f"{load.name}: {len(reply.results)} results of {load.decisions}",
                len(reply.results) == load.decisions,
            )
            load.reply_bytes = len(raw)
        _expect(
            system,
            "ALLOW: not allowed",
            cerbos.allowed(cerbos.check_resources(system.target, one)) == {ALLOW_STRUCTURE: True},
        )

    system = System(
        name="cerbos",
        describe=f"Cerbos PDP {cerbos.VERSION} (Go), CheckResources, Art. 23 as one rule",
        loads=loads,
        command=command,
        checker=check,
        home=home,
        ready=ready,
    )
    return system
