"""``make bench``: the gate next to a bare gRPC server, the Cerbos PDP and a naive server.

    python -m benchmarks.harness [--quick] [--only SYSTEM ...] [--rounds N] [--seconds S]

Every system (``benchmarks.systems``) is a server process of its own on 127.0.0.1, driven by
h2load with gRPC framing (``benchmarks.h2load``) over one connection at 1, 16 and 128 streams
in flight, in two placements: **pinned** (each server on core 1 with ``taskset -c 1``, h2load on
core 0; Cerbos with ``GOMAXPROCS=1``) and **unpinned** (both wherever the scheduler puts them).
Bulk loads (the gate's ``BatchCheck`` of 1,000 checks a message, Cerbos's ``CheckResources`` of
500 resources) run with 16 requests in flight.

Within a placement every system runs at once and the loads alternate between systems (A B C ..
A B C), for ``--rounds`` rounds; the best round of each is kept and every round reported. Each
load is a timed warm-up run, then a measured run of as many requests as the warm-up's rate
fits in ``--seconds`` (a count, so that every request sent is answered and counted: a timed run
would abandon the requests in flight, whose work the server still does). After it the harness
waits until the server is idle again (the gate writes its decision log in the background), and
the server CPU time per call counts until then. Before any timing, each system answers one
real gRPC call per load, and the answer is checked (h2load cannot see ``grpc-status``);
h2load's own counts are checked too.

Writes ``benchmarks/results/latest.{json,md,png}`` (``partial.*`` for ``--quick`` or
``--only``) through ``benchmarks.report``. Exits 1 when a system gave a wrong answer or a load
failed (after writing what it has).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from benchmarks import cerbos, report
from benchmarks.demo_registry import build_registry
from benchmarks.h2load import H2Load, H2LoadError, ensure_h2load, h2load_version, run_h2load
from benchmarks.proctree import machine_busy_seconds
from benchmarks.support import REPO
from benchmarks.systems import (
    SERVER_CORE,
    Load,
    System,
    Verdicts,
    WrongAnswer,
    bare_system,
    cerbos_system,
    gate_system,
    naive_system,
    serve_offers_workers,
    unary_reply,
)

STREAMS = (1, 16, 128)
BULK_STREAMS = 16
MIN_BULK_ROUNDS = 4
"""A bulk load sends at least this many times the requests in flight (each takes long)."""
CLIENT_CORE = "0"
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache"
SETTLE_TIMEOUT = 20.0
SETTLE_IDLE = 0.05  # cores' worth under which a server counts as idle
SYSTEMS = ("gate", "gate-w2", "bare", "cerbos", "naive")


# --- Measuring ------------------------------------------------------------------------------


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settle(system: System) -> float:
    """Wait until ``system`` is idle (under ``SETTLE_IDLE`` cores over 0.25 s); seconds waited."""
    started = time.monotonic()
    before = system.cpu()
    while time.monotonic() - started < SETTLE_TIMEOUT:
        time.sleep(0.25)
        now = system.cpu()
        if now - before < SETTLE_IDLE * 0.25:
            break
        before = now
    return time.monotonic() - started


def measure(
    system: System, load: Load, streams: int, pinned: bool, warmup: float, seconds: float
) -> dict[str, Any]:
    """One warm-up and one measured h2load run of ``load`` against ``system``."""
    url = f"http://{system.target}{load.method}"
    client_cpu = CLIENT_CORE if pinned else None

    def h2load(**amount: Any) -> H2Load:
        return run_h2load(
            url,
            load.body,
            streams=streams,
            connections=load.connections,
            min_reply_bytes=load.min_reply_bytes,
            cpu=client_cpu,
            **amount,
        )

    warm = h2load(seconds=warmup, warmup=True)
    if warm.succeeded < streams:  # too few answers to tell the rate (slow bulk requests)
        warm = h2load(requests=streams)
    floor = streams * (MIN_BULK_ROUNDS if load.batch else 2)
    requests = max(floor, math.ceil(warm.per_second * seconds / streams) * streams)
    settle(system)
    server0, machine0, own0 = system.cpu(), machine_busy_seconds(), _own_cpu()
    started = time.monotonic()
    run = h2load(requests=requests)
    wall = time.monotonic() - started
    server_during = system.cpu() - server0
    machine = machine_busy_seconds() - machine0
    own = _own_cpu() - own0
    settled = settle(system)
    server_total = system.cpu() - server0
    calls = run.succeeded
    others = max(0.0, machine - server_during - run.client_cpu - own) / wall
    return {
        "calls": calls,
        "decisions": calls * load.decisions,
        "seconds": round(run.seconds, 3),
        "calls_per_s": round(run.per_second, 1),
        "decisions_per_s": round(run.per_second * load.decisions, 1),
        "p50_ms": round(run.percentile_ms(50), 3),
        "p99_ms": round(run.percentile_ms(99), 3),
        "mean_ms": round(run.mean_ms, 3),
        "server_cpu_us_per_call": round(server_total / calls * 1e6, 1),
        "server_cpu_us_per_call_while_loaded": round(server_during / calls * 1e6, 1),
        "server_cores": round(server_during / wall, 2),
        "h2load_cpu_us_per_call": round(run.client_cpu / calls * 1e6, 1),
        "settle_s": round(settled, 2),
        "others_cores": round(others, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "reply_bytes": load.reply_bytes,
    }


# --- Running --------------------------------------------------------------------------------


@contextmanager
def running(
    systems: list[System], pinned: bool, failures: list[str] | None = None
) -> Iterator[list[System]]:
    """Start every system (pinned or not) and check its answers. Without ``failures``, a
    system that does not start or answers wrongly raises; with it, the failure is added there
    and the system left out. Every started system is stopped at the end."""
    with ExitStack() as stack:
        up: list[System] = []
        for system in systems:
            stack.callback(system.stop)
            try:
                system.start(pinned)
                system.check()
            except (WrongAnswer, RuntimeError) as exc:
                if failures is None:
                    raise
                failures.append(f"{system.name}: {type(exc).__name__}: {exc}")
                print(f"   {system.name} left out: {exc}", flush=True)
                system.stop()
                continue
            up.append(system)
        yield up


def run_phase(
    systems: list[System],
    pinned: bool,
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    placement = "pinned" if pinned else "unpinned"
    chosen = [s for s in systems if pinned is False or s.pinnable]
    print(f"\n== {placement}: {', '.join(s.name for s in chosen)}", flush=True)
    with running(chosen, pinned, out["failures"]) as up:
        for system in up:
            print(f"   {system.name} on {system.target}: answers checked", flush=True)
        loads = [
            (s, load) for s in up for load in s.loads if pinned is False or not load.unpinned_only
        ]
        unary = [(s, load) for s, load in loads if not load.batch]
        bulk = [(s, load) for s, load in loads if load.batch]
        for round_no in range(1, args.rounds + 1):
            plan = [
                (s, load, n) for n in args.streams for s, load in unary if n >= load.connections
            ]
            plan += [(s, load, BULK_STREAMS) for s, load in bulk]
            for system, load, streams in plan:
                row: dict[str, Any] = {
                    "system": system.name,
                    "load": load.name,
                    "connections": load.connections,
                    "bulk": load.batch,
                    "placement": placement,
                    "streams": streams,
                    "round": round_no,
                }
                try:
                    row |= measure(system, load, streams, pinned, args.warmup, args.seconds)
                except (H2LoadError, RuntimeError) as exc:
                    row["error"] = str(exc)
                    what = f"{placement} {system.name} {load.name} x{streams}"
                    out["failures"].append(f"{what}: {exc}")
                out["measurements"].append(row)
                print("   " + report.progress_line(row), flush=True)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def describe_machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = next(line for line in meminfo if line.startswith("MemTotal"))
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.split()[1]) / 2**20, 1),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions(cerbos_binary: Path | None) -> dict[str, str]:
    found = {
        "permitgate": f"{_git('rev-parse', '--short', 'HEAD')}"
        + (" (modified)" if _git("status", "--porcelain", "--untracked-files=no") else ""),
        "python": platform.python_version(),
        "h2load": h2load_version(),
    }
    for package in ("grpcio", "protobuf", "uvloop", "sqlalchemy", "matplotlib"):
        found[package] = _version(package)
    if cerbos_binary is not None:
        done = subprocess.run(
            [str(cerbos_binary), "--version"], capture_output=True, text=True, check=False
        )
        found["cerbos"] = (done.stdout.splitlines() or ["?"])[0]
    return found


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short loads (a smoke test)")
    parser.add_argument("--only", action="append", choices=SYSTEMS, help="measure these only")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="about how long each measured run lasts"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="each warm-up run")
    parser.add_argument("--streams", type=int, nargs="+", default=list(STREAMS))
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = 1.0, 0.5
    if args.rounds < 1 or args.seconds <= 0 or args.warmup <= 0:
        parser.error("--rounds, --seconds and --warmup must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    wanted = set(args.only or SYSTEMS)
    partial = args.quick or args.only is not None
    ensure_h2load()
    started = datetime.now(UTC)
    out: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "streams": args.streams,
            "bulk_streams": BULK_STREAMS,
            "server_core": SERVER_CORE,
            "client_core": CLIENT_CORE,
            "partial": partial,
        },
        "systems": {},
        "notes": [],
        "failures": [],
        "measurements": [],
    }
    binary = cerbos.ensure_binary(CACHE) if "cerbos" in wanted else None
    with tempfile.TemporaryDirectory(prefix="permitgate-bench-") as tmp:
        home = Path(tmp)
        print(f"building the demo registry in {home}", flush=True)
        registry = build_registry(home)
        answers: Verdicts = {}
        workers = "gate-w2" in wanted and serve_offers_workers()
        gate = gate_system(registry, answers, spread=workers)
        with running([gate], pinned=False):  # the reference answers, and the bare reply
            allow = next(load for load in gate.loads if load.name == "ALLOW")
            allow_answer = unary_reply(gate, allow)
        systems: list[System] = []
        if "gate" in wanted:
            systems.append(gate)
        if workers:
            systems.append(gate_system(registry, answers, workers=2))
        elif "gate-w2" in wanted:
            out["notes"].append("gate-w2 skipped: `permitgate serve` has no --workers")
        if "bare" in wanted:
            systems.append(bare_system(home, allow_answer, allow.body))
        if binary is not None:
            systems.append(cerbos_system(registry, answers, binary))
        if "naive" in wanted:
            systems.append(naive_system(registry, answers, allow.body))
        for system in systems:
            out["systems"][system.name] = system.describe
        try:
            for pinned in (True, False):
                run_phase(systems, pinned, args, out)
        finally:
            for system in systems:
                system.stop()
    out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    out["versions"] = versions(binary)
    status = 1 if out["failures"] else 0
    stem = "partial" if partial else "latest"
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / f"{stem}.json"
    json_path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    written = report.write(out, RESULTS / f"{stem}.md", RESULTS / f"{stem}.png")
    print(f"\nwrote {json_path.relative_to(REPO)}, " + ", ".join(written), flush=True)
    for failure in out["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
