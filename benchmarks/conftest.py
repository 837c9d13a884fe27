"""Fixtures for the benchmarks: the 1,000,000-line import file and a private PostgreSQL database.

The benchmarks run with ``make bench`` (``pytest benchmarks --benchmark-enable``); the plain
test run (``pytest`` from the repository root) does not collect them (``testpaths``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.support import IMPORT_LINES, private_pg_database, write_demo_lines


@pytest.fixture(scope="session")
def million_lines() -> Iterator[Path]:
    """A JSON Lines file of exactly ``IMPORT_LINES`` demo lines, written once per session.

    In a temporary directory removed at the end (not pytest's ``tmp_path``, which keeps the
    last few sessions' files: 150 MB here, and a gigabyte of SQLite registry per run).
    """
    with tempfile.TemporaryDirectory(prefix="permitgate-bench-") as tmp:
        path = Path(tmp) / "registry-1m.jsonl"
        started = time.perf_counter()
        size = write_demo_lines(path, IMPORT_LINES)
        print(
            f"\nwrote {IMPORT_LINES:,} lines ({size / 2**20:.0f} MiB) to {path} "
            f"in {time.perf_counter() - started:.1f} s"
        )
        yield path


@pytest.fixture
def scratch() -> Iterator[Path]:
    """An empty directory, removed after the benchmark (with the registry made in it)."""
    with tempfile.TemporaryDirectory(prefix="permitgate-bench-") as tmp:
        yield Path(tmp)


@pytest.fixture
def pg_database() -> Iterator[tuple[str, str]]:
    """A new, empty PostgreSQL database for one benchmark: (URL, name); dropped afterwards."""
    with private_pg_database() as database:
        yield database
