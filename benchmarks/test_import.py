"""Import 1,000,000 JSON Lines into a fresh registry, on SQLite and on PostgreSQL (issue 2).

Each run is the real command, ``permitgate registry import FILE``, in a subprocess, after
``permitgate registry init`` on an empty database. Measured: the wall time of the import
command, and the memory of its whole process tree (the importer and its signing workers),
sampled from ``/proc`` (see ``benchmarks.proctree``). The PostgreSQL server is not in the tree;
the CPU time of the backend serving the import is reported beside it.

The target (within 60 s, under 1 GiB, on the 2-core reference machine) is reported, not
asserted: this is a benchmark, not a timed test. What is asserted is that the import worked:
exit 0, every line a change, and ``permitgate registry verify`` passes afterwards.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.proctree import MIB, TreeRun, run_measured
from benchmarks.support import (
    IMPORT_LINES,
    PG_WRITERS,
    REPO,
    permitgate,
    permitgate_command,
    pg_watch,
)

TARGET_SECONDS = 60.0
TARGET_BYTES = 1 << 30


def _figures(run: TreeRun) -> dict[str, Any]:
    sampler = run.sampler
    processes = run.cpu_by_process()
    workers = [p for p in processes if p[1] == "spawn worker"]
    return {
        "lines": IMPORT_LINES,
        "seconds": round(run.seconds, 2),
        "lines_per_s": round(IMPORT_LINES / run.seconds),
        "peak_tree_rss_mib": round(sampler.peak_tree_rss / MIB, 1),
        "peak_tree_pss_mib": round(sampler.peak_tree_pss / MIB, 1),
        "hwm_sum_mib": round(sampler.hwm_sum / MIB, 1),
        "main_hwm_mib": round(sampler.root_hwm / MIB, 1),
        "worker_hwm_mib": [round(p[3] / MIB, 1) for p in workers],
        "processes": sampler.peak_processes,
        "main_cpu_s": round(sampler.cpu.get(sampler.root, 0.0), 1),
        "workers_cpu_s": round(sum(p[2] for p in workers), 1),
        "db_backend_cpu_s": round(
            sum(sampler.watched_cpu.values()) - sampler.watched_cpu_where(*PG_WRITERS), 1
        ),
        "db_writers_cpu_s": round(sampler.watched_cpu_where(*PG_WRITERS), 1),
        "samples": sampler.samples,
        "others_cpu_s": round(run.others_cpu, 1),
        "others_load": round(run.others_cpu / run.seconds, 2),  # cores' worth, on average
        "cores": os.cpu_count(),
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_million_lines(
    benchmark: Any,
    backend: str,
    million_lines: Path,
    scratch: Path,
    request: pytest.FixtureRequest,
) -> None:
    keys = scratch / "keys"
    watch: tuple[str, ...] = ()
    if backend == "sqlite":
        url = f"sqlite:///{scratch / 'registry.db'}"
    else:
        url, name = request.getfixturevalue("pg_database")
        watch = pg_watch(name)

    def fresh_registry() -> None:
        permitgate("registry", "init", "--db", url, "--keys", str(keys))

    def run_import() -> TreeRun:
        argv = [permitgate_command(), "registry", "import", str(million_lines)]
        return run_measured([*argv, "--db", url, "--keys", str(keys)], cwd=REPO, watch=watch)

    run: TreeRun = benchmark.pedantic(run_import, setup=fresh_registry, rounds=1, iterations=1)
    assert run.returncode == 0, f"import failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    summary = re.search(r"(\d+) lines: (\d+) changes", run.stdout)
    assert summary is not None, run.stdout
    assert int(summary[1]) == int(summary[2]) == IMPORT_LINES, run.stdout  # every line a change
    signed = re.search(r"(\d+) status records signed", run.stdout)

    started = time.perf_counter()
    verified = permitgate("registry", "verify", "--db", url, "--keys", str(keys), timeout=1200)
    verify_seconds = time.perf_counter() - started
    assert verified.stdout.startswith(f"ok: {IMPORT_LINES} events match"), verified.stdout

    info = _figures(run)
    info["status_records"] = None if signed is None else int(signed[1])
    info["file_mib"] = round(million_lines.stat().st_size / MIB, 1)
    info["verify_seconds"] = round(verify_seconds, 1)
    info["within_60s"] = run.seconds <= TARGET_SECONDS
    info["under_1gib"] = run.sampler.peak_tree_rss < TARGET_BYTES
    benchmark.extra_info.update(info)
    _print(backend, info, run)


def _print(backend: str, info: dict[str, Any], run: TreeRun) -> None:
    verdict = "within" if info["within_60s"] and info["under_1gib"] else "OVER"
    print(
        f"\n== import {info['lines']:,} lines ({info['file_mib']} MiB) into {backend}: "
        f"{verdict} the target (60 s, 1 GiB)\n"
        f"  wall time            {info['seconds']:8.1f} s   ({info['lines_per_s']:,} lines/s)\n"
        f"  peak RSS, tree       {info['peak_tree_rss_mib']:8.1f} MiB "
        f"(sum over {info['processes']} processes at one sample)\n"
        f"  peak PSS, tree       {info['peak_tree_pss_mib']:8.1f} MiB "
        "(shared pages split between processes)\n"
        f"  sum of VmHWM         {info['hwm_sum_mib']:8.1f} MiB (upper bound)\n"
        f"  CPU: importer {info['main_cpu_s']} s, signing workers {info['workers_cpu_s']} s, "
        f"database backend {info['db_backend_cpu_s']} s, "
        f"database WAL/checkpoint writers {info['db_writers_cpu_s']} s\n"
        f"  other processes on the machine used {info['others_cpu_s']} s CPU meanwhile "
        f"({info['others_load']} of {info['cores']} cores on average)\n"
        f"  status records signed {info['status_records'] or '?'}; "
        f"verify afterwards {info['verify_seconds']} s (not in the import time)"
    )
    for pid, name, cpu, hwm in run.cpu_by_process():
        print(f"    pid {pid:>7}  cpu {cpu:6.1f} s  VmHWM {hwm / MIB:7.1f} MiB  {name}")
    for pid, cpu in run.sampler.watched_cpu.items():
        print(f"    pid {pid:>7}  cpu {cpu:6.1f} s  {run.sampler.watched_names.get(pid, '?')}")
