"""How long a gate over a large registry takes to be SERVING, and what it holds per structure.

    python -m benchmarks.gate_load                      # 1,000,000 structures on SQLite
    python -m benchmarks.gate_load --structures 100000 --registry DIR

Builds the registry once, as the import benchmark does (``permitgate registry demo-data``, then
``registry init`` and ``registry import``, on SQLite; in ``--registry DIR`` it is kept, and an
existing one there reused, its head cosigned afresh: building a million structures takes about
seven minutes), then starts the real gate, ``permitgate
serve``, as a subprocess three times and measures each start until its health reports SERVING:

* **first start**: an empty state directory, so the gate reads every record, hashes it,
  rebuilds the status map, checks the root the head signs, and persists head and map;
* **restart**: the same state directory (the head it holds is the registry's newest): the
  same reads and checks, nothing to persist but the cosignature;
* **baseline**: a gate over a registry of ``len(SCENARIOS)`` structures, for the memory a gate
  needs before it holds any.

Reported per start: wall time from spawn to SERVING, the time the gate's own log gives for the
verified load, its resident memory at SERVING and its peak (``VmHWM``), its CPU time, and the
CPU other processes used meanwhile (the machine may be shared). Memory per structure is (RSS at
SERVING - baseline RSS) / structures. A measurement, not a test: it fails only when a gate does
not become SERVING.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.proctree import MIB, cpu_seconds, machine_busy_seconds
from benchmarks.support import permitgate, permitgate_command
from registry.demo import SCENARIOS

__all__ = ["GateStart", "build_registry", "main", "start_gate"]

_SERVING = health_pb2.HealthCheckResponse.SERVING
_LOADED = re.compile(r"registry: loaded version (\d+) .*, (\d+) structures, verified in ([\d.]+) s")
_LISTENING = re.compile(r"listening on (\S+) ")
_PHASES = re.compile(
    r"read and hashed in ([\d.]+) s, the status map rebuilt in ([\d.]+) s, persisted in ([\d.]+) s"
)


@dataclass(frozen=True)
class GateStart:
    """One start of ``permitgate serve``, until SERVING."""

    label: str
    structures: int
    seconds: float  # spawn to SERVING
    load_seconds: float  # as the gate logs it: the first load, read and verified
    rss: int  # resident at SERVING
    peak: int  # VmHWM
    cpu: float  # the gate's user + system seconds until SERVING
    others: float  # CPU seconds other processes used meanwhile (cores' worth x seconds)
    phases: str  # the first start's read + hash / map / persist seconds, from the gate's log


def _proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def build_registry(directory: Path, structures: int) -> str:
    """A SQLite registry of ``structures`` demo structures in ``directory`` (reused when there);
    its newest head cosigned now. Returns its URL."""
    db = directory / "registry.db"
    url = f"sqlite:///{db}"
    keys = directory / "keys"
    if not db.exists():
        directory.mkdir(parents=True, exist_ok=True)
        lines = directory / "lines.jsonl"
        with lines.open("wb") as out:
            subprocess.run(
                [permitgate_command(), "registry", "demo-data", "--structures", str(structures)],
                stdout=out,
                check=True,
            )
        permitgate("registry", "init", "--db", url, "--keys", str(keys))
        started = time.perf_counter()
        permitgate("registry", "import", str(lines), "--db", url, "--keys", str(keys), timeout=3600)
        print(f"built {structures:,} structures in {time.perf_counter() - started:.0f} s")
        lines.unlink()
    _cosign_now(url, keys)
    return url


def _cosign_now(url: str, keys: Path) -> None:
    """The registry service's heartbeat, once: cosign the newest head with the time now."""
    from datetime import UTC, datetime

    from registry.admin import newest_head
    from registry.heads import cosign_head
    from registry.signing import load_signer
    from registry.storage import Database

    db = Database(url, create=False)
    try:
        with db.session() as session:
            head = newest_head(session)
            assert head is not None
            cosign_head(load_signer(keys, "registry"), head, datetime.now(UTC))
    finally:
        db.dispose()


def start_gate(label: str, url: str, keys: Path, state: Path, structures: int) -> GateStart:
    """Run ``permitgate serve`` until SERVING; measure; stop it."""
    busy = machine_busy_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            permitgate_command(),
            "serve",
            "--db",
            url,
            "--keys",
            str(keys),
            "--state",
            str(state),
            "--listen",
            "127.0.0.1:0",
            "--max-staleness",
            "3600",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    said: list[str] = []
    address: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            said.append(line)
            if not address and (m := _LISTENING.search(line)):
                address.append(m.group(1))
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not seen.wait(120):
            raise RuntimeError(f"{label}: the gate did not listen:\n{''.join(said)}")
        with grpc.insecure_channel(address[0]) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                if reply.status == _SERVING:
                    break
                if process.poll() is not None or time.perf_counter() - started > 600:
                    raise RuntimeError(f"{label}: never SERVING:\n{''.join(said)}")
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        status = _proc_status(process.pid)
        cpu = cpu_seconds(process.pid) or 0.0
        others = max(0.0, machine_busy_seconds() - busy - cpu)
    finally:
        process.terminate()
        process.wait(60)
    loaded = [m for line in said if (m := _LOADED.search(line))]
    if not loaded:
        raise RuntimeError(f"{label}: no load in the gate's log:\n{''.join(said)}")
    phases = [m for line in said if (m := _PHASES.search(line))]
    phase_text = " / ".join(f"{float(x):.1f}" for x in phases[0].groups()) if phases else "-"
    return GateStart(
        label,
        int(loaded[0].group(2)),
        seconds,
        float(loaded[0].group(3)),
        status["VmRSS"],
        status["VmHWM"],
        cpu,
        others,
        phase_text,
    )


def _report(starts: list[GateStart], baseline: GateStart) -> None:
    print(
        "| start | structures | spawn to SERVING | load (gate's log) | read+hash / map / persist"
        " | RSS at SERVING | peak RSS | gate CPU | others' CPU | RSS per structure |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in [*starts, baseline]:
        per = "-" if s is baseline else f"{(s.rss - baseline.rss) / s.structures:,.0f} B"
        print(
            f"| {s.label} | {s.structures:,} | {s.seconds:.1f} s | {s.load_seconds:.1f} s | "
            f"{s.phases} | {s.rss / MIB:,.0f} MiB | {s.peak / MIB:,.0f} MiB | {s.cpu:.1f} s | "
            f"{s.others:.1f} s | {per} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate_load")
    parser.add_argument("--structures", type=int, default=1_000_000)
    parser.add_argument("--registry", type=Path, help="where the registry is (built if absent)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="permitgate-gate-load-"))
    directory = args.registry or scratch / "registry"
    try:
        url = build_registry(directory, args.structures)
        keys = directory / "keys"
        state = scratch / "gate-state"
        starts = [
            start_gate("first start", url, keys, state, args.structures),
            start_gate("restart", url, keys, state, args.structures),
        ]
        small = build_registry(scratch / "small", len(SCENARIOS))
        baseline = start_gate(
            "baseline", small, scratch / "small" / "keys", scratch / "small-state", len(SCENARIOS)
        )
        print(f"load average: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
        _report(starts, baseline)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
