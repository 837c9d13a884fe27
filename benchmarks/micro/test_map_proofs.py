"""Verifying a status record by its map proof, and an absence, offline (``_proofs.py``).

What is measured, in-process, on status maps (``registry.statusmap.StatusMap``) of 10,000 and
1,000,000 entries: real signed status records of the demo structures (``conftest.Demo``, about
1 KiB each) and stand-in entries around them.

* **present**: SHA-256 of the record's envelope, its proof parsed from bytes
  (``MapProof.from_bytes``), and ``verify_map_proof`` against the root: what ``check
  --snapshot`` does per record besides reading the line;
* **absent**: the same for an id the map does not hold (no envelope to hash);
* for comparison, **signature**: ``verify_envelope`` of the same record (one Ed25519
  verification, with the envelope's JSON and base64);

each call cycling over the 1,400 demo ids; ``extra_info`` holds the proofs' mean size and
levels and the time the map took to build.

Why it matters: a record checked by its hash against the signed map, instead of its own
signature, is what lets a gate load a million records in seconds and a snapshot be checked
offline; the cost grows with log2 of the map (one SHA-256 per level).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle
from typing import Any

import pytest
from permitgate_client.formats import MapProof, verify_envelope, verify_map_proof

from benchmarks.micro.conftest import Demo
from registry.statusmap import StatusMap
from registry.trust import STATUS_PAYLOAD_TYPE

pytestmark = pytest.mark.benchmark(max_time=0.3)

SIZES = (10_000, 1_000_000)


@dataclass
class Built:
    size: int
    root: bytes
    present: list[tuple[str, bytes, bytes]]  # (id, envelope, proof bytes)
    absent: list[tuple[str, bytes]]  # (id, proof bytes)
    build_seconds: float


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n}")
def built(request: pytest.FixtureRequest, demo: Demo) -> Built:
    size: int = request.param
    records = list(demo.envelopes.items())
    fillers = size - len(records)
    started = time.perf_counter()
    status_map = StatusMap(
        [
            *((sid, hashlib.sha256(envelope).digest()) for sid, envelope in records),
            *((f"F-{i}", hashlib.sha256(b"%d" % i).digest()) for i in range(fillers)),
        ]
    )
    build_seconds = time.perf_counter() - started
    present = [(sid, env, status_map.prove(sid).to_bytes()) for sid, env in records]
    absent = [(f"{sid}-absent", status_map.prove(f"{sid}-absent").to_bytes()) for sid, _ in records]
    return Built(size, status_map.root(), present, absent, build_seconds)


def _describe(benchmark: Any, built: Built) -> None:
    benchmark.extra_info.update(
        {
            "entries": built.size,
            "map_build_seconds": round(built.build_seconds, 2),
            "proof_bytes_mean": {
                "present": round(statistics.mean(len(p) for _, _, p in built.present), 1),
                "absent": round(statistics.mean(len(p) for _, p in built.absent), 1),
            },
            "proof_levels_mean": {
                "present": round(
                    statistics.mean(int.from_bytes(p[:2], "big") for _, _, p in built.present), 1
                ),
                "absent": round(
                    statistics.mean(int.from_bytes(p[:2], "big") for _, p in built.absent), 1
                ),
            },
        }
    )


def _each(items: list[Any], check: Callable[..., Any]) -> Callable[[], int]:
    """One verification per call, cycling over ``items``; returns how many calls verified."""
    upcoming = cycle(items)
    done = [0]

    def one() -> int:
        check(*next(upcoming))
        done[0] += 1
        return done[0]

    return one


def test_present(benchmark: Any, built: Built) -> None:
    root = built.root

    def present(sid: str, envelope: bytes, proof: bytes) -> None:
        value = hashlib.sha256(envelope).digest()
        verify_map_proof(root, sid, value, MapProof.from_bytes(proof))  # raises if it fails

    _describe(benchmark, built)
    assert benchmark(_each(built.present, present)) > 0


def test_absent(benchmark: Any, built: Built) -> None:
    root = built.root

    def absent(sid: str, proof: bytes) -> None:
        verify_map_proof(root, sid, None, MapProof.from_bytes(proof))  # raises if it fails

    _describe(benchmark, built)
    assert benchmark(_each(built.absent, absent)) > 0


def test_signature(benchmark: Any, demo: Demo) -> None:
    """For comparison: the same records checked by their own signatures."""
    keys = [demo.registry.verifier]

    def signature(sid: str, envelope: bytes) -> None:
        verify_envelope(envelope, keys, STATUS_PAYLOAD_TYPE)  # raises if it fails

    assert benchmark(_each(list(demo.envelopes.items()), signature)) > 0
