"""Helpers shared by the benchmarks and ``benchmarks.import_phases``: data, databases, commands.

PostgreSQL benchmarks use a database of their own, created on the server named by
PERMITGATE_TEST_PG (default: the local server's ``test`` database, as for the tests) and
dropped at the end, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import orjson
import psycopg
from psycopg import sql

from registry.demo import SCENARIOS, demo_lines

__all__ = [
    "IMPORT_LINES",
    "PG_URL",
    "PG_WRITERS",
    "REPO",
    "permitgate",
    "permitgate_command",
    "pg_watch",
    "private_pg_database",
    "write_demo_lines",
]

PG_URL = os.environ.get("PERMITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parent.parent
IMPORT_LINES = 1_000_000
"""The size of the import benchmark (issue 2: "import 1,000,000 lines")."""


def permitgate_command() -> str:
    """The ``permitgate`` console script of the interpreter running this (the venv's)."""
    beside = Path(sys.executable).with_name("permitgate")
    if beside.exists():
        return str(beside)
    found = shutil.which("permitgate")
    if found is None:
        raise RuntimeError("the permitgate command is not installed (run 'make install')")
    return found


def permitgate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``permitgate ARGS`` to completion, capturing its output; raise if it fails."""
    result = subprocess.run(
        [permitgate_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"permitgate {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def write_demo_lines(path: Path, lines: int) -> int:
    """Write exactly ``lines`` demo JSON Lines (structures, permits and cases mixed) to ``path``.

    ``registry.demo.demo_lines`` gives each structure its permits and cases right after it, so
    the cut may fall inside one structure's group; every line still refers to a structure
    above it. Returns the size of the file in bytes.
    """
    per_structure = sum(_lines_per_scenario()) / len(SCENARIOS)
    structures = int(lines / per_structure) + len(SCENARIOS)
    written = 0
    with path.open("wb") as out:
        for record in islice(demo_lines(structures), lines):
            out.write(orjson.dumps(record) + b"\n")
            written += 1
    if written != lines:
        raise RuntimeError(f"demo data gave {written} lines, not {lines}")
    return path.stat().st_size


def _lines_per_scenario() -> list[int]:
    counts = [0] * len(SCENARIOS)
    index = -1
    for record in demo_lines(len(SCENARIOS)):
        if record["type"] == "structure":
            index += 1
        counts[index] += 1
    return counts


def pg_watch(name: str) -> tuple[str, ...]:
    """``ProcessTreeSampler.watch`` strings for the PostgreSQL server's work on database ``name``.

    A backend's process title is ``postgres: VERSION/CLUSTER: USER DBNAME HOST(PORT) STATE``
    (autovacuum workers: ``... autovacuum worker DBNAME``), so `` DBNAME`` finds the processes
    serving that database (not the client, whose URL has ``/DBNAME``). The server-wide writers
    (WAL writer, checkpointer, background writer) work for every database; during a bulk
    import, mostly for it.
    """
    return (f" {name}", *PG_WRITERS)


PG_WRITERS = (": walwriter", ": checkpointer", ": background writer")


@contextmanager
def private_pg_database(prefix: str = "permitgate_bench") -> Iterator[tuple[str, str]]:
    """A new, empty PostgreSQL database; yields (URL, name) and drops it at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}", name
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
