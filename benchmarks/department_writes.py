"""Department writes beside a gate: 100 writes/s from 10 departments while the gate answers.

``python -m benchmarks.department_writes [--db URL ...]`` (default: a SQLite file, then a private
PostgreSQL database on PERMITGATE_TEST_PG) builds, per database, what a city runs:

1. a registry of 5,000 demo structures (``registry init``, ``demo-data``, ``import``) and the
   gate's key vouched for (``registry vouch``), as ``benchmarks.demo_registry`` does;
2. 10 departments, each with its signing key (``DepartmentKey``) enrolled
   (``registry department enrol``) and a client certificate from the demo CA
   (``registry.demo_pki``: O = the department id), roles cycling through planning, land,
   housing and enforcement so that each files cases of its own remit;
3. the registry service over mutual TLS (``registry serve --tls-cert --tls-key --client-ca``)
   and a gate (``permitgate serve``) on the same database, each a process of its own.

Then, side by side in one run:

* **checks alone**: a load process sends ``CheckConnection`` (an ALLOW structure no write
  touches) open-loop at ``--check-rate`` per second for ``--seconds``: the gate's usual rate;
* **checks with writes**: the same load again, while 10 ``DepartmentClient`` threads each write
  at ``--rate`` per second (open loop, on a fixed schedule; a write late on its schedule goes at
  once and the lag is counted): ``open_case`` of a case in the department's remit at ``filed``
  on an ALLOW structure of its own (the gate must now DENY it), then ``move_case`` of that case
  to ``closed`` (ALLOW again), and so on;
* **write to gate**: for writes of the first department, a prober asks the gate about the
  structure every 2 ms from the moment the write is answered until the gate's verdict is the new
  one (DENY after an open, ALLOW after a close): the time for a write to take effect at a gate
  (issue 10: within 1 s). One write is probed at a time; those written meanwhile are not.

Reported per database: writes/s achieved, write latency p50/p99/max (the client's, retries
included), failed writes by error; the gate's checks/s and p50/p99 alone and with the writes;
write-to-gate p50/p99/max. ``benchmarks/results/department_writes.{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc
from permitgate_client import (
    AsyncClient,
    Client,
    DepartmentClient,
    DepartmentKey,
    GateError,
    Verdict,
)

from benchmarks.proctree import cpu_seconds
from benchmarks.support import REPO, permitgate, permitgate_command, private_pg_database
from registry.demo import SCENARIOS, structure_id
from registry.demo_pki import make_demo_pki
from registry.signing import ensure_signer
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE

STRUCTURES = 5_000
DEPARTMENTS = 10
RATE = 10.0  # writes/s per department
SECONDS = 30.0
CHECK_RATE = 200.0  # the gate's usual rate for this run (checks/s)
CHECKED = structure_id(0)  # scenario 0: ALLOW, never written to
PROBE_STRUCTURES = tuple(structure_id(len(SCENARIOS) * k) for k in range(1, 9))
"""ALLOW structures only the prober writes cases on (the write-to-gate samples)."""
WARMUP = 2.0
"""Seconds of checks before each measured phase (not counted)."""
IN_FLIGHT = 16
"""Writes a department may have in flight at once (its clerks)."""
ROLES = (  # role, a case kind in its remit
    ("planning", "deviates_from_permit"),
    ("land", "illegal_land_use"),
    ("housing", "structural_damage"),
    ("enforcement", "no_planning_permit"),
)
RESULTS = REPO / "benchmarks" / "results"
_LISTENING = re.compile(r"listening on (\S+) ")
_DEPARTMENT_CALLS = re.compile(r"department calls on (\S+) \(mutual TLS\)")
_SERVING = health_pb2.HealthCheckResponse.SERVING


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The exact ``q`` percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


@dataclass
class CheckFigures:
    """The gate's answers during one phase."""

    sent: int
    answered: int
    failed: int
    seconds: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass
class WriteFigures:
    planned: int
    written: int
    failed: dict[str, int]
    seconds: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    late_p99_ms: float | None  # how far behind its schedule a write went (open loop)
    replayed: int


@dataclass
class VisibilityFigures:
    probed: int
    not_seen: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass
class BackendRun:
    backend: str
    checks_alone: CheckFigures
    checks_with_writes: CheckFigures
    writes: WriteFigures
    write_to_gate: VisibilityFigures
    cores: dict[str, float]  # CPU time per second of the writes phase, per process
    notes: list[str] = field(default_factory=list)


# --- the check load (a process of its own) ---------------------------------------------------


async def _check_load(target: str, rate: float, seconds: float) -> dict[str, Any]:
    """CheckConnection open-loop at ``rate``/s for ``WARMUP`` seconds, then ``seconds``
    measured; every answer must be ALLOW."""
    latencies: list[float] = []
    failed = Counter[str]()
    in_flight: set[asyncio.Task[None]] = set()
    async with AsyncClient(target, timeout=5) as client:
        await client.check_connection(CHECKED, utility="water")  # connected and warm

        async def one(measured: bool) -> None:
            started = time.perf_counter()
            try:
                decision = await client.check_connection(CHECKED, utility="water")
            except GateError as exc:
                failed[type(exc).__name__] += 1
                return
            if decision.verdict is not Verdict.ALLOW:
                failed[f"verdict {decision.verdict.value}"] += 1
                return
            if measured:
                latencies.append(time.perf_counter() - started)

        start = time.perf_counter()
        sent = measured_sent = 0
        while (now := time.perf_counter() - start) < WARMUP + seconds:
            due = int(now * rate) + 1
            while sent < due:
                measured = now >= WARMUP
                task = asyncio.ensure_future(one(measured))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                sent += 1
                measured_sent += measured
            await asyncio.sleep(max(0.0, (sent / rate) - (time.perf_counter() - start)))
        if in_flight:
            await asyncio.wait(in_flight, timeout=10)
        elapsed = time.perf_counter() - start - WARMUP
    return {
        "sent": measured_sent,
        "answered": len(latencies),
        "failed": sum(failed.values()),
        "failures": dict(failed),
        "seconds": elapsed,
        "latencies": latencies,
    }


def run_check_load(target: str, rate: float, seconds: float) -> subprocess.Popen[bytes]:
    """Start the check load as a process of its own (its own GIL and event loop)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.department_writes",
            "--check-load",
            target,
            "--check-rate",
            str(rate),
            "--seconds",
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )


def check_figures(process: subprocess.Popen[bytes]) -> CheckFigures:
    out, _ = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"the check load exited {process.returncode}")
    got = orjson.loads(out)
    latencies: list[float] = got["latencies"]
    if got["failed"]:
        raise RuntimeError(f"the gate failed {got['failed']} checks: {got['failures']}")
    return CheckFigures(
        got["sent"],
        got["answered"],
        got["failed"],
        round(got["seconds"], 2),
        round(got["answered"] / got["seconds"], 1),
        _ms(percentile(latencies, 50)),
        _ms(percentile(latencies, 99)),
        _ms(max(latencies, default=None)),
    )


# --- the registry, the departments and the servers -------------------------------------------


@dataclass(frozen=True)
class Department:
    id: str
    role: str
    case_kind: str
    key: Path
    cert: Path
    cert_key: Path
    structures: tuple[str, ...]


def _departments(home: Path, n: int) -> list[Department]:
    """``n`` departments, each with ALLOW structures of its own to write cases on."""
    ids = [f"bench-{ROLES[i % len(ROLES)][0]}-{i + 1:02d}" for i in range(n)]
    pki = make_demo_pki(home / "pki", ids)
    allow = [structure_id(i) for i in range(len(SCENARIOS), STRUCTURES, len(SCENARIOS))]
    allow = [sid for sid in allow if sid not in PROBE_STRUCTURES]
    departments = []
    for i, department in enumerate(ids):
        key = DepartmentKey.generate(department).save(home / "department-keys")
        cert, cert_key = pki.client(department)
        role, kind = ROLES[i % len(ROLES)]
        departments.append(
            Department(department, role, kind, key, cert, cert_key, tuple(allow[i::n]))
        )
    return departments


@dataclass(frozen=True)
class Setup:
    db_url: str
    registry_keys: Path
    gate_keys: Path
    state: Path
    ca: Path
    server_cert: Path
    server_key: Path
    departments: list[Department]


def build(home: Path, db_url: str, departments: int) -> Setup:
    """The registry, its gate's keys and the enrolled departments, with the permitgate CLI."""
    registry_keys = home / "registry-keys"
    gate_keys = home / "gate-keys"
    state = home / "registry-state"
    db = ("--db", db_url)
    keys = ("--keys", str(registry_keys), "--state", str(state))
    vouch_keys = ("--keys", str(registry_keys))
    permitgate("registry", "init", *db, *keys)
    demo = home / "registry.jsonl"
    with demo.open("wb") as out:
        subprocess.run(
            [permitgate_command(), "registry", "demo-data", "--structures", str(STRUCTURES)],
            stdout=out,
            check=True,
        )
    permitgate("registry", "import", str(demo), *db, *vouch_keys, timeout=1800)
    gate_keys.mkdir(mode=0o700)
    shutil.copyfile(registry_keys / "registry.pub", gate_keys / "registry.pub")
    ensure_signer(gate_keys, GATE_ROLE, DEFAULT_GATE_NAME)
    permitgate("registry", "vouch", str(gate_keys / f"{GATE_ROLE}.pub"), *db, *vouch_keys)
    made = _departments(home, departments)
    for d in made:
        permitgate(
            "registry", "department", "enrol", "--id", d.id, "--role", d.role,
            "--name", f"{d.role} department {d.id}", "--key", str(d.key.with_suffix(".pub")),
            *db, *keys,
        )  # fmt: skip
    pki = home / "pki"
    return Setup(
        db_url,
        registry_keys,
        gate_keys,
        state,
        pki / "ca.pem",
        pki / "server.pem",
        pki / "server.key",
        made,
    )


@contextmanager
def server(
    label: str, args: list[str], also: re.Pattern[str] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Run a ``permitgate`` server until SERVING (its health service, on its plaintext
    address); its pid, that address and what ``also`` found in its log (another address)."""
    process = subprocess.Popen(
        [permitgate_command(), *args, "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
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
                if also is not None and (extra := also.search(line)):
                    address.append(extra.group(1))
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not seen.wait(300):
            raise RuntimeError(f"{label} did not listen:\n{''.join(said)}")
        if also is not None and len(address) < 2:
            raise RuntimeError(f"{label}: no {also.pattern!r} in its log:\n{''.join(said)}")
        target = address[0]
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 300
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                    if reply.status == _SERVING:
                        break
                except grpc.RpcError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{label} never SERVING:\n{''.join(said)}")
                time.sleep(0.05)
        yield process.pid, address
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# --- the writers and the prober --------------------------------------------------------------


@dataclass
class WriteLog:
    latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, began: float, due: float, replayed: bool) -> None:
        with self.lock:
            self.latencies.append(time.perf_counter() - began)
            self.lateness.append(max(0.0, began - due))
            self.replayed += replayed

    def fail(self, exc: Exception) -> None:
        with self.lock:
            self.failed[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1


def _client(setup: Setup, registry: str, department: Department) -> DepartmentClient:
    return DepartmentClient(
        registry,
        key=department.key,
        cert=department.cert,
        cert_key=department.cert_key,
        ca=setup.ca,
        timeout=30,
    )


def writer(
    client: DepartmentClient,
    department: Department,
    structures: tuple[str, ...],
    rate: float,
    seconds: float,
    start: float,
    log: WriteLog,
) -> None:
    """Write on a fixed schedule, open loop: write ``n`` is sent at ``start + n / rate`` on a
    pool of its own (so a slow answer does not hold the next write back): even ``n`` opens a
    case at ``filed`` on the next structure, odd ``n`` closes that case once it is open."""
    cycle = itertools.cycle(structures)
    opened: dict[int, Future[None]] = {}

    def open_case(n: int, structure: str, due: float) -> None:
        began = time.perf_counter()
        result = client.open_case(
            f"{department.id}-{n // 2:06d}",
            structure,
            department.case_kind,
            "filed",
            "patrol",
            datetime.now(UTC),
        )
        log.done(began, due, result.replayed)

    def close_case(n: int, due: float) -> None:
        opened[n - 1].result()  # the case is open (or its opening failed: then so does this)
        began = time.perf_counter()
        result = client.move_case(f"{department.id}-{n // 2:06d}", "closed")
        log.done(began, due, result.replayed)

    def logged(work: Callable[..., None], *args: Any) -> None:
        try:
            work(*args)
        except Exception as exc:
            log.fail(exc)
            raise

    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix=department.id) as pool:
        n = 0
        while (due := start + n / rate) < start + seconds:
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if n % 2 == 0:
                opened[n] = pool.submit(logged, open_case, n, next(cycle), due)
            else:
                pool.submit(logged, close_case, n, due)
            n += 1


def prober(
    client: DepartmentClient,
    department: Department,
    structures: tuple[str, ...],
    gate: str,
    stop: threading.Event,
    log: WriteLog,
    delays: list[float],
) -> int:
    """Open a case on a structure of its own and ask the gate every 2 ms, from the write's
    answer on, until it answers DENY; close it and wait for ALLOW; next structure. How many
    writes the gate did not show within 10 s."""
    not_seen = 0
    with Client(gate, timeout=5) as gate_client:
        for n, structure in enumerate(itertools.cycle(structures)):
            if stop.is_set():
                return not_seen
            case = f"{department.id}-probe-{n:05d}"
            for write, wanted in (("open", Verdict.DENY), ("close", Verdict.ALLOW)):
                began = time.perf_counter()
                try:
                    if write == "open":
                        result = client.open_case(
                            case, structure, department.case_kind, "filed", "patrol",
                            datetime.now(UTC),
                        )  # fmt: skip
                    else:
                        result = client.move_case(case, "closed")
                except GateError as exc:
                    log.fail(exc)
                    break
                answered = time.perf_counter()
                log.done(began, began, result.replayed)
                while True:
                    verdict = gate_client.check_connection(structure, utility="water").verdict
                    now = time.perf_counter()
                    if verdict is wanted:
                        delays.append(now - answered)
                        break
                    if now - answered > 10:
                        not_seen += 1
                        break
                    time.sleep(0.002)
    return not_seen


def run_writes(
    setup: Setup, registry: str, gate: str, rate: float, seconds: float
) -> tuple[WriteFigures, VisibilityFigures]:
    log = WriteLog()
    delays: list[float] = []
    stop = threading.Event()
    probe_structures = PROBE_STRUCTURES
    clients = [_client(setup, registry, d) for d in setup.departments]
    probe_client = _client(setup, registry, setup.departments[0])
    seen: list[int] = []
    probing = threading.Thread(
        target=lambda: seen.append(
            prober(probe_client, setup.departments[0], probe_structures, gate, stop, log, delays)
        ),
        daemon=True,
    )
    start = time.perf_counter() + 0.5
    threads = [
        threading.Thread(target=writer, args=(client, d, d.structures, rate, seconds, start, log))
        for client, d in zip(clients, setup.departments, strict=True)
    ]
    probing.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    stop.set()
    probing.join(60)
    for client in (*clients, probe_client):
        client.close()
    planned = 2 * int(rate * seconds / 2) * len(threads)
    writes = WriteFigures(
        planned,
        len(log.latencies),
        dict(log.failed),
        round(elapsed, 2),
        round(len(log.latencies) / elapsed, 1),
        _ms(percentile(log.latencies, 50)),
        _ms(percentile(log.latencies, 99)),
        _ms(max(log.latencies, default=None)),
        _ms(percentile(log.lateness, 99)),
        log.replayed,
    )
    not_seen = seen[0] if seen else 0
    visibility = VisibilityFigures(
        len(delays) + not_seen,
        not_seen,
        _ms(percentile(delays, 50)),
        _ms(percentile(delays, 99)),
        _ms(max(delays, default=None)),
    )
    return writes, visibility


# --- one database ----------------------------------------------------------------------------


def run_backend(
    label: str, db_url: str, home: Path, departments: int, rate: float, seconds: float,
    check_rate: float,
) -> BackendRun:  # fmt: skip
    print(f"[{label}] building the registry ({STRUCTURES:,} structures, {departments} departments)")
    setup = build(home, db_url, departments)
    registry_args = [
        "registry", "serve", "--db", db_url, "--keys", str(setup.registry_keys),
        "--state", str(setup.state), "--tls-cert", str(setup.server_cert),
        "--tls-key", str(setup.server_key), "--client-ca", str(setup.ca),
        "--departments-listen", "127.0.0.1:0",
    ]  # fmt: skip
    gate_args = [
        "serve", "--db", db_url, "--keys", str(setup.gate_keys),
        "--state", str(home / "gate-state"),
    ]  # fmt: skip
    with ExitStack() as stack:
        registry_pid, (_, registry) = stack.enter_context(
            server("the registry service", registry_args, _DEPARTMENT_CALLS)
        )
        gate_pid, (gate,) = stack.enter_context(server("the gate", gate_args))
        print(f"[{label}] registry at {registry} (mutual TLS), gate at {gate}")
        print(f"[{label}] checks alone: {check_rate:g}/s for {seconds:g} s")
        alone = check_figures(run_check_load(gate, check_rate, seconds))
        print(f"[{label}]   {alone.rate:g} checks/s, p50 {alone.p50_ms} ms, p99 {alone.p99_ms} ms")
        print(
            f"[{label}] checks with writes: {departments} departments x {rate:g} writes/s "
            f"for {seconds:g} s"
        )
        load = run_check_load(gate, check_rate, seconds + 1.0)
        time.sleep(WARMUP)  # the load's warm-up: its measured part begins with the writes
        cpu = _cpu(registry_pid, gate_pid)
        writes, visibility = run_writes(setup, registry, gate, rate, seconds)
        used = {
            k: round((v - cpu[k]) / writes.seconds, 2)
            for k, v in _cpu(registry_pid, gate_pid).items()
        }
        beside = check_figures(load)
        print(
            f"[{label}]   {writes.rate:g} writes/s (p50 {writes.p50_ms} ms, p99 "
            f"{writes.p99_ms} ms, failed {sum(writes.failed.values())}); gate {beside.rate:g} "
            f"checks/s, p99 {beside.p99_ms} ms; write to gate p50 {visibility.p50_ms} ms, "
            f"p99 {visibility.p99_ms} ms; cores used: {used}"
        )
    notes = []
    if writes.failed:
        notes.append(f"failed writes: {writes.failed}")
    if visibility.not_seen:
        notes.append(f"{visibility.not_seen} probed writes not seen at the gate within 10 s")
    return BackendRun(label, alone, beside, writes, visibility, used, notes)


def _cpu(registry_pid: int, gate_pid: int) -> dict[str, float]:
    """CPU seconds so far: the registry service, the gate, and this process (the departments'
    clients and the prober; the check load is a process of its own)."""
    return {
        "registry": cpu_seconds(registry_pid) or 0.0,
        "gate": cpu_seconds(gate_pid) or 0.0,
        "departments": time.process_time(),
    }


# --- the report ------------------------------------------------------------------------------


def _v(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def markdown(out: dict[str, Any]) -> str:
    lines = [
        "# Department writes beside a gate",
        "",
        f"{out['date']}, {out['machine']['cpu']} ({out['machine']['cores']} cores), "
        f"Python {out['machine']['python']}, commit {out['commit']}; load average "
        f"{out['machine']['load_average_at_start']:.2f} at the start, "
        f"{out['load_average_at_end']:.2f} at the end (the machine is shared). "
        f"{out['departments']} departments x {out['rate']:g} writes/s for {out['seconds']:g} s "
        f"(target {out['departments'] * out['rate']:g}/s); the gate at {out['check_rate']:g} "
        f"checks/s open loop; {STRUCTURES:,} structures. `python -m benchmarks.department_writes`.",
        "",
        "| database | writes/s | write p50 ms | write p99 ms | failed | checks/s alone | "
        "check p99 ms alone | checks/s with writes | check p99 ms with writes | "
        "write to gate p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in out["runs"]:
        w, a, b, v = (
            run["writes"],
            run["checks_alone"],
            run["checks_with_writes"],
            run["write_to_gate"],
        )
        lines.append(
            f"| {run['backend']} | {_v(w['rate'])} | {_v(w['p50_ms'])} | {_v(w['p99_ms'])} | "
            f"{sum(w['failed'].values())} | {_v(a['rate'])} | {_v(a['p99_ms'])} | "
            f"{_v(b['rate'])} | {_v(b['p99_ms'])} | {_v(v['p50_ms'])} | {_v(v['p99_ms'])} | "
            f"{_v(v['max_ms'])} |"
        )
    lines += [
        "",
        "Targets (issue 10): 100 writes/s sustained on SQLite and PostgreSQL with the gate "
        "answering beside it; a write in effect at the gate within 1 s.",
        "",
    ]
    for run in out["runs"]:
        met_rate = run["writes"]["rate"] >= 0.95 * out["departments"] * out["rate"]
        p99 = run["write_to_gate"]["p99_ms"]
        met_gate = p99 is not None and p99 <= 1000
        lines.append(
            f"- {run['backend']}: writes/s target {'met' if met_rate else 'MISSED'}; "
            f"write to gate p99 within 1 s {'met' if met_gate else 'MISSED'}"
            f" ({run['write_to_gate']['probed']} writes probed)."
        )
        cores = ", ".join(f"{k} {v:g}" for k, v in run["cores"].items())
        lines.append(f"  - cores used during the writes: {cores} (of {out['machine']['cores']})")
        lines += [f"  - note: {note}" for note in run["notes"]]
    return "\n".join(lines) + "\n"


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
            check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.department_writes")
    parser.add_argument(
        "--db",
        action="append",
        help="A database URL to run on (repeatable); default: SQLite, then a private "
        "PostgreSQL database. It must be empty: the run creates the registry in it.",
    )
    parser.add_argument("--departments", type=int, default=DEPARTMENTS)
    parser.add_argument("--rate", type=float, default=RATE, help="Writes/s per department.")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--check-rate", type=float, default=CHECK_RATE)
    parser.add_argument("--check-load", metavar="GATE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_load:  # the check load's own process
        got = asyncio.run(_check_load(args.check_load, args.check_rate, args.seconds))
        sys.stdout.buffer.write(orjson.dumps(got))
        return 0
    runs: list[BackendRun] = []
    machine, commit = _machine(), _commit()
    with tempfile.TemporaryDirectory(prefix="permitgate-dept-writes-") as tmp, ExitStack() as st:
        urls = args.db or [
            f"sqlite:///{Path(tmp) / 'sqlite' / 'registry.db'}",
            st.enter_context(private_pg_database("permitgate_dept_writes"))[0],
        ]
        for n, url in enumerate(urls):
            label = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
            home = Path(tmp) / f"run-{n}"
            home.mkdir()
            if url.startswith("sqlite"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            runs.append(
                run_backend(
                    label, url, home, args.departments, args.rate, args.seconds, args.check_rate
                )
            )
    out = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load_average_at_end": os.getloadavg()[0],
        "commit": commit,
        "departments": args.departments,
        "rate": args.rate,
        "seconds": args.seconds,
        "check_rate": args.check_rate,
        "runs": [asdict(run) for run in runs],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "department_writes.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "department_writes.md").write_text(markdown(out))
    print(markdown(out))
    print(f"wrote {RESULTS / 'department_writes.md'} and .json")
    failed = any(run.writes.failed or run.write_to_gate.not_seen for run in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
