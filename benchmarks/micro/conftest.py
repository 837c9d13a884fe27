"""Realistic data for the micro-benchmarks, built once per session from the demo registry.

``registry.demo`` gives one structure per scenario (every rule of DOMAIN.md fires somewhere);
here its first ``STRUCTURES`` structures become status records as the registry signs them
(``StatusSigner``), held in a real ``RegistryCache`` under a real signed head, and a real
``Gate`` answers from it. The named cases the benchmarks decide on are picked from that data:
an ALLOW, a DENY with one reason, a DENY with three (a structure of the demo data with its land
certificate removed and a stop order filed against it), and the ALLOW again on stale data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client._proofs import verify_registry_head
from permitgate_client.formats import Receipt

from registry.decisions import SqlDecisionStore
from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.heads import sign_head
from registry.merkle import CompactTree, leaf_hash
from registry.notifications import SqlNotificationStore
from registry.records import Case, Permit, StatusRecord, Structure, parse_record
from registry.signing import Signer
from registry.status import StatusSigner
from registry.statusmap import StatusMap
from registry.storage import Database
from registry.vocabulary import ConnectionKind, PermitKind, Utility
from server.cache import CachedStatus, RegistryCache
from server.checks import ConnectionRequest
from server.decision_log import DecisionLog
from server.gate import Gate
from server.receipts import ReceiptSigner
from server.rules import decide_connection

STRUCTURES = 1_400
"""Demo structures held: each of the 14 scenarios 100 times."""

TREE_SIZE = 5_000  # the log size of the head held; every record's tree size is below it


@dataclass(frozen=True)
class Demo:
    now: datetime
    registry: Signer
    gate_signer: Signer
    records: dict[str, StatusRecord]  # structure id to its status record
    envelopes: dict[str, bytes]  # structure id to that record, signed as the registry does
    cases: dict[str, str]  # case name to structure id: allow, deny_one, deny_three
    cache: RegistryCache  # every record held, verified, unparsed until first asked for
    gate: Gate  # answering from ``cache``


def _records(now: datetime) -> dict[str, StatusRecord]:
    structures: dict[str, Structure] = {}
    permits: dict[str, list[Permit]] = {}
    cases: dict[str, list[Case]] = {}
    for line in demo_lines(STRUCTURES, now=now):
        record = parse_record(line)
        if isinstance(record, Structure):
            structures[record.id] = record
        elif isinstance(record, Permit):
            permits.setdefault(record.structure, []).append(record)
        else:
            cases.setdefault(record.structure, []).append(record)
    return {
        sid: StatusRecord(
            structure,
            tuple(permits.get(sid, ())),
            tuple(cases.get(sid, ())),
            1 + i,
            now,
            now + timedelta(days=7),
        )
        for i, (sid, structure) in enumerate(structures.items())
    }


def _three_reasons(records: dict[str, StatusRecord]) -> StatusRecord:
    """Scenario 1 (construction planning permit revoked) without its land certificate, and
    with scenario 7's stop order filed against it: three reasons to deny a connection."""
    revoked = records[structure_id(1)]
    stop_order = records[structure_id(7)].cases[0]
    return dataclasses.replace(
        revoked,
        permits=tuple(p for p in revoked.permits if p.kind is not PermitKind.LAND_CERTIFICATE),
        cases=(dataclasses.replace(stop_order, structure=revoked.structure.id),),
    )


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    assert len(SCENARIOS) == 14 and STRUCTURES % len(SCENARIOS) == 0
    now = datetime.now(UTC).replace(microsecond=0)
    registry = Signer("bench.example/registry", Ed25519PrivateKey.generate())
    gate_signer = Signer("bench.example/gate", Ed25519PrivateKey.generate())
    records = _records(now)
    three = _three_reasons(records)
    records[three.structure.id] = three
    status_signer = StatusSigner(registry, now=now)
    envelopes = {sid: status_signer.envelope(record) for sid, record in records.items()}
    held = {
        sid: CachedStatus(envelope, hashlib.sha256(envelope).digest())
        for sid, envelope in envelopes.items()
    }
    tree = CompactTree()
    for index in range(TREE_SIZE):
        tree.append(leaf_hash(b"event %d" % index))
    row = sign_head(
        registry,
        origin=registry.name,
        tree=tree,
        status_map=StatusMap((sid, s.digest) for sid, s in held.items()),
        serial=1,
        now=now,
    )
    head = verify_registry_head(row.cosigned_note(), registry.verifier)
    cache = RegistryCache(max_staleness=3600)
    cache.install(head, held, replace=True, doubtful=frozenset(), superseded=None, now=now)
    scratch: Path = tmp_path_factory.mktemp("micro")
    db = Database(f"sqlite:///{scratch / 'unused.db'}")  # decide() never touches it
    gate = Gate(
        notifications=SqlNotificationStore(db),
        cache=cache,
        receipts=ReceiptSigner(gate_signer),
        decision_log=DecisionLog(SqlDecisionStore(db), state_dir=scratch / "state"),
        clock=lambda: now,
    )
    yield Demo(
        now=now,
        registry=registry,
        gate_signer=gate_signer,
        records=records,
        envelopes=envelopes,
        cases={
            "allow": structure_id(0),
            "deny_one": structure_id(2),
            "deny_three": three.structure.id,
        },
        cache=cache,
        gate=gate,
    )
    db.dispose()


def connection_request(structure: str, *, receipt: bool = False) -> ConnectionRequest:
    """A permanent water connection of ``structure``, as the gate reads it off the wire."""
    return ConnectionRequest(
        structure, Utility.WATER, ConnectionKind.PERMANENT, None, "APP-2026-000417", receipt
    )


def receipt_of(demo: Demo, structure: str) -> Receipt:
    """The receipt the gate signs for a permanent water connection of ``structure``."""
    request = connection_request(structure, receipt=True)
    decision = decide_connection(
        demo.records[structure], utility=request.utility, kind=request.kind, now=demo.now
    )
    status = demo.cache.get(structure)
    assert status is not None and status.record is not None
    return Receipt(
        decision_id="D-5f0c2a9e41b7-1048576",
        decided_at=demo.now,
        check=request.to_json(),
        verdict=decision.verdict.name,
        reasons=tuple(
            {
                "code": r.code.value,
                "article": r.article,
                "permit_kind": None if r.permit_kind is None else r.permit_kind.value,
                "case_id": r.case_id,
                "message": r.message,
            }
            for r in decision.reasons
        ),
        valid_until=decision.valid_until,
        notification_id=None,
        checkpoint_note=demo.cache.checkpoint_note,
        status_record_sha256=status.digest.hex(),
        status_record_tree_size=status.record.tree_size,
    )
