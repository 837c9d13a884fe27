"""Where an import's time goes: the import of ``benchmarks/test_import.py``, split into phases.

    .venv/bin/python -m benchmarks.import_phases [--backend sqlite|postgresql] [--lines N]
                                                  [--file JSONL]

A diagnostic, not a benchmark: it runs ``registry.importer.import_lines`` in this process on a
fresh registry (a temporary SQLite file, or a private PostgreSQL database dropped afterwards)
with timers wrapped around the importer's steps, and prints each step's *exclusive* wall time
(time inside nested timed steps is counted once, in the inner step), so that the rows add up to
the import's wall time. Nothing in ``registry`` is changed; the wrappers are installed on the
classes for the length of this process only. The timers cost well under a second per million
lines (the file reader's, one pair of clock reads a line, is the largest).

Steps, in the order an import meets them:

* read file: reading lines from the file (the iterator the importer consumes);
* parse: ``orjson.loads``, record validation, canonical JSON (``importer.parse_lines``), in this
  process for the first chunk, in the worker processes after it (waiting for them is below);
* look ids up in the tables: one SELECT per table per chunk (which rows exist, and the structure
  each permit and case id is filed under);
* read back signed states: the status records of known structures a chunk touches, checked
  against the registry's state and parsed;
* check + events + Merkle: the per-line loop (checks, event encoding, leaf hashes, tree);
* write rows + events: INSERT/COPY of structures, permits, cases and events;
* states to sign: each touched structure's records, as the parts handed to the signer;
* hand to signing / hand to workers: the pipeline's submit, and pickling batches to the pool;
* sign inline: status records signed in this process (the first few thousand structures);
* wait for workers: blocked on a signing worker's result;
* write status records: DELETE + INSERT/COPY of the signed records;
* status map + head: the map of every record's digest, and the head signed over it;
* save the state: the registry's own state, after the commit;
* commit: the transaction's COMMIT;
* other: everything not above (setup, Python glue).

CPU time of the signing workers and of the PostgreSQL backend is sampled from ``/proc``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm.session import SessionTransaction

import registry.importer as importer
import registry.status as status
import registry.writer as writer
from benchmarks.proctree import MIB, ProcessTreeSampler, cpu_seconds, machine_busy_seconds
from benchmarks.support import (
    IMPORT_LINES,
    PG_WRITERS,
    pg_watch,
    private_pg_database,
    write_demo_lines,
)
from registry.admin import default_state_dir, init_registry
from registry.storage import Database

__all__ = ["Phases", "main", "profile_import"]

F = TypeVar("F", bound=Callable[..., Any])


class Phases:
    """Exclusive wall time per named step, for calls made on the main thread."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._children: list[float] = []  # per open step: time spent in timed steps inside it
        self._main = threading.main_thread()

    def _enter(self) -> float:
        self._children.append(0.0)
        return time.perf_counter()

    def _leave(self, name: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        inner = self._children.pop()
        self.seconds[name] += elapsed - inner
        self.calls[name] += 1
        if self._children:
            self._children[-1] += elapsed

    def wrap(self, name: str, fn: F) -> F:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not self._main:
                return fn(*args, **kwargs)
            started = self._enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._leave(name, started)

        return timed  # type: ignore[return-value]

    def iterate(self, name: str, items: Iterable[bytes]) -> Iterator[bytes]:
        """``items``, with the time spent producing each counted under ``name``."""
        iterator = iter(items)
        while True:
            started = self._enter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self._leave(name, started)
            yield item


def _patch(stack: ExitStack, owner: type, attribute: str, replacement: Any) -> None:
    """Set ``owner.attribute`` until ``stack`` closes."""
    original = owner.__dict__.get(attribute)
    setattr(owner, attribute, replacement)
    if original is None:  # inherited: deleting the override restores it
        stack.callback(delattr, owner, attribute)
    else:
        stack.callback(setattr, owner, attribute, original)


# (class or module, function, step); one the registry no longer has is skipped, and said so.
_TIMED: tuple[tuple[Any, str, str], ...] = (
    (importer, "parse_lines", "parse (here; in workers past the first chunk)"),
    (importer._Applier, "_index", "look ids up in the tables"),
    (importer._Applier, "_holdings", "read back signed states"),
    (importer._Applier, "apply", "check + events + Merkle"),
    (importer._Applier, "_write", "write rows + events"),
    (importer._Holding, "parts", "states to sign"),
    (status.SigningPipeline, "submit", "hand to signing"),
    (status.SigningPipeline, "finish", "wait for workers"),
    (status.SigningPipeline, "_sign", "hand to workers"),
    (status.SigningPipeline, "_write", "write status records"),
    (status.StatusSigner, "rows", "sign inline"),
    (Future, "result", "wait for workers"),
    (writer.Writer, "sign_head", "status map + head"),
    (writer.Writer, "_save", "save the state"),
    (SessionTransaction, "commit", "commit"),
)


def _instrument(stack: ExitStack, phases: Phases) -> list[str]:
    """Wrap every step's method in a timer; returns the names of those not found."""
    missing = []
    for owner, attribute, step in _TIMED:
        method = getattr(owner, attribute, None)
        if method is None:
            missing.append(f"{owner.__name__}.{attribute}")
            continue
        _patch(stack, owner, attribute, phases.wrap(step, method))
    return missing


ORDER = (
    "read file",
    "parse (here; in workers past the first chunk)",
    "look ids up in the tables",
    "read back signed states",
    "check + events + Merkle",
    "write rows + events",
    "states to sign",
    "hand to signing",
    "sign inline",
    "hand to workers",
    "wait for workers",
    "write status records",
    "status map + head",
    "save the state",
    "commit",
)


def profile_import(
    url: str, keys: Path, jsonl: Path, *, watch: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Import ``jsonl`` into the fresh registry at ``url``, timing each step; returns figures."""
    db = Database(url)
    signer = init_registry(db, keys).signer
    phases = Phases()
    sampler = ProcessTreeSampler(os.getpid(), interval=0.25, watch=watch)
    with ExitStack() as stack, jsonl.open("rb") as lines:
        missing = _instrument(stack, phases)
        sampler.start()
        busy = machine_busy_seconds()
        own_cpu_before = cpu_seconds(os.getpid()) or 0.0
        started = time.perf_counter()
        try:
            report = importer.import_lines(
                db,
                phases.iterate("read file", lines),
                signer,
                state_dir=default_state_dir(keys),
            )
        finally:
            wall = time.perf_counter() - started
            busy = machine_busy_seconds() - busy
            sampler.stop()
    db.dispose()
    if not report.ok:
        raise RuntimeError(f"import failed: {report.errors[:5]}")
    steps = {name: phases.seconds.get(name, 0.0) for name in ORDER}
    steps["other"] = wall - sum(steps.values())
    sampler.cpu[sampler.root] = (cpu_seconds(sampler.root) or 0.0) - own_cpu_before
    workers = [p for p, name in sampler.names.items() if name == "spawn worker"]
    return {
        "lines": report.lines,
        "changes": report.changes,
        "signed": report.signed,
        "wall": wall,
        "steps": steps,
        "calls": dict(phases.calls),
        "main_cpu": sampler.cpu.get(sampler.root, 0.0),
        "workers_cpu": sum(sampler.cpu.get(p, 0.0) for p in workers),
        "backend_cpu": sum(sampler.watched_cpu.values()) - sampler.watched_cpu_where(*PG_WRITERS),
        "writers_cpu": sampler.watched_cpu_where(*PG_WRITERS),
        "peak_tree_rss_mib": sampler.peak_tree_rss / MIB,
        "not_timed": missing,
        "others_load": max(
            0.0, busy - sum(sampler.cpu.values()) - sum(sampler.watched_cpu.values())
        )
        / wall,
    }


def _print(backend: str, figures: dict[str, Any]) -> None:
    wall = figures["wall"]
    print(
        f"import of {figures['lines']:,} lines into {backend}: {wall:.1f} s wall, "
        f"{figures['changes']:,} changes, {figures['signed']:,} status records signed, "
        f"peak tree RSS {figures['peak_tree_rss_mib']:.0f} MiB"
    )
    print(f"  {'step (exclusive wall time, main process)':<44}{'s':>8}{'%':>7}{'calls':>9}")
    for name, seconds in figures["steps"].items():
        calls = figures["calls"].get(name, "")
        print(f"  {name:<44}{seconds:>8.2f}{100 * seconds / wall:>6.1f}%{calls:>9}")
    if figures["not_timed"]:
        print(f"  (not found, so not timed: {', '.join(figures['not_timed'])})")
    print(
        f"  CPU: main process {figures['main_cpu']:.1f} s, signing workers "
        f"{figures['workers_cpu']:.1f} s, database backend {figures['backend_cpu']:.1f} s, "
        f"database WAL/checkpoint writers {figures['writers_cpu']:.1f} s; other processes "
        f"{figures['others_load']:.2f} of {os.cpu_count()} cores on average"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_phases")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--lines", type=int, default=IMPORT_LINES)
    parser.add_argument("--file", type=Path, help="JSON Lines to import (default: demo data)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="permitgate-phases-") as tmp, ExitStack() as stack:
        home = Path(tmp)
        jsonl: Path | None = args.file
        if jsonl is None:
            jsonl = home / "lines.jsonl"
            write_demo_lines(jsonl, args.lines)
        watch: tuple[str, ...] = ()
        if args.backend == "sqlite":
            url = f"sqlite:///{home / 'registry.db'}"
        else:
            url, name = stack.enter_context(private_pg_database("permitgate_phases"))
            watch = pg_watch(name)
        _print(args.backend, profile_import(url, home / "keys", jsonl, watch=watch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
