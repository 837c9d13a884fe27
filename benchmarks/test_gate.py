"""The gate against a bare ``grpc.aio`` server, side by side in one run (issue 3).

Two servers, each in a process of its own (``benchmarks.servers``), so that neither shares the
interpreter lock with the client, which runs here (in the pytest process, on uvloop):

* **bare**: ``CheckConnection`` returns one pre-built ``Decision``: a real answer of the gate,
  a DENY with one reason (the typical answer), so that the messages have the same size;
* **gate**: the real gate (``GateApp``) over a demo registry of 5,000 structures on SQLite.

The client sends the same ``ConnectionCheck`` requests to both (structure ids cycling over the
whole registry) with 32 calls in flight on one ``grpc.aio`` channel, alternating bare and gate
for ``ROUNDS`` rounds (the best round of each is kept), then one call at a time for the
unloaded round trip. Measured: calls per second, p50/p99 latency, and the server process's CPU
time per call (from ``/proc/<pid>/stat``), the fairest figure on a 2-core machine where the
client itself uses most of a core. Then, against the gate only: ``BatchCheck`` throughput
(batches of 1,000) and the cost of ``receipt=True`` (paired runs with and without).

Every load also records how much CPU *other* processes used meanwhile (``others``, in cores):
on a shared machine, a disturbed round shows it. Everything is in ``benchmark.extra_info``; a
summary table is printed at the end of the module (run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import os
import resource
import select
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc
import pytest
import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

from benchmarks.proctree import cpu_seconds, machine_busy_seconds
from benchmarks.support import REPO, permitgate
from registry.demo import structure_id

STRUCTURES = 5_000
UNARY_CALLS = 20_000
CONCURRENCY = 32
ROUNDS = 3  # alternating bare and gate; the best round of each is kept
SERIAL_CALLS = 2_000
WARMUP_CALLS = 1_000
BATCH_SIZE = 1_000
BATCHES = 100
BATCH_ROUNDS = 3
RECEIPT_CALLS = 5_000
RECEIPT_BATCHES = 20
RECEIPT_ROUNDS = 3
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 300.0

T = TypeVar("T")


def _run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return uvloop.run(coro())


# ---------------------------------------------------------------------------------------------
# Server processes


class ServerProcess:
    """``python -m benchmarks.servers ARGS``; knows its port and reads its CPU time."""

    def __init__(
        self, name: str, args: list[str], log: Path, *, decision_log: Path | None = None
    ) -> None:
        self.name = name
        self.decision_log = decision_log  # the SQLite file the gate logs its decisions to
        self._log: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.servers", *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.log = log
        self.port = self._wait_for_port()
        self.target = f"127.0.0.1:{self.port}"

    def _wait_for_port(self) -> int:
        """The port from the ``port N`` line the server prints once serving."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("port "):
            self.close()
            raise RuntimeError(f"{self.name} server did not start:\n{self.log.read_text()}")
        return int(line.split()[1])

    def logged(self) -> int:
        """How many decisions the gate has written to its decision log so far."""
        if self.decision_log is None:
            return 0
        uri = f"file:{self.decision_log}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM decision_log").fetchone()[0])

    def cpu(self) -> float:
        seconds = cpu_seconds(self.proc.pid)
        if seconds is None:
            raise RuntimeError(f"{self.name} server has exited:\n{self.log.read_text()}")
        return seconds

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the server stops at end of input
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class Load:
    """One load run against one server."""

    server: str
    calls: int
    concurrency: int
    seconds: float
    server_cpu: float
    client_cpu: float
    machine_cpu: float  # busy CPU seconds of the whole machine meanwhile
    latencies: list[float]
    drain_seconds: float = 0.0  # after the last answer, until the decision log had them all
    server_cpu_logged: float = 0.0  # the server's CPU time until then

    @property
    def sustained_per_second(self) -> float:
        """Calls per second counting the time the gate took to log them all."""
        return self.calls / (self.seconds + self.drain_seconds)

    @property
    def server_us_per_call_logged(self) -> float:
        return self.server_cpu_logged / self.calls * 1e6

    @property
    def others_load(self) -> float:
        """Cores' worth of CPU that other processes used meanwhile, on average."""
        others = self.machine_cpu - self.server_cpu - self.client_cpu
        return max(0.0, others) / self.seconds

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def server_us_per_call(self) -> float:
        return self.server_cpu / self.calls * 1e6

    @property
    def client_us_per_call(self) -> float:
        return self.client_cpu / self.calls * 1e6

    def figures(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "calls_per_s": round(self.per_second),
            "p50_ms": round(self.percentile(50) * 1e3, 3) if self.latencies else None,
            "p99_ms": round(self.percentile(99) * 1e3, 3) if self.latencies else None,
            "server_cpu_us_per_call": round(self.server_us_per_call, 1),
            "drain_s": round(self.drain_seconds, 3),
            "sustained_calls_per_s": round(self.sustained_per_second),
            "server_cpu_us_per_call_incl_log": round(self.server_us_per_call_logged, 1),
            "client_cpu_us_per_call": round(self.client_us_per_call, 1),
            "others_load": round(self.others_load, 2),
        }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_now(server: ServerProcess) -> tuple[float, float, float]:
    return server.cpu(), _own_cpu(), machine_busy_seconds()


def _cpu_since(
    server: ServerProcess, before: tuple[float, float, float]
) -> tuple[float, float, float]:
    """CPU seconds since ``before``: (the server's, this client's, the whole machine's)."""
    now = _cpu_now(server)
    return now[0] - before[0], now[1] - before[1], now[2] - before[2]


async def _drain(server: ServerProcess, expected: int) -> None:
    """Wait until the gate has logged ``expected`` decisions in all (no-op for the bare one).

    The gate appends each decision to an in-memory buffer and writes the buffer in bulk every
    half second; a load that ends before the log has caught up leaves work behind, which would
    land on the next measurement. Every client function here ends by waiting for it.
    """
    if server.decision_log is None:
        return
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (logged := server.logged()) < expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"the gate logged {logged} of {expected} decisions")
        await asyncio.sleep(0.05)


async def _measured(
    server: ServerProcess, calls: int, base: int, run: Callable[[], Coroutine[Any, Any, None]]
) -> tuple[float, float, tuple[float, float, float], float]:
    """Run ``run`` (``calls`` decisions), then wait for the log to hold ``base + calls``.

    Returns (seconds, drain seconds, CPU during the run, server CPU until logged).
    """
    before = _cpu_now(server)
    started = time.perf_counter()
    await run()
    seconds = time.perf_counter() - started
    during = _cpu_since(server, before)
    await _drain(server, base + calls)
    drain = time.perf_counter() - started - seconds
    return seconds, drain, during, server.cpu() - before[0]


async def _unary(
    server: ServerProcess,
    requests: list[pb.ConnectionCheck],
    calls: int,
    concurrency: int,
    *,
    warmup: int = WARMUP_CALLS,
) -> Load:
    """``calls`` CheckConnection calls, ``concurrency`` in flight, on one channel."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = gate_pb2_grpc.PermitGateStub(channel).CheckConnection  # type: ignore[no-untyped-call]
        latencies = [0.0] * calls

        async def worker(indexes: Iterator[int], record: bool) -> None:
            for i in indexes:
                started = time.perf_counter()
                await call(requests[i % len(requests)], timeout=30)
                if record:
                    latencies[i] = time.perf_counter() - started

        async def run(n: int, record: bool) -> None:
            indexes = iter(range(n))  # shared: each worker takes the next index
            await asyncio.gather(*(worker(indexes, record) for _ in range(concurrency)))

        base = server.logged()
        await run(warmup, False)
        await _drain(server, base + warmup)
        seconds, drain, during, logged_cpu = await _measured(
            server, calls, base + warmup, lambda: run(calls, True)
        )
        return Load(
            server.name,
            calls,
            concurrency,
            seconds,
            *during,
            latencies,
            drain_seconds=drain,
            server_cpu_logged=logged_cpu,
        )


async def _batches(server: ServerProcess, batches: list[pb.CheckBatch], rounds: int) -> Load:
    """Stream ``rounds`` batches (cycling over ``batches``) through one BatchCheck call."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]

        async def stream(n: int) -> int:
            call = stub.BatchCheck(timeout=600)

            async def send() -> None:
                for i in range(n):
                    await call.write(batches[i % len(batches)])
                await call.done_writing()

            sender = asyncio.get_running_loop().create_task(send())
            decisions = 0
            for _ in range(n):
                reply: pb.DecisionBatch = await call.read()
                decisions += len(reply.decisions)
                failed = next((d for d in reply.decisions if d.error), None)
                if failed is not None:
                    raise AssertionError(f"batch answered with an error: {failed}")
            await sender
            return decisions

        base = server.logged()
        base += await stream(2)  # warm-up
        await _drain(server, base)
        answered: list[int] = []

        async def measured() -> None:
            answered.append(await stream(rounds))

        decisions = rounds * BATCH_SIZE
        seconds, drain, during, logged_cpu = await _measured(server, decisions, base, measured)
        assert answered == [decisions]
        return Load(
            server.name,
            decisions,
            1,
            seconds,
            *during,
            [],
            drain_seconds=drain,
            server_cpu_logged=logged_cpu,
        )


def _unary_load(
    server: ServerProcess,
    requests: list[pb.ConnectionCheck],
    calls: int,
    concurrency: int,
    *,
    warmup: int = WARMUP_CALLS,
) -> Load:
    return _run(lambda: _unary(server, requests, calls, concurrency, warmup=warmup))


def _batch_load(server: ServerProcess, batches: list[pb.CheckBatch], rounds: int) -> Load:
    return _run(lambda: _batches(server, batches, rounds))


async def _answers(server: ServerProcess, requests: list[pb.ConnectionCheck]) -> list[pb.Decision]:
    """The answers to ``requests``, in order (``CONCURRENCY`` in flight: gRPC cancels calls
    when thousands are started at once, on any server)."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = gate_pb2_grpc.PermitGateStub(channel).CheckConnection  # type: ignore[no-untyped-call]
        answers: list[pb.Decision | None] = [None] * len(requests)

        async def worker(indexes: Iterator[int]) -> None:
            for i in indexes:
                answers[i] = await call(requests[i], timeout=30)

        base = server.logged()
        indexes = iter(range(len(requests)))
        await asyncio.gather(*(worker(indexes) for _ in range(CONCURRENCY)))
        await _drain(server, base + len(requests))
        return [answer for answer in answers if answer is not None]


# ---------------------------------------------------------------------------------------------
# Fixtures


def _connection(i: int, *, receipt: bool = False) -> pb.ConnectionCheck:
    return pb.ConnectionCheck(
        structure_id=structure_id(i),
        utility=pb.UTILITY_WATER,
        kind=pb.CONNECTION_KIND_PERMANENT,
        application_id=f"APP-{i:06d}",
        receipt=receipt,
    )


def _batch(start: int, *, receipt: bool = False) -> pb.CheckBatch:
    batch = pb.CheckBatch()
    for n in range(BATCH_SIZE):
        i = (start + n) % STRUCTURES
        check = batch.checks.add(correlation_id=f"c{start + n}")
        check.connection.CopyFrom(_connection(i, receipt=receipt))
    return batch


@dataclass
class Bench:
    gate: ServerProcess
    bare: ServerProcess
    requests: list[pb.ConnectionCheck]
    answer_mix: dict[str, int]
    bare_answer_bytes: int
    gate_answer_mean_bytes: float
    results: dict[str, Any]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    home = tmp_path_factory.mktemp("gate")
    url, keys = f"sqlite:///{home / 'registry.db'}", str(home / "keys")
    permitgate("registry", "init", "--db", url, "--keys", keys)
    demo = home / "demo.jsonl"
    demo.write_text(permitgate("registry", "demo-data", "--structures", str(STRUCTURES)).stdout)
    permitgate("registry", "import", str(demo), "--db", url, "--keys", keys)

    requests = [_connection(i) for i in range(STRUCTURES)]
    gate = ServerProcess(
        "gate", ["gate", url, keys], home / "gate.log", decision_log=home / "registry.db"
    )
    bare: ServerProcess | None = None
    try:
        answers = _run(lambda: _answers(gate, requests))
        for answer in answers:  # the gate answers from its registry, not as stale or empty
            assert answer.registry_version > 0
            assert not any(r.code == pb.REASON_CODE_REGISTRY_STALE for r in answer.reasons)
        mix = Counter(
            f"{pb.Verdict.Name(a.verdict).removeprefix('VERDICT_')}/{len(a.reasons)}"
            for a in answers
        )
        typical = next(a for a in answers if a.verdict == pb.VERDICT_DENY and len(a.reasons) == 1)
        answer_file = home / "bare-answer.bin"
        answer_file.write_bytes(typical.SerializeToString())
        bare = ServerProcess("bare", ["bare", str(answer_file)], home / "bare.log")
        results: dict[str, Any] = {}
        yield Bench(
            gate=gate,
            bare=bare,
            requests=requests,
            answer_mix=dict(sorted(mix.items())),
            bare_answer_bytes=typical.ByteSize(),
            gate_answer_mean_bytes=sum(a.ByteSize() for a in answers) / len(answers),
            results=results,
        )
        _print_summary(results)
    finally:
        if bare is not None:
            bare.close()
        gate.close()


# ---------------------------------------------------------------------------------------------
# Benchmarks


def test_check_connection_gate_vs_bare(benchmark: Any, bench: Bench) -> None:
    def run() -> dict[str, list[Load]]:
        loads: dict[str, list[Load]] = {"bare": [], "gate": []}
        for _ in range(ROUNDS):
            for server in (bench.bare, bench.gate):
                load = _unary_load(server, bench.requests, UNARY_CALLS, CONCURRENCY)
                loads[server.name].append(load)
        for server in (bench.bare, bench.gate):
            load = _unary_load(server, bench.requests, SERIAL_CALLS, 1, warmup=200)
            loads[f"{server.name}_serial"] = [load]
        return loads

    loads: dict[str, list[Load]] = benchmark.pedantic(run, rounds=1, iterations=1)
    best = {name: max(runs, key=lambda load: load.per_second) for name, runs in loads.items()}
    info: dict[str, Any] = {name: load.figures() for name, load in best.items()}
    info["all_rounds_calls_per_s"] = {
        name: [round(load.per_second) for load in runs] for name, runs in loads.items()
    }
    info["ratio_gate_to_bare"] = {
        "throughput": round(best["gate"].per_second / best["bare"].per_second, 3),
        "p50": round(best["gate"].percentile(50) / best["bare"].percentile(50), 3),
        "p99": round(best["gate"].percentile(99) / best["bare"].percentile(99), 3),
        "server_cpu_per_call": round(
            best["gate"].server_us_per_call / best["bare"].server_us_per_call, 3
        ),
        "server_cpu_per_call_incl_log": round(
            best["gate"].server_us_per_call_logged / best["bare"].server_us_per_call_logged, 3
        ),
        "sustained_throughput": round(
            best["gate"].sustained_per_second / best["bare"].sustained_per_second, 3
        ),
        "serial_p50": round(
            best["gate_serial"].percentile(50) / best["bare_serial"].percentile(50), 3
        ),
    }
    info["answer_bytes"] = {
        "bare": bench.bare_answer_bytes,
        "gate_mean": round(bench.gate_answer_mean_bytes, 1),
    }
    info["gate_answer_mix"] = bench.answer_mix
    info["load_average"] = os.getloadavg()
    benchmark.extra_info.update(info)
    bench.results["unary"] = info
    assert all(load.calls == len(load.latencies) for load in best.values())


def test_batch_check_throughput(benchmark: Any, bench: Bench) -> None:
    batches = [_batch(start) for start in range(0, STRUCTURES, BATCH_SIZE)]

    def run() -> list[Load]:
        return [_batch_load(bench.gate, batches, BATCHES) for _ in range(BATCH_ROUNDS)]

    loads: list[Load] = benchmark.pedantic(run, rounds=1, iterations=1)
    load = max(loads, key=lambda one: one.per_second)
    info: dict[str, Any] = {
        "all_rounds_decisions_per_s": [round(one.per_second) for one in loads],
        "batch_size": BATCH_SIZE,
        "batches": BATCHES,
        "decisions": load.calls,
        "seconds": round(load.seconds, 3),
        "decisions_per_s": round(load.per_second),
        "drain_s": round(load.drain_seconds, 3),
        "sustained_decisions_per_s": round(load.sustained_per_second),
        "server_cpu_us_per_decision": round(load.server_us_per_call, 2),
        "server_cpu_us_per_decision_incl_log": round(load.server_us_per_call_logged, 2),
        "client_cpu_us_per_decision": round(load.client_us_per_call, 2),
        "others_load": round(load.others_load, 2),
    }
    info["best"] = load.figures()
    info["load_average"] = os.getloadavg()
    benchmark.extra_info.update(info)
    bench.results["batch"] = info
    assert load.calls == BATCH_SIZE * BATCHES


def test_receipt_cost(benchmark: Any, bench: Bench) -> None:
    """The same checks with and without ``receipt=True``, paired, in ``RECEIPT_ROUNDS`` rounds.

    Three views of the cost of a receipt, each the median over rounds of (with - without):
    server CPU per unary call (32 in flight), p50 latency of unary calls one at a time (the
    cost on the request's path), and server CPU per decision in ``BatchCheck`` (server CPU
    counted until the decision log holds every decision).
    """
    signed = [_connection(i, receipt=True) for i in range(STRUCTURES)]
    plain_batches = [_batch(start) for start in range(0, STRUCTURES, BATCH_SIZE)]
    signed_batches = [_batch(start, receipt=True) for start in range(0, STRUCTURES, BATCH_SIZE)]

    def run() -> dict[str, list[Load]]:
        gate, plain = bench.gate, bench.requests
        loads: dict[str, list[Load]] = defaultdict(list)
        for _ in range(RECEIPT_ROUNDS):
            for name, requests in (("plain", plain), ("receipt", signed)):
                load = _unary_load(gate, requests, RECEIPT_CALLS, CONCURRENCY)
                loads[f"unary_{name}"].append(load)
            for name, requests in (("plain", plain), ("receipt", signed)):
                load = _unary_load(gate, requests, SERIAL_CALLS // 2, 1, warmup=200)
                loads[f"serial_{name}"].append(load)
            for name, batches in (("plain", plain_batches), ("receipt", signed_batches)):
                loads[f"batch_{name}"].append(_batch_load(gate, batches, RECEIPT_BATCHES))
        return loads

    rounds: dict[str, list[Load]] = benchmark.pedantic(run, rounds=1, iterations=1)
    sample = _run(lambda: _answers(bench.gate, signed[:14]))
    assert all(answer.receipt.startswith(b"{") for answer in sample)
    receipt_bytes = sum(len(a.receipt) for a in sample) / len(sample)

    def paired(kind: str, measure: Callable[[Load], float]) -> float:
        pairs = zip(rounds[f"{kind}_receipt"], rounds[f"{kind}_plain"], strict=True)
        return statistics.median(measure(yes) - measure(no) for yes, no in pairs)

    best = {name: max(runs, key=lambda one: one.per_second) for name, runs in rounds.items()}
    info: dict[str, Any] = {name: load.figures() for name, load in best.items()}
    info["all_rounds_calls_per_s"] = {
        name: [round(load.per_second) for load in runs] for name, runs in rounds.items()
    }
    info["receipt_cost_us"] = {
        "unary_server_cpu_per_call": round(
            paired("unary", lambda x: x.server_us_per_call_logged), 1
        ),
        "serial_p50_latency": round(paired("serial", lambda x: x.percentile(50) * 1e6), 1),
        "batch_server_cpu_per_decision": round(
            paired("batch", lambda x: x.server_us_per_call_logged), 1
        ),
    }
    info["receipt_mean_bytes"] = round(receipt_bytes)
    info["answer_mean_bytes_with_receipt"] = round(sum(a.ByteSize() for a in sample) / len(sample))
    info["ed25519_sign_us_in_process"] = round(_ed25519_sign_us(), 1)
    info["load_average"] = os.getloadavg()
    benchmark.extra_info.update(info)
    bench.results["receipts"] = info


def _ed25519_sign_us(n: int = 5_000) -> float:
    """One bare Ed25519 signature of a receipt-sized message, in this process (µs)."""
    key = Ed25519PrivateKey.generate()
    message = b"x" * 1_000
    started = time.perf_counter()
    for _ in range(n):
        key.sign(message)
    return (time.perf_counter() - started) / n * 1e6


# ---------------------------------------------------------------------------------------------
# Summary


_HEADER = (
    f"  {'':<36}{'calls/s':>9}{'sustained':>10}{'p50 ms':>8}{'p99 ms':>8}"
    f"{'server µs':>10}{'+log µs':>9}{'client µs':>10}{'others':>7}"
)
_LEGEND = (
    "  calls/s: answers per second while the client sent; sustained: counting the time until\n"
    "  the gate's decision log held them all. server/client µs: CPU time per call (server\n"
    "  while answering; +log: until logged). others: cores' worth of CPU that other\n"
    "  processes on the machine used meanwhile."
)


def _row(label: str, f: dict[str, Any]) -> str:
    # batches have no per-call latency
    latency = " " * 16 if f["p50_ms"] is None else f"{f['p50_ms']:>8.3f}{f['p99_ms']:>8.3f}"
    return (
        f"  {label:<36}{f['calls_per_s']:>9,}{f['sustained_calls_per_s']:>10,}{latency}"
        f"{f['server_cpu_us_per_call']:>10.1f}{f['server_cpu_us_per_call_incl_log']:>9.1f}"
        f"{f['client_cpu_us_per_call']:>10.1f}{f['others_load']:>7.2f}"
    )


def _print_summary(results: dict[str, Any]) -> None:
    cores = os.cpu_count()
    lines = [
        f"\n== the gate and a bare grpc.aio server ({cores} cores; the client is the pytest "
        "process)",
        _HEADER,
    ]
    unary = results.get("unary")
    if unary is not None:
        for name, label in (
            ("bare", f"CheckConnection bare, {CONCURRENCY} in flight"),
            ("gate", f"CheckConnection gate, {CONCURRENCY} in flight"),
            ("bare_serial", "CheckConnection bare, 1 at a time"),
            ("gate_serial", "CheckConnection gate, 1 at a time"),
        ):
            lines.append(_row(label, unary[name]))
    batch = results.get("batch")
    if batch is not None:
        lines.append(_row(f"BatchCheck gate, {BATCHES} x {BATCH_SIZE}", batch["best"]))
    receipts = results.get("receipts")
    if receipts is not None:
        for name, label in (
            ("unary_plain", f"CheckConnection gate, {CONCURRENCY} in flight"),
            ("unary_receipt", "  ... with receipt=True"),
            ("serial_plain", "CheckConnection gate, 1 at a time"),
            ("serial_receipt", "  ... with receipt=True"),
            ("batch_plain", f"BatchCheck gate, {RECEIPT_BATCHES} x {BATCH_SIZE}"),
            ("batch_receipt", "  ... with receipt=True"),
        ):
            lines.append(_row(label, receipts[name]))
    lines.append(_LEGEND)
    if unary is not None:
        ratio = unary["ratio_gate_to_bare"]
        lines.append(
            f"  gate/bare, {CONCURRENCY} in flight: throughput {ratio['throughput']}, "
            f"sustained {ratio['sustained_throughput']}, p50 {ratio['p50']}, p99 {ratio['p99']}, "
            f"server CPU per call {ratio['server_cpu_per_call']} "
            f"({ratio['server_cpu_per_call_incl_log']} with logging); "
            f"1 at a time: p50 {ratio['serial_p50']}"
        )
        lines.append(
            f"  answer size: bare {unary['answer_bytes']['bare']} B, gate mean "
            f"{unary['answer_bytes']['gate_mean']} B; gate answers (verdict/reasons): "
            f"{unary['gate_answer_mix']}"
        )
        lines.append(f"  every round (calls/s): {unary['all_rounds_calls_per_s']}")
    if batch is not None:
        lines.append(
            f"  BatchCheck, every round (decisions/s): {batch['all_rounds_decisions_per_s']}"
        )
    if receipts is not None:
        cost = receipts["receipt_cost_us"]
        lines.append(
            f"  receipt=True costs (median of {RECEIPT_ROUNDS} paired rounds): server CPU "
            f"+{cost['unary_server_cpu_per_call']} µs per unary call, "
            f"+{cost['batch_server_cpu_per_decision']} µs per batched decision; "
            f"p50 latency one at a time +{cost['serial_p50_latency']} µs"
        )
        lines.append(
            f"  (a bare Ed25519 signature here: {receipts['ed25519_sign_us_in_process']} µs; "
            f"a receipt is ~{receipts['receipt_mean_bytes']} B, the answer with it "
            f"~{receipts['answer_mean_bytes_with_receipt']} B)"
        )
        lines.append(f"  receipts, every round (calls/s): {receipts['all_rounds_calls_per_s']}")
    loads = [round(r["load_average"][0], 2) for r in results.values() if "load_average" in r]
    if loads:
        lines.append(f"  1-minute load average after each test: {loads}")
    print("\n".join(lines))
