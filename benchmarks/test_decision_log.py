"""The decision log's CPU per decision, on SQLite and on PostgreSQL (issue 8: ~3 µs budget).

Entries are real: a ``GateApp`` over a demo registry of 5,000 structures on SQLite answers
``ENTRIES`` checks in process (connection, registration and premises checks, as ``BatchCheck``
would hand them to the log), and each answer becomes ``(request, caller, answer)``. Then a
``DecisionLog`` over a fresh database takes them ``PER_FLUSH`` at a time (what 0.5 s brings at
75,000 decisions/s) and flushes, as the gate's flusher does. Measured per decision: this
process's CPU (``getrusage``, every thread: conversion and the write) and, on PostgreSQL, the
CPU of the backend serving the writes (read from ``/proc``; another core's work, not the
gate's). Rounds alternate the backends; every round is printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from permitgate_client.v1 import gate_pb2 as pb

from benchmarks.proctree import cpu_seconds
from benchmarks.support import private_pg_database
from registry.admin import default_state_dir, init_registry
from registry.decisions import SqlDecisionStore
from registry.demo import demo_lines, structure_id
from registry.importer import import_lines
from registry.storage import Database
from server.app import GateApp
from server.checks import CHECK_KINDS
from server.decision_log import DecisionLog, LogEntry

ENTRIES = 200_000
PER_FLUSH = 37_500
STRUCTURES = 5_000
ROUNDS = 2
CALLER = "ipv4:127.0.0.1:51234"
UTILITIES = (pb.UTILITY_WATER, pb.UTILITY_POWER, pb.UTILITY_GAS)
OFFICES = (pb.OFFICE_TAX, pb.OFFICE_HEALTH)


def _checks(count: int) -> list[tuple[str, Any]]:
    """Six connection checks in ten, two registration and two premises checks."""
    out: list[tuple[str, Any]] = []
    for i in range(count):
        sid = structure_id(i % STRUCTURES)
        if i % 10 < 6:
            check: Any = pb.ConnectionCheck(
                structure_id=sid,
                utility=UTILITIES[i % 3],
                kind=pb.CONNECTION_KIND_PERMANENT,
                application_id=f"A-{i % 997}",
            )
            out.append(("connection", check))
        elif i % 10 < 8:
            check = pb.RegistrationCheck(
                structure_id=sid, kind=pb.REGISTRATION_KIND_INITIAL, application_id=f"R-{i % 991}"
            )
            out.append(("registration", check))
        else:  # few premises: each new (office, application, structure) records a notification
            check = pb.PremisesCheck(
                structure_id=structure_id(i % 140),
                office=OFFICES[i % 2],
                declared_use="restaurant",
                application_id=f"P-{i % 7}",
            )
            out.append(("premises", check))
    return out


async def _entries(home: Path, count: int) -> list[LogEntry]:
    url = f"sqlite:///{home / 'registry.db'}"
    db = Database(url)
    keys = home / "keys"
    signer = init_registry(db, keys).signer
    lines = (orjson.dumps(r) for r in demo_lines(STRUCTURES))
    assert import_lines(db, lines, signer, state_dir=default_state_dir(keys)).ok
    db.dispose()
    app = await GateApp.create(db_url=url, keys_dir=keys, listen="127.0.0.1:0")
    await app.start()
    assert await app.first_poll()
    unused = Database(url)
    try:
        # a log never started keeps what it is given: the answers are logged here, not there
        app.gate.decision_log = DecisionLog(SqlDecisionStore(unused), state_dir=home / "unused")
        entries: list[LogEntry] = []
        for name, check in _checks(count):
            request = CHECK_KINDS[name].from_wire(check, app.gate.clock())
            entries.append((request, CALLER, await app.gate.answer(request, caller=CALLER)))
        return entries
    finally:
        await app.stop()
        unused.dispose()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _log_cpu(url: str, entries: list[LogEntry], state: Path) -> tuple[float, float]:
    """µs of CPU per decision: here (every thread), and in the PostgreSQL backend (0 on SQLite)."""
    db = Database(url)
    db.upgrade()
    try:
        backend = None
        if db.dialect == "postgresql":
            with db.engine.connect() as connection:  # the pool's one connection, kept
                backend = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        log = DecisionLog(SqlDecisionStore(db), state_dir=state)
        backend_before = 0.0 if backend is None else cpu_seconds(backend) or 0.0
        before = _cpu()
        for start in range(0, len(entries), PER_FLUSH):
            log.extend(entries[start : start + PER_FLUSH])
            await log.flush()
        here = _cpu() - before
        backend_cpu = 0.0 if backend is None else (cpu_seconds(backend) or 0.0) - backend_before
        assert (log.written, log.refused) == (len(entries), 0)
        return here / len(entries) * 1e6, backend_cpu / len(entries) * 1e6
    finally:
        db.dispose()


def test_decision_log_cpu_per_decision(benchmark: Any, scratch: Path) -> None:
    def run() -> dict[str, list[float]]:
        return asyncio.run(_run(scratch))

    figures = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print()
    for name, values in figures.items():
        print(
            f"  {name}: {', '.join(f'{v:.2f}' for v in values)} µs/decision; best {min(values):.2f}"
        )


async def _run(home: Path) -> dict[str, list[float]]:
    started = time.perf_counter()
    entries = await _entries(home, ENTRIES)
    print(f"\n{len(entries):,} entries from a real gate in {time.perf_counter() - started:.0f} s")
    figures: dict[str, list[float]] = {"sqlite": [], "postgresql": [], "postgresql server": []}
    for n in range(ROUNDS):
        here, _ = await _log_cpu(f"sqlite:///{home / f'log-{n}.db'}", entries, home / f"s{n}")
        figures["sqlite"].append(here)
        with private_pg_database() as (url, _name):
            here, server = await _log_cpu(url, entries, home / f"p{n}")
        figures["postgresql"].append(here)
        figures["postgresql server"].append(server)
    return figures
