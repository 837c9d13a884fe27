"""``Client.check_many`` next to a raw ``BatchCheck`` stream, against the same gate, in one run
(issue 6: at least 0.7x the raw rate).

The gate (``benchmarks.servers gate``: ``GateApp`` over a demo registry of 5,000 structures on
SQLite) runs in a process of its own; the clients run here, each over one channel of its own:

* **raw**: a blocking stub's ``BatchCheck`` fed pre-built ``CheckBatch`` messages (1,000
  connection checks each, built before the clock starts); the reader looks at every decision's
  ``error``. This is the floor: nothing on the client's side but gRPC.
* **client**: ``Client.check_many`` over checks built while it runs, from plain rows
  ``(structure_id, application_id)``, as a caller reading a file would; the reader takes every
  result's ``verdict``. The same 1,000-check batches, the default window of 8.
* **client, pre-built**: the same, over a list of ``Check`` built beforehand (what the client
  costs beyond building the checks).
* the asyncio pair: a raw ``grpc.aio`` stream of the same pre-built batches, and
  ``AsyncClient.check_many`` over checks built while it runs, on uvloop.

Each load streams ``CHECKS`` checks; the loads alternate for ``ROUNDS`` rounds and the best
round of each is kept. Every round is reported, with the client/raw ratio within each round (on
a shared machine, neighbouring loads see the same weather). The gate writes every decision to
its decision log in the background, so after each load the next waits until the log holds them
all: no load pays for the one before. Measured per load: checks/s while streaming, the CPU time
per check of this process (the client, gRPC's threads included) and of the gate, and how much
CPU other processes used meanwhile. A summary is printed at the end (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import uvloop
from permitgate_client import AsyncClient, Check, Client, Decision, Refused
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

from benchmarks.proctree import machine_busy_seconds
from benchmarks.support import permitgate
from benchmarks.test_gate import ServerProcess
from registry.demo import structure_id

STRUCTURES = 5_000
BATCH = 1_000
CHECKS = 50_000
ROUNDS = 5
WARMUP = 5_000
TARGET_RATIO = 0.7
DRAIN_TIMEOUT = 300.0

Row = tuple[str, str]  # (structure_id, application_id)


@dataclass
class Load:
    """One load: ``checks`` answered in ``seconds``, and the CPU it took on each side."""

    name: str
    checks: int
    seconds: float
    client_cpu: float
    gate_cpu: float
    machine_cpu: float

    @property
    def per_second(self) -> float:
        return self.checks / self.seconds

    @property
    def others(self) -> float:
        """Cores' worth of CPU other processes used meanwhile."""
        return max(0.0, self.machine_cpu - self.client_cpu - self.gate_cpu) / self.seconds

    def figures(self) -> dict[str, Any]:
        return {
            "checks": self.checks,
            "seconds": round(self.seconds, 3),
            "checks_per_s": round(self.per_second),
            "client_cpu_us_per_check": round(self.client_cpu / self.checks * 1e6, 2),
            "gate_cpu_us_per_check": round(self.gate_cpu / self.checks * 1e6, 2),
            "others_load": round(self.others, 2),
        }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Gate:
    """The gate process, with a measured way to run a load against it."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.logged = server.logged()

    def measure(self, name: str, checks: int, run: Callable[[], int]) -> Load:
        """Run ``run`` (which answers ``checks`` checks), then wait for the decision log."""
        gate_before = self.server.cpu()
        client_before, machine_before = _own_cpu(), machine_busy_seconds()
        started = time.perf_counter()
        answered = run()
        seconds = time.perf_counter() - started
        load = Load(
            name,
            checks,
            seconds,
            _own_cpu() - client_before,
            self.server.cpu() - gate_before,
            machine_busy_seconds() - machine_before,
        )
        if answered != checks:
            raise AssertionError(f"{name}: {answered} answers to {checks} checks")
        self.drain(checks)
        return load

    def drain(self, checks: int) -> None:
        self.logged += checks
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while (logged := self.server.logged()) < self.logged:
            if time.monotonic() > deadline:
                raise AssertionError(f"the gate logged {logged} of {self.logged} decisions")
            time.sleep(0.05)


# --- the loads ---------------------------------------------------------------------------------


def _rows(n: int) -> list[Row]:
    return [(structure_id(i % STRUCTURES), f"APP-{i % STRUCTURES:06d}") for i in range(n)]


def _batches(rows: list[Row]) -> list[pb.CheckBatch]:
    """The rows as ``CheckBatch`` messages of ``BATCH`` connection checks, built up front."""
    out = []
    for start in range(0, len(rows), BATCH):
        batch = pb.CheckBatch()
        for n, (sid, app) in enumerate(rows[start : start + BATCH]):
            check = batch.checks.add(correlation_id=f"c{start + n}")
            body = check.connection
            body.structure_id = sid
            body.utility = pb.UTILITY_WATER
            body.kind = pb.CONNECTION_KIND_PERMANENT
            body.application_id = app
        out.append(batch)
    return out


def _checks(rows: list[Row]) -> Iterator[Check]:
    """The rows as ``Check`` objects, built as they are pulled."""
    for n, (sid, app) in enumerate(rows):
        yield Check.connection(
            sid, utility="water", kind="permanent", application_id=app, correlation_id=f"c{n}"
        )


def _count(results: Iterator[Decision | Refused]) -> int:
    n = 0
    for result in results:
        if not isinstance(result, Decision):
            raise AssertionError(f"refused: {result}")
        result.verdict  # noqa: B018  (each answer is looked at, as a caller would)
        n += 1
    return n


def raw_stream(target: str, batches: list[pb.CheckBatch]) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
        n = 0
        for reply in stub.BatchCheck(iter(batches), timeout=600):
            for decision in reply.decisions:
                if decision.error:
                    raise AssertionError(f"refused: {decision.error}")
                n += 1
        return n


def client_stream(target: str, checks: Iterator[Check] | list[Check]) -> int:
    with Client(target) as client:
        return _count(client.check_many(checks))


def raw_stream_async(target: str, batches: list[pb.CheckBatch]) -> int:
    async def run() -> int:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
            call = stub.BatchCheck(timeout=600)

            async def send() -> None:
                for batch in batches:
                    await call.write(batch)
                await call.done_writing()

            sender = asyncio.get_running_loop().create_task(send())
            n = 0
            async for reply in call:
                for decision in reply.decisions:
                    if decision.error:
                        raise AssertionError(f"refused: {decision.error}")
                    n += 1
            await sender
            return n

    return uvloop.run(run())


def client_stream_async(target: str, rows: list[Row]) -> int:
    async def run() -> int:
        async with AsyncClient(target) as client:
            n = 0
            async for result in client.check_many(_checks(rows)):
                if not isinstance(result, Decision):
                    raise AssertionError(f"refused: {result}")
                result.verdict  # noqa: B018
                n += 1
            return n

    return uvloop.run(run())


# --- the benchmark -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    home = tmp_path_factory.mktemp("check-many")
    url, keys = f"sqlite:///{home / 'registry.db'}", str(home / "keys")
    permitgate("registry", "init", "--db", url, "--keys", keys)
    demo = home / "demo.jsonl"
    demo.write_text(permitgate("registry", "demo-data", "--structures", str(STRUCTURES)).stdout)
    permitgate("registry", "import", str(demo), "--db", url, "--keys", keys)
    server = ServerProcess(
        "gate", ["gate", url, keys], home / "gate.log", decision_log=Path(home / "registry.db")
    )
    try:
        yield Gate(server)
    finally:
        server.close()


def test_check_many_vs_raw_batch_stream(benchmark: Any, gate: Gate) -> None:
    rows = _rows(CHECKS)
    batches = _batches(rows)
    prebuilt = list(_checks(rows))
    target = gate.server.target
    loads: dict[str, Callable[[], int]] = {
        "raw": lambda: raw_stream(target, batches),
        "client": lambda: client_stream(target, _checks(rows)),
        "client_prebuilt": lambda: client_stream(target, prebuilt),
        "raw_async": lambda: raw_stream_async(target, batches),
        "client_async": lambda: client_stream_async(target, rows),
    }

    def run() -> dict[str, list[Load]]:
        gate.measure("warm-up", WARMUP, lambda: client_stream(target, _checks(rows[:WARMUP])))
        runs: dict[str, list[Load]] = {name: [] for name in loads}
        for _ in range(ROUNDS):
            for name, load in loads.items():
                runs[name].append(gate.measure(name, CHECKS, load))
        return runs

    runs: dict[str, list[Load]] = benchmark.pedantic(run, rounds=1, iterations=1)
    best = {name: max(loads, key=lambda load: load.per_second) for name, loads in runs.items()}
    median = {
        name: statistics.median(load.per_second for load in loads) for name, loads in runs.items()
    }
    paired = [
        client.per_second / raw.per_second
        for client, raw in zip(runs["client"], runs["raw"], strict=True)
    ]
    ratios = {
        "client_to_raw": round(best["client"].per_second / best["raw"].per_second, 3),
        "client_to_raw_median": round(median["client"] / median["raw"], 3),
        "client_to_raw_paired_median": round(statistics.median(paired), 3),
        "client_prebuilt_to_raw": round(
            best["client_prebuilt"].per_second / best["raw"].per_second, 3
        ),
        "client_async_to_raw_async": round(
            best["client_async"].per_second / best["raw_async"].per_second, 3
        ),
    }
    info: dict[str, Any] = {name: load.figures() for name, load in best.items()}
    info["all_rounds_checks_per_s"] = {
        name: [round(load.per_second) for load in loads] for name, loads in runs.items()
    }
    info["ratios"] = ratios
    info["paired_client_to_raw"] = [round(ratio, 3) for ratio in paired]
    info["target_ratio"] = TARGET_RATIO
    info["load_average"] = os.getloadavg()
    benchmark.extra_info.update(info)
    _print_summary(info)
    assert all(load.checks == CHECKS for loads in runs.values() for load in loads)


_LABELS = {
    "raw": "raw BatchCheck, pre-built batches",
    "client": "Client.check_many, checks built live",
    "client_prebuilt": "Client.check_many, pre-built Checks",
    "raw_async": "raw grpc.aio BatchCheck, pre-built",
    "client_async": "AsyncClient.check_many, built live",
}


def _print_summary(info: dict[str, Any]) -> None:
    lines = [
        f"\n== check_many next to a raw BatchCheck stream ({os.cpu_count()} cores; "
        f"{CHECKS:,} checks per load, batches of {BATCH:,}, best of {ROUNDS} rounds)",
        f"  {'':<40}{'checks/s':>10}{'client µs':>11}{'gate µs':>9}{'others':>8}",
    ]
    for name, label in _LABELS.items():
        f = info[name]
        lines.append(
            f"  {label:<40}{f['checks_per_s']:>10,}{f['client_cpu_us_per_check']:>11.2f}"
            f"{f['gate_cpu_us_per_check']:>9.2f}{f['others_load']:>8.2f}"
        )
    ratios = info["ratios"]
    lines.append(
        f"  client/raw: {ratios['client_to_raw']} (medians {ratios['client_to_raw_median']}; "
        f"pre-built Checks {ratios['client_prebuilt_to_raw']}; asyncio "
        f"{ratios['client_async_to_raw_async']}); target {TARGET_RATIO}"
    )
    lines.append(
        f"  client/raw within each round: {info['paired_client_to_raw']} "
        f"(median {ratios['client_to_raw_paired_median']})"
    )
    lines.append(f"  every round (checks/s): {info['all_rounds_checks_per_s']}")
    lines.append(f"  load average after: {[round(x, 2) for x in info['load_average']]}")
    print("\n".join(lines))
