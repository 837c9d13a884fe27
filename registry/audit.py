"""``permitgate registry verify``: prove the database says what the signed log says.

Trust starts from the registry's public key on disk, never from the database. The audit:

1. verifies every stored checkpoint note with that key, and that its columns match the note;
2. streams the events in log order, checks they are numbered 0..n-1 and well formed, rebuilds
   the Merkle tree from them, and compares its root at each checkpoint size with the checkpoint;
3. streams the events again grouped by structure, replays them into each structure's current
   state, and compares that with the ``structure``/``permit``/``violation_case`` rows and with
   the structure's signed status record (signature, digest, content, and the log size it shows).

Every difference is reported, naming the row and the field; memory holds one structure at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from permitgate_client import VerificationError, VerifierKey
from permitgate_client.formats import verify_checkpoint
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.log import State, decode_event, fold
from registry.merkle import CompactTree, leaf_hash
from registry.records import Record
from registry.storage import (
    CASE_COLUMNS,
    PERMIT_COLUMNS,
    STRUCTURE_COLUMNS,
    CaseRow,
    Database,
    EventRow,
    HeadRow,
    MetaRow,
    PermitRow,
    StatusRow,
    StructureRow,
    case_of,
    permit_of,
    structure_of,
)
from registry.trust import verify_status_record

__all__ = ["AuditReport", "audit_registry"]

_OPTS = {"yield_per": 5000}
RawState = tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]


@dataclass
class AuditReport:
    tree_size: int = 0
    structures: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_registry(db: Database, key: VerifierKey) -> AuditReport:
    report = AuditReport()
    if not db.is_initialised():
        report.problems.append("registry: not initialised")
        return report
    with db.session() as session:
        origin = session.scalar(select(MetaRow.value).where(MetaRow.key == "origin"))
        if origin is None:
            report.problems.append("registry: not initialised")
            return report
        roots = _check_checkpoints(session, key, origin, report)
        if not roots:
            return report
        _check_log(session, roots, report)
        _check_states(session, key, report)
    return report


def _check_checkpoints(
    session: Session, key: VerifierKey, origin: str, report: AuditReport
) -> dict[int, bytes]:
    """Step 1: each checkpoint's signature; returns the signed root hash by tree size."""
    roots: dict[int, bytes] = {}
    for row in session.scalars(select(HeadRow).order_by(HeadRow.serial)):
        try:
            checkpoint = verify_checkpoint(row.note, key, origin=origin)
        except VerificationError as exc:
            report.problems.append(f"checkpoint {row.size}: {exc}")
            continue
        if checkpoint.size != row.size or checkpoint.root_hash != row.root_hash:
            report.problems.append(f"checkpoint {row.size}: columns differ from the signed note")
        roots[checkpoint.size] = checkpoint.root_hash
    if not roots:
        report.problems.append("checkpoint: none with a valid signature")
    return roots


def _check_log(session: Session, roots: dict[int, bytes], report: AuditReport) -> None:
    """Step 2: the log's numbering and Merkle roots against the signed checkpoints."""
    tree = CompactTree()
    query = select(EventRow.seq, EventRow.body).order_by(EventRow.seq)
    for seq, body in session.execute(query, execution_options=_OPTS):
        if seq != tree.size:
            report.problems.append(f"event log: event {tree.size} is missing (next is {seq})")
            return
        tree.append(leaf_hash(body))
        root = roots.get(tree.size)
        if root is not None and root != tree.root():
            report.problems.append(
                f"event log: the first {tree.size} events do not hash to checkpoint {tree.size}"
            )
            return
    report.tree_size = tree.size
    head = max(roots)
    if tree.size != head:
        report.problems.append(f"event log: {tree.size} events, but the checkpoint signs {head}")
    elif roots.get(0) is not None and tree.size == 0 and roots[0] != tree.root():
        report.problems.append("event log: empty, but checkpoint 0 has another root")


def _replayed(session: Session, report: AuditReport) -> Iterator[tuple[str, State, int]]:
    """Each structure's state as its events say, with the index of its last event."""
    query = select(EventRow.structure_id, EventRow.seq, EventRow.body).order_by(
        EventRow.structure_id, EventRow.seq
    )
    rows = session.execute(query, execution_options=_OPTS)
    for sid, group in groupby(rows, key=lambda r: r[0]):
        records: dict[tuple[type, str], Record] = {}
        last = -1
        for _, seq, body in group:
            try:
                event = decode_event(body)
            except ValueError as exc:
                report.problems.append(f"event {seq}: {exc}")
                continue
            if event.seq != seq or event.record.structure_id != sid:
                report.problems.append(f"event {seq}: its columns differ from its signed bytes")
                continue
            records[(type(event.record), event.record.id)] = event.record
            last = seq
        try:
            state = fold(sid, records.values())
        except ValueError as exc:
            report.problems.append(str(exc))
            continue
        yield sid, state, last


def _table_rows(session: Session) -> Iterator[RawState]:
    """Each structure's rows (structure, permits, cases), in structure id order, streamed.

    Three ordered queries are merged, so memory holds one structure (and one fetch batch).
    """
    structures = select(*STRUCTURE_COLUMNS).order_by(StructureRow.id)
    permits = select(*PERMIT_COLUMNS).order_by(PermitRow.structure_id, PermitRow.id)
    cases = select(*CASE_COLUMNS).order_by(CaseRow.structure_id, CaseRow.id)
    opts = {"yield_per": 5000}
    permit_groups = _grouped(session.execute(permits, execution_options=opts))
    case_groups = _grouped(session.execute(cases, execution_options=opts))
    next_permits = next(permit_groups, None)
    next_cases = next(case_groups, None)
    for row in session.execute(structures, execution_options=opts):
        sid = row[0]
        own_permits: list[tuple[Any, ...]] = []
        own_cases: list[tuple[Any, ...]] = []
        if next_permits is not None and next_permits[0] == sid:
            own_permits = next_permits[1]
            next_permits = next(permit_groups, None)
        if next_cases is not None and next_cases[0] == sid:
            own_cases = next_cases[1]
            next_cases = next(case_groups, None)
        yield tuple(row), own_permits, own_cases


def _grouped(rows: Iterable[Any]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    for sid, group in groupby(rows, key=lambda r: r[1]):
        yield sid, [tuple(r) for r in group]


def _state_of(raw: RawState) -> State:
    structure, permits, cases = raw
    return (
        structure_of(structure),
        tuple(permit_of(p) for p in permits),
        tuple(case_of(c) for c in cases),
    )


def _table_states(session: Session, report: AuditReport) -> Iterator[State]:
    """The tables' state per structure; a row that is not even well formed is a difference."""
    for raw in _table_rows(session):
        try:
            yield _state_of(raw)
        except (ValueError, TypeError) as exc:
            report.problems.append(f"structure {raw[0][0]}: a table row is malformed: {exc}")


def _check_states(session: Session, key: VerifierKey, report: AuditReport) -> None:
    """Step 3: tables and signed status records against the replayed log, structure by structure."""
    tables = _keyed(_table_states(session, report), lambda s: s[0].id)
    statuses = _keyed(
        session.execute(
            select(
                StatusRow.structure_id, StatusRow.tree_size, StatusRow.digest, StatusRow.envelope
            ).order_by(StatusRow.structure_id),
            execution_options=_OPTS,
        ),
        lambda r: r[0],
    )
    replayed = _keyed(_replayed(session, report), lambda r: r[0])
    for sid, (from_log, from_tables, status) in _merge(replayed, tables, statuses):
        report.structures += 1
        if from_log is None:
            report.problems.append(f"structure {sid}: in the tables but not in the event log")
            continue
        _, state, last = from_log
        if from_tables is None:
            report.problems.append(f"structure {sid}: in the event log but not in the tables")
        else:
            report.problems.extend(_diff_state(state, from_tables, "the tables"))
        if status is None:
            report.problems.append(f"structure {sid}: no signed status record")
            continue
        _, tree_size, digest, envelope = status
        envelope = envelope.encode() if isinstance(envelope, str) else bytes(envelope)
        if hashlib.sha256(envelope).digest() != digest:
            report.problems.append(f"status record {sid}: digest column does not match")
        try:
            record = verify_status_record(envelope, key)
        except VerificationError as exc:
            report.problems.append(f"status record {sid}: {exc}")
            continue
        if record.tree_size != tree_size:
            report.problems.append(f"status record {sid}: tree_size column does not match")
        if not last < record.tree_size <= report.tree_size:
            report.problems.append(
                f"status record {sid}: shows tree size {record.tree_size}, but the structure "
                f"last changed at event {last} of {report.tree_size}"
            )
        signed = (record.structure, record.permits, record.cases)
        report.problems.extend(_diff_state(state, signed, "the signed status record"))


def _by_key(state: State) -> dict[tuple[type, str], Record]:
    records: list[Record] = [state[0], *state[1], *state[2]]
    return {(type(r), r.id): r for r in records}


def _diff_state(log: State, other: State, where: str) -> list[str]:
    """Name every record and field where ``other`` differs from the replayed log."""
    problems: list[str] = []
    mine, theirs = _by_key(log), _by_key(other)
    for key in sorted(mine.keys() | theirs.keys(), key=lambda k: (k[0].__name__, k[1])):
        label = f"{key[0].__name__.lower()} {key[1]}"
        a, b = mine.get(key), theirs.get(key)
        if a is None:
            problems.append(f"{label}: in {where} but not in the event log")
        elif b is None:
            problems.append(f"{label}: in the event log but not in {where}")
        elif a != b:
            ja, jb = a.to_json(), b.to_json()
            for name in sorted(ja.keys() | jb.keys()):
                if ja.get(name) != jb.get(name):
                    problems.append(
                        f"{label}: {name}: {where} {'say' if where.endswith('s') else 'says'} "
                        f"{jb.get(name)!r}, "
                        f"the event log says {ja.get(name)!r}"
                    )
    return problems


def _keyed(items: Any, key: Any) -> Iterator[tuple[str, Any]]:
    for item in items:
        yield key(item), item


def _merge(*streams: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
    """Outer-join streams sorted by key: each key once, with each stream's item or None."""
    heads: list[tuple[str, Any] | None] = [next(s, None) for s in streams]
    while any(h is not None for h in heads):
        key = min(h[0] for h in heads if h is not None)
        out: list[Any] = []
        for i, h in enumerate(heads):
            if h is not None and h[0] == key:
                out.append(h[1])
                heads[i] = next(streams[i], None)
            else:
                out.append(None)
        yield key, out
