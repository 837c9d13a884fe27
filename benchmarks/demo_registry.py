"""The registry every system of ``make bench`` answers from, built with the ``permitgate`` CLI.

The steps are the ones a user takes (as ``scripts/demo.py`` does): ``registry init``,
``registry demo-data``, ``registry import`` (which signs the checkpoint), the gate's own key
vouched for with ``registry vouch`` (so that receipts carry the registry's statement), on the
embedded default (SQLite). The demo data is extended by a few urban structures with no permit
at all: a permanent connection to one is a DENY with three reasons (``MISSING_PERMIT`` for each
of Art. 23's three permits), the heavier answer of the benchmark.

Each gate (and the naive server) gets a copy of the database file of its own, so that no two
servers share a decision log or a write lock during a measurement.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.support import permitgate
from registry.demo import SCENARIOS, structure_id
from registry.signing import ensure_signer
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE

__all__ = [
    "ALLOW_STRUCTURE",
    "DENY3_STRUCTURES",
    "STRUCTURES",
    "DemoRegistry",
    "build_registry",
]

STRUCTURES = 5_000
ALLOW_STRUCTURE = structure_id(0)
"""Scenario 0: urban, every permit in force; a permanent connection is ALLOW."""
DENY3_STRUCTURES = tuple(f"110228-0999-{n:04d}" for n in range(1, 4))
"""Urban structures with no permit: DENY, MISSING_PERMIT for each of Art. 23's three kinds."""


@dataclass(frozen=True)
class DemoRegistry:
    """A built registry: its database file, the registry's keys and the vouched gate keys."""

    home: Path
    database: Path
    registry_keys: Path
    gate_keys: Path
    records: dict[str, list[dict[str, Any]]]  # structure id -> its JSON Lines records

    def copy_database(self, name: str) -> str:
        """A copy of the database for one server (its decision log stays its own); its URL."""
        copy = self.home / f"{name}.db"
        shutil.copyfile(self.database, copy)
        return f"sqlite:///{copy}"

    def scenario_ids(self) -> list[str]:
        """One structure of every demo scenario, and the three-reason DENY ones."""
        return [structure_id(i) for i in range(len(SCENARIOS))] + list(DENY3_STRUCTURES)


def _extra_lines() -> list[dict[str, Any]]:
    return [
        {
            "type": "structure",
            "id": sid,
            "area": "urban",
            "district": "110228",
            "address": f"No. {n}, unpermitted lane",
            "declared_use": "residential",
        }
        for n, sid in enumerate(DENY3_STRUCTURES, 1)
    ]


def build_registry(home: Path) -> DemoRegistry:
    """Build the registry in ``home`` (an empty directory) with the permitgate CLI."""
    database = home / "registry.db"
    registry_keys = home / "registry-keys"
    gate_keys = home / "gate-keys"
    db = ("--db", f"sqlite:///{database}")
    keys = ("--keys", str(registry_keys))
    permitgate("registry", "init", *db, *keys)
    demo = permitgate("registry", "demo-data", "--structures", str(STRUCTURES)).stdout
    lines = [orjson.loads(line) for line in demo.splitlines() if line] + _extra_lines()
    data = home / "registry.jsonl"
    data.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    permitgate("registry", "import", str(data), *db, *keys)
    gate_keys.mkdir(mode=0o700)
    shutil.copyfile(registry_keys / "registry.pub", gate_keys / "registry.pub")
    ensure_signer(gate_keys, GATE_ROLE, DEFAULT_GATE_NAME)
    permitgate("registry", "vouch", str(gate_keys / f"{GATE_ROLE}.pub"), *db, *keys)
    records: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        sid = line["id"] if line["type"] == "structure" else line["structure"]
        records.setdefault(sid, []).append(line)
    return DemoRegistry(home, database, registry_keys, gate_keys, records)
