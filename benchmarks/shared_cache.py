"""Gates over one shared Redis, measured side by side in one run: a cold miss proved from Redis,
one proved from PostgreSQL, an L1 hit, and the embedded gate's answer; what L1 holds per
structure; and the capacity each part of a deployment needs per 1,000 checks/s.

    python -m benchmarks.shared_cache --db URL --keys DIR     # an existing PostgreSQL registry
    python -m benchmarks.shared_cache --structures 100000      # builds one in a new database

The deployment is the real one: ``permitgate registry serve --redis`` publishing to a private
``redis-server``, and three ``permitgate serve`` processes over the same registry:

* **shared**: ``--redis`` to that Redis: misses are proved from Redis;
* **from PostgreSQL**: ``--redis`` to a second, empty Redis, so every miss finds nothing there
  (one round trip) and is proved from the database's records of the bucket;
* **embedded**: no Redis; every record held (the default).

**Latency** is one call at a time from one client, interleaved per round (shared miss,
PostgreSQL miss, shared hit, embedded), each miss on a structure that gate has never been asked
about, so that the four are measured under the same conditions; reported as p50/p99/max over
the client's whole call (gRPC included: about 0.3 ms of each figure).

**L1 memory**: the shared gate's USS before and after ``--fill`` structures are asked of it
(BatchCheck), per structure. **Throughput**: h2load on core 0 against each gate pinned to core
1, asking about one structure (an L1 hit), the gate's CPU per call from ``/proc``. **Capacity
per 1,000 checks/s**: gate cores from that; Redis CPU and bytes per miss from its ``INFO``
over the misses of the latency phase; memory per structure of Redis and of the registry
service from their own figures.

Writes ``benchmarks/results/shared.md`` and ``shared.json``. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import grpc
import redis
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

from benchmarks.gate_load import Memory
from benchmarks.h2load import ensure_h2load, grpc_frame, run_h2load
from benchmarks.proctree import ProcessTreeSampler, cpu_seconds
from benchmarks.support import (
    REPO,
    permitgate,
    permitgate_command,
    pg_watch,
    private_pg_database,
)
from registry.demo import structure_id

RESULTS = REPO / "benchmarks" / "results"
METHOD = "/permitgate.v1.PermitGate/CheckConnection"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _redis_server(directory: Path) -> Iterator[tuple[str, int, int]]:
    """A private redis-server; yields (URL, port, pid)."""
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", port, process.pid
    finally:
        process.kill()
        process.wait()


class Process:
    """A ``permitgate`` command running in the background, its stderr kept."""

    def __init__(self, label: str, args: list[str]) -> None:
        self.label = label
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [permitgate_command(), *args],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: no {pattern!r}:\n{''.join(self.lines[-20:])}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Gate:
    label: str
    process: Process
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def _start_gate(label: str, db: str, keys: Path, state: Path, extra: list[str]) -> Gate:
    port = _free_port()
    args = ["serve", "--db", db, "--keys", str(keys), "--state", str(state),
            "--listen", f"127.0.0.1:{port}", "--max-staleness", "120", *extra]  # fmt: skip
    process = Process(label, args)
    process.wait_for(r"health: SERVING", timeout=900)
    return Gate(label, process, port)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]

    return {
        "p50_ms": at(50) * 1000,
        "p99_ms": at(99) * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def _ask(stub: Any, sid: str) -> tuple[float, pb.Decision]:
    check = pb.ConnectionCheck(
        structure_id=sid, utility=pb.UTILITY_WATER, kind=pb.CONNECTION_KIND_PERMANENT
    )
    started = time.perf_counter()
    decision = stub.CheckConnection(check, timeout=10)
    return time.perf_counter() - started, decision


def _gist(decision: pb.Decision) -> tuple[str, tuple[str, ...]]:
    """A decision's verdict and reason codes (what two gates on the same data must agree on)."""
    codes = sorted(pb.ReasonCode.Name(r.code) for r in decision.reasons)
    return pb.Verdict.Name(decision.verdict), tuple(codes)


def _redis_info(port: int) -> dict[str, Any]:
    client = redis.Redis(port=port)
    info: dict[str, Any] = {**client.info("cpu"), **client.info("stats"), **client.info("memory")}
    return info


def measure_latency(
    shared: Gate, from_pg: Gate, embedded: Gate, structures: int, rounds: int, redis_port: int
) -> dict[str, Any]:
    """One call at a time, interleaved: a fresh id per miss, one hot id for the hits."""
    rng = random.Random(7)
    fresh = rng.sample(range(structures), 2 * rounds + 1)
    hot = structure_id(fresh.pop())
    samples: dict[str, list[float]] = {"shared_miss": [], "pg_miss": [], "shared_hit": [],
                                       "embedded": []}  # fmt: skip
    answered: dict[str, tuple[str, tuple[str, ...]]] = {}  # a miss's answer, by structure
    channels = {g.label: grpc.insecure_channel(g.target) for g in (shared, from_pg, embedded)}
    stubs = {k: gate_pb2_grpc.PermitGateStub(c) for k, c in channels.items()}  # type: ignore[no-untyped-call]
    for stub in stubs.values():  # connections up, the hot id held
        _ask(stub, hot)
    before = _redis_info(redis_port)
    for n in range(rounds):
        for kind, label, sid in (
            ("shared_miss", shared.label, structure_id(fresh[2 * n])),
            ("pg_miss", from_pg.label, structure_id(fresh[2 * n + 1])),
            ("shared_hit", shared.label, hot),
            ("embedded", embedded.label, hot),
        ):
            seconds, decision = _ask(stubs[label], sid)
            samples[kind].append(seconds)
            if kind.endswith("miss"):
                answered[sid] = _gist(decision)
    after = _redis_info(redis_port)
    # What a miss adds to a hit in the same round: the proof's own cost, without the client's
    # and gRPC's (each round's four calls share the machine's state of the moment).
    added = {
        kind: [m - h for m, h in zip(samples[kind], samples["shared_hit"], strict=True)]
        for kind in ("shared_miss", "pg_miss")
    }
    # Each miss answered as the embedded gate answers (asked afterwards, untimed).
    wrong = {
        sid: (got, expected)
        for sid, got in answered.items()
        if got != (expected := _gist(_ask(stubs[embedded.label], sid)[1]))
    }
    for channel in channels.values():
        channel.close()
    if wrong:
        raise RuntimeError(f"{len(wrong)} misses answered otherwise than the embedded gate: "
                           f"{list(wrong.items())[:3]}")  # fmt: skip
    redis_cpu = (after["used_cpu_sys"] + after["used_cpu_user"]) - (
        before["used_cpu_sys"] + before["used_cpu_user"]
    )
    out_bytes = after["total_net_output_bytes"] - before["total_net_output_bytes"]
    calls = after["total_commands_processed"] - before["total_commands_processed"]
    return {
        "rounds": rounds,
        "latency": {k: _percentiles(v) for k, v in samples.items()},
        "added_to_a_hit": {k: _percentiles(v) for k, v in added.items()},
        "misses_checked": len(answered),
        "redis_per_miss": {
            "cpu_us": redis_cpu / rounds * 1e6,
            "bytes_out": out_bytes / rounds,
            "commands": calls / rounds,
        },
    }


def measure_l1_memory(shared: Gate, structures: int, fill: int) -> dict[str, Any]:
    """USS of the shared gate before and after ``fill`` new structures are asked of it."""
    pid = shared.process.process.pid
    before = Memory.of(pid)
    rng = random.Random(11)
    ids = [structure_id(i) for i in rng.sample(range(structures), fill)]
    with grpc.insecure_channel(shared.target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]

        def batches() -> Iterator[pb.CheckBatch]:
            for start in range(0, len(ids), 1000):
                checks = [
                    pb.Check(
                        correlation_id=sid,
                        connection=pb.ConnectionCheck(
                            structure_id=sid,
                            utility=pb.UTILITY_WATER,
                            kind=pb.CONNECTION_KIND_PERMANENT,
                        ),
                    )
                    for sid in ids[start : start + 1000]
                ]
                yield pb.CheckBatch(checks=checks)

        started = time.perf_counter()
        answered = sum(len(b.decisions) for b in stub.BatchCheck(batches(), timeout=900))
        seconds = time.perf_counter() - started
    time.sleep(2)
    after = Memory.of(pid)
    return {
        "structures": fill,
        "answered": answered,
        "fill_seconds": seconds,
        "uss_per_structure": (after.uss - before.uss) / fill,
        "rss_per_structure": (after.rss - before.rss) / fill,
    }


def measure_l1_bytes(db: str, keys: Path, structures: int) -> dict[str, Any]:
    """What L1 itself holds per structure, by tracemalloc, in this process: ``structures``
    records read from the registry, parsed and held as the shared cache holds a record it
    proved (``SharedCache._parsed``, ``_hold``), the envelopes dropped."""
    import tracemalloc

    import sqlalchemy as sa
    from permitgate_client._proofs import MAP_EMPTY

    from registry.signing import load_verifier
    from registry.statusmap import MapTop
    from server.shared_cache import SharedCache

    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT structure_id, envelope, digest, map_bucket FROM status_record LIMIT :n"
            ),
            {"n": structures},
        ).all()
        note = connection.execute(
            sa.text("SELECT note, cosignature FROM head ORDER BY serial DESC LIMIT 1")
        ).one()
    engine.dispose()
    from permitgate_client._proofs import verify_registry_head

    head = verify_registry_head(
        bytes(note[0]) + bytes(note[1] or b""), load_verifier(keys, "registry")
    )
    cache = SharedCache(max_staleness=60.0, redis=None, database=None, size=structures)  # type: ignore[arg-type]
    top = MapTop([(0, MAP_EMPTY)] * 65536)
    cache.top = top
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for sid, envelope, digest, bucket in rows:
        held = cache._parsed(str(sid), int(bucket), bytes(envelope), bytes(digest), head)
        assert held is not None, sid
        cache._hold({str(sid): held}, top)
    del rows
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"structures": structures, "bytes_per_structure": (after - before) / structures}


def measure_throughput(gates: list[Gate], requests: int, hot: str, database: str) -> dict[str, Any]:
    """h2load on core 0 against each gate pinned to core 1, an L1 hit each call; and the CPU
    PostgreSQL spends meanwhile on ``database`` (the gate's decision log: a row per check)."""
    body_dir = Path(tempfile.mkdtemp(prefix="permitgate-shared-"))
    body = body_dir / "check.bin"
    check = pb.ConnectionCheck(
        structure_id=hot, utility=pb.UTILITY_WATER, kind=pb.CONNECTION_KIND_PERMANENT
    )
    body.write_bytes(grpc_frame(check.SerializeToString()))
    out: dict[str, Any] = {}
    try:
        for gate in gates:
            pid = gate.process.process.pid
            subprocess.run(["taskset", "-a", "-pc", "1", str(pid)], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            url = f"http://{gate.target}{METHOD}"
            run_h2load(url, body, streams=128, min_reply_bytes=20, requests=5000, cpu="0")
            cpu_before = cpu_seconds(pid) or 0.0
            sampler = ProcessTreeSampler(pid, watch=pg_watch(database))
            sampler.start()
            run = run_h2load(url, body, streams=128, min_reply_bytes=20, requests=requests,
                             cpu="0")  # fmt: skip
            time.sleep(1.0)  # the decision log's last rows written
            sampler.stop()
            cpu = (cpu_seconds(pid) or 0.0) - cpu_before
            subprocess.run(["taskset", "-a", "-pc", "0,1", str(pid)], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            out[gate.label] = {
                "calls_per_second": run.per_second,
                "cpu_us_per_call": cpu / run.succeeded * 1e6,
                "p99_ms": run.percentile_ms(99),
                "postgres_cpu_us_per_call": sampler.watched_cpu_where("postgres")
                / run.succeeded
                * 1e6,
            }
    finally:
        shutil.rmtree(body_dir, ignore_errors=True)
    return out


def _build(directory: Path, url: str, structures: int) -> Path:
    keys = directory / "keys"
    lines = directory / "lines.jsonl"
    with lines.open("wb") as out:
        subprocess.run(
            [permitgate_command(), "registry", "demo-data", "--structures", str(structures)],
            stdout=out,
            check=True,
        )
    permitgate("registry", "init", "--db", url, "--keys", str(keys))
    permitgate("registry", "import", str(lines), "--db", url, "--keys", str(keys), timeout=3600)
    lines.unlink()
    return keys


def _count(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return int(connection.scalar(sa.text("SELECT COUNT(*) FROM status_record")) or 0)
    finally:
        engine.dispose()


def run(db: str, keys: Path, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    structures = _count(db)
    with ExitStack() as stack:
        shared_redis, shared_port, redis_pid = stack.enter_context(_redis_server(scratch))
        empty_redis, _, _ = stack.enter_context(_redis_server(scratch))
        service = Process(
            "registry service",
            ["registry", "serve", "--db", db, "--keys", str(keys), "--listen",
             f"127.0.0.1:{_free_port()}", "--heartbeat", "2", "--redis", shared_redis],
        )  # fmt: skip
        stack.callback(service.stop)
        started = time.monotonic()
        service.wait_for(r"published everything", timeout=1800)
        published_in = time.monotonic() - started
        service_memory = Memory.of(service.process.pid)
        redis_memory = int(redis.Redis(port=shared_port).info("memory")["used_memory"])
        gates = []
        for label, extra in (
            ("shared", ["--redis", shared_redis, "--cache-size", str(args.fill + 10_000)]),
            ("from PostgreSQL", ["--redis", empty_redis]),
            ("embedded", []),
        ):
            gate = _start_gate(label, db, keys, scratch / label.replace(" ", "-"), extra)
            stack.callback(gate.process.stop)
            gates.append(gate)
        shared, from_pg, embedded = gates
        latency = measure_latency(shared, from_pg, embedded, structures, args.rounds, shared_port)
        held = measure_l1_bytes(db, keys, args.fill)
        memory = measure_l1_memory(shared, structures, args.fill)
        baseline = measure_l1_memory(embedded, structures, args.fill)
        memory["embedded_uss_per_structure"] = baseline["uss_per_structure"]
        hot = structure_id(0)
        database = urlsplit(db).path.lstrip("/")
        throughput = measure_throughput([shared, embedded], args.requests, hot, database)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "structures": structures,
        "published_in_s": published_in,
        "registry_service_rss": service_memory.rss,
        "redis_used_memory": redis_memory,
        "redis_pid": redis_pid,
        **latency,
        "l1": memory,
        "l1_traced": held,
        "throughput": throughput,
    }


def report(result: dict[str, Any]) -> str:
    lat = result["latency"]
    n = result["structures"]
    thr = result["throughput"]
    per_call = thr["shared"]["cpu_us_per_call"]
    rpm = result["redis_per_miss"]
    lines = [
        f"# Gates over one shared Redis, {n:,} structures ({result['date']})",
        "",
        "One call at a time, interleaved; each miss on a structure that gate was never asked "
        f"about ({result['rounds']} rounds). Milliseconds over the client's whole call.",
        "",
        "| call | p50 | p99 | max | target |",
        "|---|---|---|---|---|",
    ]
    rows = (
        ("shared_miss", "cold miss, proved from Redis", "p99 < 2 ms"),
        ("pg_miss", "cold miss, proved from PostgreSQL", "p99 < 5 ms"),
        ("shared_hit", "L1 hit (shared gate)", ""),
        ("embedded", "embedded gate", ""),
    )
    for kind, name, target in rows:
        got = lat[kind]
        lines.append(
            f"| {name} | {got['p50_ms']:.2f} | {got['p99_ms']:.2f} | {got['max_ms']:.2f} "
            f"| {target} |"
        )
    lines += [
        "",
        "What a miss adds to the L1 hit of the same round (the proof's own cost, the client's "
        "and gRPC's taken out):",
        "",
        "| miss | p50 | p99 | target |",
        "|---|---|---|---|",
    ]
    for kind, name, target in rows[:2]:
        got = result["added_to_a_hit"][kind]
        lines.append(f"| {name} | {got['p50_ms']:.2f} | {got['p99_ms']:.2f} | {target} |")
    l1 = result["l1"]
    lines += [
        "",
        "| throughput, one core, 128 streams, L1 hit | calls/s | CPU µs per call | p99 ms |",
        "|---|---|---|---|",
    ]
    for label, got in thr.items():
        lines.append(
            f"| {label} | {got['calls_per_second']:,.0f} | {got['cpu_us_per_call']:.0f} "
            f"| {got['p99_ms']:.1f} |"
        )
    ratio = thr["shared"]["calls_per_second"] / thr["embedded"]["calls_per_second"]
    lines += [
        "",
        f"Shared gate's L1 hit vs the embedded gate: {ratio:.3f}× the calls per second.",
        "",
        f"L1 holds {result['l1_traced']['bytes_per_structure']:,.0f} B per cached structure "
        f"(tracemalloc, {result['l1_traced']['structures']:,} records parsed and held as the "
        "shared cache holds them). Target: under 1 KiB.",
        "",
        f"Memory per structure asked for the first time ({l1['structures']:,} of them, USS "
        f"growth): the shared gate {l1['uss_per_structure']:,.0f} B (the record proved and "
        "held in L1, its decision memoised, the allocator's share), the embedded gate "
        f"{l1['embedded_uss_per_structure']:,.0f} B (the same record parsed from the envelope "
        "it held, its decision memoised).",
        "",
        "## Capacity per 1,000 checks/s",
        "",
        "| part | per 1,000 checks/s | held |",
        "|---|---|---|",
        f"| gate (L1 hits) | {per_call / 1000:.2f} core | map top ≈ 13 MB + "
        f"{l1['uss_per_structure']:,.0f} B per structure asked |",
        f"| Redis (misses only) | {rpm['cpu_us'] / 1000:.3f} core and "
        f"{rpm['bytes_out'] / 1024:.1f} MiB/s per 1,000 misses/s | "
        f"{result['redis_used_memory'] / n:,.0f} B per structure |",
        f"| PostgreSQL | {thr['shared']['postgres_cpu_us_per_call'] / 1000:.3f} core (the "
        "decision log: a row per check, by COPY); a miss Redis cannot prove: one indexed read | "
        "the registry and the decision log |",
        f"| registry service | none per check (it publishes changes) | "
        f"{result['registry_service_rss'] / n:,.0f} B RSS per structure |",
        "",
        f"The registry service published {n:,} structures to an empty Redis in "
        f"{result['published_in_s']:.0f} s (load and verify included).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="a PostgreSQL registry (else one is built)")
    parser.add_argument("--keys", type=Path, help="its keys directory")
    parser.add_argument("--structures", type=int, default=100_000, help="when building one")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--fill", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args(argv)
    ensure_h2load()
    with tempfile.TemporaryDirectory(prefix="permitgate-shared-") as tmp:
        scratch = Path(tmp)
        with ExitStack() as stack:
            if args.db:
                db, keys = args.db, args.keys
            else:
                db, _ = stack.enter_context(private_pg_database())
                keys = _build(scratch, db, args.structures)
            result = run(db, keys, args, scratch)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shared.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (RESULTS / "shared.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
