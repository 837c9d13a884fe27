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
verified load, its CPU time, the CPU other processes used meanwhile (the machine may be shared),
and its memory from ``/proc/PID/smaps_rollup``, at SERVING and again once *settled* (its RSS
unchanged for 5 s: after a restart the status map is rebuilt at the next poll): RSS, PSS
(shared pages split among the processes mapping them), USS (the pages this process alone maps:
``Private_Clean + Private_Dirty``) and its peak RSS (``VmHWM``). Per structure:

* **held per structure** = (the gate's memory - the baseline gate's) / structures, for each of
  RSS, PSS and USS;
* **raw records per structure** = the total length of the status record envelopes the registry
  holds (``SUM(LENGTH(envelope))``: the bytes as signed, which the gate keeps until a record is
  first asked for) / structures;
* **beyond the raw records** = held per structure - raw records per structure: ids, digests,
  the status map, object headers, dictionary slots and the allocator's own overhead (issue 8's
  goal: under 1 KiB).

``--where`` says where those bytes go instead: it loads the registry (of ``--structures``) in
this process as the gate does (``RegistryVerifier.poll`` then ``RegistryCache.install``) under
``tracemalloc``, as a first start and then as a restart over the state it left, settled, and
prints the allocations still held, grouped by source line, per structure. tracemalloc sees
Python's allocations only (not SQLite's page cache, nor memory the allocator keeps after a
free), and it is slow, so a registry smaller than a million is the practical size. Most figures
per structure hardly depend on it; the status map's 131,072 fixed top nodes do (about 150 B
per structure at 100,000, 15 B at a million), and dictionaries' slot tables grow in powers of
two.

A measurement, not a test: it fails only when a gate does not become SERVING.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from contextlib import closing
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
    memory: Memory  # at SERVING
    settled: Memory  # once its resident memory stopped changing (the next polls done)
    cpu: float  # the gate's user + system seconds until SERVING
    others: float  # CPU seconds other processes used meanwhile (cores' worth x seconds)
    phases: str  # the first start's read + hash / map / persist seconds, from the gate's log


@dataclass(frozen=True)
class Memory:
    """A process's memory, in bytes (see the module's docstring)."""

    rss: int
    pss: int
    uss: int
    peak: int  # VmHWM: the most it was ever resident

    @classmethod
    def of(cls, pid: int) -> Memory:
        rollup: dict[str, int] = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, value = line.partition(":")
            rollup[key] = int(value.split()[0]) * 1024  # every figure there is in kB
        peak = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
        uss = rollup["Private_Clean"] + rollup["Private_Dirty"]
        return cls(rollup["Rss"], rollup["Pss"], uss, peak)


def _settled(pid: int, *, quiet: int = 5, limit: float = 120.0) -> Memory:
    """The memory of ``pid`` once its RSS has stayed within 1 MiB for ``quiet`` seconds in a
    row (the polls after the first load done: after a restart, the status map is rebuilt at
    the next poll), or after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    last = Memory.of(pid)
    still = 0
    while still < quiet and time.monotonic() < deadline:
        time.sleep(1.0)
        now = Memory.of(pid)
        still = still + 1 if abs(now.rss - last.rss) < MIB else 0
        last = now
    return last


def raw_record_bytes(directory: Path) -> tuple[int, int]:
    """(records, total bytes of their envelopes) in the SQLite registry in ``directory``."""
    with closing(sqlite3.connect(f"file:{directory / 'registry.db'}?mode=ro", uri=True)) as db:
        count, total = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(envelope)), 0) FROM status_record"
        ).fetchone()
    return int(count), int(total)


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
        memory = Memory.of(process.pid)
        settled = _settled(process.pid)
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
        memory,
        settled,
        cpu,
        others,
        phase_text,
    )


def _report(starts: list[GateStart], baseline: GateStart, raw: tuple[int, int]) -> None:
    print(
        "| start | structures | spawn to SERVING | load (gate's log) | read+hash / map / persist"
        " | gate CPU | others' CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in [*starts, baseline]:
        print(
            f"| {s.label} | {s.structures:,} | {s.seconds:.1f} s | {s.load_seconds:.1f} s | "
            f"{s.phases} | {s.cpu:.1f} s | {s.others:.1f} s |"
        )
    records, raw_bytes = raw
    print(
        f"\nraw records: {records:,} envelopes, {raw_bytes:,} bytes "
        f"({raw_bytes / records:,.0f} B per structure)\n"
    )
    print(
        "| start | RSS | PSS | USS | peak RSS | held per structure, RSS / PSS / USS"
        " | beyond the raw records, RSS / PSS / USS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    raw_each = raw_bytes / records
    base = baseline.memory
    rows = [(f"{s.label}, {when}", s, m) for s in starts
            for when, m in (("at SERVING", s.memory), ("settled", s.settled))]  # fmt: skip
    for label, s, m in [*rows, ("baseline, at SERVING", baseline, base)]:
        if s is baseline:
            held = beyond = "-"
        else:
            each = [(x - b) / s.structures for x, b in ((m.rss, base.rss), (m.pss, base.pss),
                                                        (m.uss, base.uss))]  # fmt: skip
            held = " / ".join(f"{x:,.0f} B" for x in each)
            beyond = " / ".join(f"{x - raw_each:,.0f} B" for x in each)
        print(
            f"| {label} | {m.rss / MIB:,.0f} MiB | {m.pss / MIB:,.0f} MiB | "
            f"{m.uss / MIB:,.0f} MiB | {m.peak / MIB:,.0f} MiB | {held} | {beyond} |"
        )


def where_memory_goes(directory: Path, state: Path, top: int = 15) -> None:
    """Load the registry in ``directory`` in this process as the gate does, under tracemalloc,
    twice: a first start (an empty ``state``), then a restart over that state, settled (its
    second poll rebuilds the status map). Prints what each holds, by source line, per
    structure."""
    records, raw_bytes = raw_record_bytes(directory)
    print(f"{records:,} structures; raw records {raw_bytes / records:,.0f} B per structure")
    for label, polls in (("first start", 1), ("restart, settled", 2)):
        started = time.perf_counter()
        snapshot = _traced_load(directory, state, polls, records)
        stats = snapshot.statistics("lineno")
        total = sum(stat.size for stat in stats)
        print(
            f"\n{label} (under tracemalloc, {time.perf_counter() - started:.0f} s): held by "
            f"Python {total / records:,.0f} B per structure, {(total - raw_bytes) / records:,.0f}"
            " B beyond the raw records; by source line:\n"
        )
        print("| B per structure | blocks per structure | where |")
        print("|---:|---:|---|")
        for stat in stats[:top]:
            frame = stat.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            print(f"| {stat.size / records:,.1f} | {stat.count / records:.2f} | {where} |")


def _traced_load(directory: Path, state: Path, polls: int, records: int) -> tracemalloc.Snapshot:
    """``polls`` polls of a new gate's verifier over ``directory``, each installed in its
    cache; a snapshot of what is still allocated then."""
    from registry.admin import ROLE
    from registry.feed import SqlFeed
    from registry.signing import load_verifier
    from registry.storage import Database
    from registry.trusted_state import TrustedState
    from server.cache import RegistryCache
    from server.incidents import Incidents
    from server.verifier import RegistryVerifier

    db = Database(f"sqlite:///{directory / 'registry.db'}", create=False)
    trusted = TrustedState(state, "gate")
    verifier = RegistryVerifier(load_verifier(directory / "keys", ROLE), trusted, Incidents())
    cache = RegistryCache(max_staleness=3600)
    tracemalloc.start()
    try:
        for _ in range(polls):
            with SqlFeed(db).snapshot() as view:
                update = verifier.poll(view)
            held, parties = verifier.verified
            cache.install(
                update.head,
                held,
                replace=True,
                doubtful=update.doubtful,
                superseded=update.superseded,
                parties=parties,
            )
            if len(cache) != records or update.doubtful:
                raise RuntimeError("the registry did not load whole")
        return tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        trusted.close()
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate_load")
    parser.add_argument("--structures", type=int, default=1_000_000)
    parser.add_argument("--registry", type=Path, help="where the registry is (built if absent)")
    parser.add_argument(
        "--where", action="store_true", help="only say where the memory goes (tracemalloc)"
    )
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="permitgate-gate-load-"))
    directory = args.registry or scratch / "registry"
    try:
        url = build_registry(directory, args.structures)
        if args.where:
            where_memory_goes(directory, scratch / "gate-state")
            return 0
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
        _report(starts, baseline, raw_record_bytes(directory))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
