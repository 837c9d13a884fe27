"""What it costs to verify one status record by its map proof, and one absence, offline.

A gate verifies records by hash against the head's status map, and ``check --snapshot``
verifies one record (or one absence) by its proof. Measured here, in-process, on maps of
10,000 and 1,000,000 entries (``StatusMap``, the registry's own):

* **present**: SHA-256 of a real signed status record envelope (about 1 KiB), the proof parsed
  from its bytes (``MapProof.from_bytes``), and ``verify_map_proof`` against the root;
* **absent**: the same for an id the map does not hold (no envelope to hash);
* for comparison, one Ed25519 verification of the same envelope's signature (``verify_envelope``)
  and the proof's size in bytes.

Each figure is the best of ``ROUNDS`` rounds of ``CALLS`` verifications cycling over 1,000
different ids, in µs per verification. Run: ``pytest benchmarks -k map_proofs --benchmark-enable
-s``.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client.formats import MapProof, verify_envelope, verify_map_proof

from benchmarks.proctree import machine_busy_seconds
from registry.canonical import canonical_json
from registry.demo import demo_lines, structure_id
from registry.records import Case, Permit, StatusRecord, Structure, parse_record
from registry.signing import Signer
from registry.statusmap import StatusMap
from registry.trust import STATUS_PAYLOAD_TYPE

SAMPLES = 1_000
CALLS = 20_000
ROUNDS = 5
SIZES = (10_000, 1_000_000)


@dataclass
class Built:
    size: int
    root: bytes
    present: list[tuple[str, bytes, bytes]]  # (id, envelope, proof bytes)
    absent: list[tuple[str, bytes]]  # (id, proof bytes)
    signer: Signer
    build_seconds: float


def _envelopes(signer: Signer) -> list[tuple[str, bytes]]:
    """``SAMPLES`` real signed status records of demo structures."""
    now = datetime.now(UTC)
    structures: dict[str, Structure] = {}
    permits: dict[str, list[Permit]] = {}
    cases: dict[str, list[Case]] = {}
    for line in demo_lines(SAMPLES, now=now):
        record = parse_record(line)
        if isinstance(record, Structure):
            structures[record.id] = record
        elif isinstance(record, Permit):
            permits.setdefault(record.structure, []).append(record)
        else:
            cases.setdefault(record.structure, []).append(record)
    out = []
    for sid, structure in structures.items():
        status = StatusRecord(
            structure,
            tuple(permits.get(sid, ())),
            tuple(cases.get(sid, ())),
            1000,
            now,
            now + timedelta(days=7),
        )
        payload = canonical_json(status.to_json())
        out.append((sid, signer.sign_envelope(payload, STATUS_PAYLOAD_TYPE)))
    return out


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n}")
def built(request: pytest.FixtureRequest) -> Built:
    size: int = request.param
    signer = Signer("bench.example/registry", Ed25519PrivateKey.generate())
    records = _envelopes(signer)
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
    absent_ids = [f"{structure_id(SAMPLES + i)}-absent" for i in range(SAMPLES)]
    absent = [(sid, status_map.prove(sid).to_bytes()) for sid in absent_ids]
    return Built(size, status_map.root(), present, absent, signer, build_seconds)


@dataclass
class Rounds:
    """µs per call in each round, and the cores other processes used meanwhile."""

    us: list[float]
    others: list[float]


def _per_call(job: Callable[[int], None]) -> Rounds:
    out = Rounds([], [])
    for _ in range(ROUNDS):
        busy, cpu, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
        for i in range(CALLS):
            job(i % SAMPLES)
        wall = time.perf_counter() - started
        mine = time.process_time() - cpu
        out.us.append(wall / CALLS * 1e6)
        out.others.append(max(0.0, machine_busy_seconds() - busy - mine) / wall)
    return out


def test_map_proofs(benchmark: Any, built: Built) -> None:
    root = built.root

    def present(i: int) -> None:
        sid, envelope, proof = built.present[i]
        value = hashlib.sha256(envelope).digest()
        verify_map_proof(root, sid, value, MapProof.from_bytes(proof))

    def absent(i: int) -> None:
        sid, proof = built.absent[i]
        verify_map_proof(root, sid, None, MapProof.from_bytes(proof))

    keys = [built.signer.verifier]

    def signature(i: int) -> None:
        verify_envelope(built.present[i][1], keys, STATUS_PAYLOAD_TYPE)

    def run() -> dict[str, Rounds]:
        return {"present": _per_call(present), "absent": _per_call(absent),
                "signature": _per_call(signature)}  # fmt: skip

    rounds: dict[str, Rounds] = benchmark.pedantic(run, rounds=1, iterations=1)
    info: dict[str, Any] = {
        "entries": built.size,
        "map_build_seconds": round(built.build_seconds, 2),
        "us_per_verification_best": {k: round(min(v.us), 2) for k, v in rounds.items()},
        "us_per_verification_rounds": {k: [round(x, 2) for x in v.us] for k, v in rounds.items()},
        "others_cores": {k: [round(x, 2) for x in v.others] for k, v in rounds.items()},
        "load_average": os.getloadavg(),
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
        "envelope_bytes_mean": round(statistics.mean(len(e) for _, e, _ in built.present), 1),
    }
    benchmark.extra_info.update(info)
    print(f"\nstatus map of {built.size:,} entries (built in {built.build_seconds:.1f} s):")
    for name, measured in rounds.items():
        best = min(range(ROUNDS), key=lambda i: measured.us[i])
        print(
            f"  {name:9s} {measured.us[best]:7.2f} µs per verification (others "
            f"{measured.others[best]:.2f} cores; rounds "
            f"{', '.join(f'{x:.1f}' for x in measured.us)})"
        )
    print(f"  proofs: {info['proof_bytes_mean']} bytes, {info['proof_levels_mean']} levels")
    # A benchmark fails only when the work fails: every proof verified, every round ran.
    assert all(len(v.us) == ROUNDS for v in rounds.values())
