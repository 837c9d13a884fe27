"""``permitgate registry verify``: prove the database says what the registry signed.

Trust starts from the registry's public key on disk, never from the database. The audit:

1. verifies every stored head (its note and its cosignature) with that key, that its columns
   say what its note says, and that the serials run 1, 2, ... over logs that never shrink;
2. streams the events in log order, checks they are numbered 0..n-1, rebuilds the Merkle tree
   from them and compares its root at each head's size with the head (so each head's log is
   consistent with the one before: both are prefixes of the same events), and each head's
   ``tree_state`` column with the tree's frontier there;
3. reads every status record: its signature, that it describes the structure it is filed
   under, its ``digest``, ``tree_size`` and ``next_update`` columns; rebuilds the status map
   from the records (SHA-256 of each envelope) and compares its root with the newest head's;
4. replays the events of each structure and compares the result with its signed record and
   (``tables``) with the ``structure``/``permit``/``violation_case`` rows, naming the event
   each record comes from;
5. with the registry's state directory (``compare_with_state``): a database older than the
   state is named as rolled back; the head the state holds must be stored as signed; and, when
   it is the newest, every record's digest must be the one the state holds, and every
   department the one its log enrolled;
6. folds the department events in log order (which key each department had at each index) and
   checks every statement a department wrote: its signature verifies with the key the
   department held at that index (not rotated out, not revoked), the key names the department
   the statement claims, its action produced that event's record (never an id its structure
   already holds opened or issued again), and each ``department_write`` row points at an event
   carrying its statement; with the tables, the ``referral`` rows and notices'
   acknowledgements are rebuilt from the statements and compared, the dues recomputed with the
   registry's working-day calendar (a due an earlier calendar gives is named with it).

Every difference is reported, naming the row and the field; memory holds one structure at a time
besides the map (about 200 bytes a structure). A writer that finds its state empty runs steps
1-4 (``audit_session`` without the tables) and adopts the database only when they pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson
from permitgate_client import VerificationError, VerifierKey
from permitgate_client._errors import MalformedError
from permitgate_client._proofs import RegistryHead, verify_registry_head
from permitgate_client._statements import (
    WriteStatement,
    statement_department,
    verify_statement,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.admin import STATE_NAME
from registry.departments import DECISION_STAGES, REFERRAL_DAYS, Role, in_remit
from registry.log import (
    DepartmentEntry,
    Event,
    State,
    decode_event,
    fold,
    fold_department,
    statement_write,
    write_digest,
)
from registry.merkle import CompactTree, leaf_hash
from registry.records import Case, Permit, Record, format_time, parse_record
from registry.statusmap import StatusMap
from registry.storage import (
    CASE_COLUMNS,
    PERMIT_COLUMNS,
    STRUCTURE_COLUMNS,
    CaseRow,
    Database,
    EventRow,
    HeadRow,
    MetaRow,
    NotificationRow,
    PermitRow,
    ReferralRow,
    StatusRow,
    StructureRow,
    WriteRow,
    case_of,
    permit_of,
    structure_of,
)
from registry.trust import verify_status_record
from registry.trusted_state import Entry, TrustedState, WrittenRow
from registry.vocabulary import CaseStage
from registry.workdays import CITY_TZ, WorkCalendar, superseded_years

__all__ = ["AuditReport", "audit_registry", "audit_session", "compare_with_state"]

_OPTS = {"yield_per": 5000}
RawState = tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]
Sources = dict[tuple[type, str], int]  # (record type, id) -> the event that last set it


@dataclass
class AuditReport:
    tree_size: int = 0
    structures: int = 0
    problems: list[str] = field(default_factory=list)
    newest: HeadRow | None = None
    """The newest head row, when it verifies."""
    frontier: CompactTree | None = None
    """The log's frontier at the newest head, from the events (when they reach it)."""
    entries: list[Entry] = field(default_factory=list)
    """Every record that verifies: (structure id, SHA-256 of its envelope, its next_update)."""
    digests: dict[str, bytes] = field(default_factory=dict, repr=False)
    """Every stored record's SHA-256, by structure id."""
    departments: dict[str, DepartmentEntry] = field(default_factory=dict)
    """The departments as the log's department events leave them, by id."""
    statements: int = 0
    """How many department statements in the log were checked."""
    written: dict[tuple[str, str], WrittenRow] = field(default_factory=dict)
    """The departments' writes as the verified statements say, by (department, request id):
    the idempotency index a rebuilt state starts from (first event; no result digest)."""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Head:
    row: HeadRow
    head: RegistryHead


def audit_registry(
    db: Database,
    key: VerifierKey,
    *,
    state_dir: Path | None = None,
    calendar: WorkCalendar | None = None,
) -> AuditReport:
    """The full audit; with ``state_dir`` (the registry's state) also compared with it. The
    referral dues are recomputed with ``calendar`` (default: the shipped one the registry
    service uses)."""
    report = AuditReport()
    if not db.is_initialised():
        report.problems.append("registry: not initialised")
        return report
    with db.snapshot() as session:
        origin = session.scalar(select(MetaRow.value).where(MetaRow.key == "origin"))
        if origin is None:
            report.problems.append("registry: not initialised")
            return report
        audit_session(session, key, origin, tables=True, report=report, calendar=calendar)
        if state_dir is not None:
            compare_with_state(session, key, state_dir, report)
    return report


def audit_session(
    session: Session,
    key: VerifierKey,
    origin: str,
    *,
    tables: bool,
    report: AuditReport | None = None,
    calendar: WorkCalendar | None = None,
) -> AuditReport:
    """Steps 1-4 and 6 in ``session`` (the tables only with ``tables``)."""
    report = AuditReport() if report is None else report
    if origin != key.name:
        report.problems.append(
            f"registry_meta row origin: {origin!r}, but the key is named {key.name!r}"
        )
    heads = _check_heads(session, key, report)
    if not heads:
        return report
    report.frontier = _check_log(session, heads, report)
    _check_states(session, key, heads[-1], report, tables=tables)
    _check_statements(session, report, tables=tables, calendar=calendar)
    return report


def _check_heads(session: Session, key: VerifierKey, report: AuditReport) -> list[_Head]:
    """Step 1: each head's signatures and columns; returns the heads that verify, by serial."""
    heads: list[_Head] = []
    expected = 1
    for row in session.scalars(select(HeadRow).order_by(HeadRow.serial)):
        where = f"head serial {row.serial}"
        if row.serial > expected:
            gap = f"{expected}" if row.serial == expected + 1 else f"{expected} to {row.serial - 1}"
            report.problems.append(f"head serial {gap}: missing (serials run 1, 2, ...)")
        expected = row.serial + 1
        try:
            head = verify_registry_head(row.cosigned_note(), key)
        except VerificationError as exc:
            report.problems.append(f"{where}: {exc}")
            continue
        columns = {
            "serial": (row.serial, head.map.serial),
            "size": (row.size, head.size),
            "root_hash": (bytes(row.root_hash), head.checkpoint.root_hash),
            "map_root": (bytes(row.map_root), head.map.root),
        }
        differ = [name for name, (stored, signed) in columns.items() if stored != signed]
        if differ:
            report.problems.append(f"{where}: {', '.join(differ)} column differs from its note")
            continue
        if heads and head.size < heads[-1].head.size:
            report.problems.append(
                f"{where}: its log (size {head.size}) is shorter than that of head serial "
                f"{heads[-1].row.serial} (size {heads[-1].head.size})"
            )
            continue
        heads.append(_Head(row, head))
    if not heads:
        report.problems.append("head: none with a valid signature")
    else:
        report.newest = heads[-1].row
    return heads


def _check_log(session: Session, heads: list[_Head], report: AuditReport) -> CompactTree | None:
    """Step 2: the log's numbering and Merkle roots against every head; returns the frontier at
    the newest head when the events reach it."""
    at_size: dict[int, list[_Head]] = {}
    for h in heads:
        at_size.setdefault(h.head.size, []).append(h)
    newest = heads[-1].head.size
    tree = CompactTree()
    frontier: CompactTree | None = None
    good = 0  # the largest size whose heads all match the events
    matching = True

    def compare() -> None:
        nonlocal good, matching, frontier
        for h in at_size.get(tree.size, ()):
            where = f"head serial {h.row.serial} (log size {tree.size})"
            if matching and tree.root() != h.head.checkpoint.root_hash:
                matching = False
                changed = f"event {good}" if tree.size - good == 1 else f"events {good} to "
                changed += "" if tree.size - good == 1 else f"{tree.size - 1}"
                report.problems.append(
                    f"{where}: the events do not hash to its signed root: one of {changed} "
                    "was changed"
                )
            elif matching and bytes(h.row.tree_state) != tree.state:
                report.problems.append(f"{where}: its tree_state column is not the events'")
        if matching and tree.size in at_size:
            good = tree.size
        if tree.size == newest:
            frontier = CompactTree.from_state(tree.size, tree.state)

    compare()
    query = select(EventRow.seq, EventRow.body).order_by(EventRow.seq)
    for seq, body in session.execute(query, execution_options=_OPTS):
        if seq != tree.size:
            what = f"the next is event {seq}" if seq > tree.size else f"then comes event {seq}"
            report.problems.append(f"event {tree.size}: missing ({what})")
            report.tree_size = tree.size
            return None
        tree.append(leaf_hash(bytes(body)))
        compare()
    report.tree_size = tree.size
    if tree.size < newest:
        report.problems.append(
            f"event log: {tree.size} events, but head serial {heads[-1].row.serial} signs "
            f"{newest}: event {tree.size} on missing"
        )
        return None
    if tree.size > newest:
        report.problems.append(
            f"event log: {tree.size} events, but head serial {heads[-1].row.serial} signs "
            f"{newest}: event {newest} on added"
        )
        return None
    return frontier if matching else None


def _replayed(session: Session, report: AuditReport) -> Iterator[tuple[str, State, int, Sources]]:
    """Each structure's state as its events say, the index of its last event, and the event
    each of its records comes from."""
    query = select(EventRow.structure_id, EventRow.seq, EventRow.body).order_by(
        EventRow.structure_id, EventRow.seq
    )
    rows = session.execute(query, execution_options=_OPTS)
    for sid, group in groupby(rows, key=lambda r: r[0]):
        records: dict[tuple[type, str], Record] = {}
        sources: Sources = {}
        last = -1
        for _, seq, body in group:
            try:
                event = decode_event(bytes(body))
            except ValueError as exc:
                report.problems.append(f"event {seq}: {exc}")
                continue
            if event.seq != seq or _filed_under(event) not in (None, sid):
                report.problems.append(f"event {seq}: its columns differ from its signed bytes")
                continue
            if event.record is None:  # a statement or department event: no record to fold
                continue
            key = (type(event.record), event.record.id)
            if key in records and _creates(event):
                report.problems.append(
                    f"event {seq}: {type(event.record).__name__.lower()} {event.record.id} is "
                    f"opened or issued again on {sid}, whose state holds it since event "
                    f"{sources[key]}"
                )
            records[key] = event.record
            sources[key] = seq
            last = seq
        if not records:
            continue  # statement or department events only (their checks are step 6)
        try:
            state = fold(sid, records.values())
        except ValueError as exc:
            report.problems.append(str(exc))
            continue
        yield sid, state, last, sources


def _creates(event: Event) -> bool:
    """Whether a department wrote the event's record as a new permit or case."""
    said = None if event.statement is None else statement_write(event.statement)
    return said is not None and said.action in ("open_case", "issue_permit")


def _filed_under(event: Event) -> str | None:
    """The structure an event's row must name: its record's; "" for a department event; None
    (not known from the bytes alone) for a statement event."""
    if event.record is not None:
        return event.record.structure_id
    if event.department is not None:
        return ""
    return None


def _table_rows(session: Session) -> Iterator[RawState]:
    """Each structure's rows (structure, permits, cases), in structure id order, streamed.

    Three ordered queries are merged, so memory holds one structure (and one fetch batch).
    """
    structures = select(*STRUCTURE_COLUMNS).order_by(StructureRow.id)
    permits = select(*PERMIT_COLUMNS).order_by(PermitRow.structure_id, PermitRow.id)
    cases = select(*CASE_COLUMNS).order_by(CaseRow.structure_id, CaseRow.id)
    permit_groups = _grouped(session.execute(permits, execution_options=_OPTS))
    case_groups = _grouped(session.execute(cases, execution_options=_OPTS))
    next_permits = next(permit_groups, None)
    next_cases = next(case_groups, None)
    for row in session.execute(structures, execution_options=_OPTS):
        sid = row[0]
        own_permits: list[tuple[Any, ...]] = []
        own_cases: list[tuple[Any, ...]] = []
        while next_permits is not None and next_permits[0] < sid:  # rows of no structure
            next_permits = next(permit_groups, None)
        while next_cases is not None and next_cases[0] < sid:
            next_cases = next(case_groups, None)
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
            report.problems.append(f"structure row {raw[0][0]}: malformed: {exc}")


def _check_states(
    session: Session, key: VerifierKey, newest: _Head, report: AuditReport, *, tables: bool
) -> None:
    """Steps 3 and 4: the signed records against the newest head's map and the replayed log,
    and (``tables``) the tables against the log, structure by structure."""
    table_states: Iterator[tuple[str, Any]] = iter(())
    if tables:
        table_states = _keyed(_table_states(session, report), lambda s: s[0].id)
    statuses = _keyed(
        session.execute(
            select(
                StatusRow.structure_id,
                StatusRow.tree_size,
                StatusRow.next_update,
                StatusRow.digest,
                StatusRow.envelope,
            ).order_by(StatusRow.structure_id),
            execution_options=_OPTS,
        ),
        lambda r: r[0],
    )
    replayed = _keyed(_replayed(session, report), lambda r: r[0])
    for sid, (from_log, from_tables, status) in _merge(replayed, table_states, statuses):
        report.structures += 1
        signed = None if status is None else _check_record(sid, status, key, report)
        if from_log is None:
            if from_tables is not None:
                report.problems.append(f"structure {sid}: in the tables but not in the event log")
            if status is not None:
                report.problems.append(
                    f"status_record row of {sid}: a record of a structure the event log lacks"
                )
            continue
        _, state, last, sources = from_log
        if tables:
            if from_tables is None:
                report.problems.append(f"structure {sid}: in the event log but not in the tables")
            else:
                report.problems.extend(_diff_state(state, sources, from_tables, "the tables"))
        if status is None:
            report.problems.append(f"structure {sid}: no signed status record")
            continue
        if signed is None:
            continue
        if not last < signed.tree_size <= report.tree_size:
            report.problems.append(
                f"status_record row of {sid}: shows tree size {signed.tree_size}, but the "
                f"structure last changed at event {last} of {report.tree_size}"
            )
        content = (signed.structure, signed.permits, signed.cases)
        report.problems.extend(_diff_state(state, sources, content, "the signed status record"))
    _check_map(newest, report)


def _check_record(sid: str, status: tuple[Any, ...], key: VerifierKey, report: AuditReport) -> Any:
    """One stored record: its signature and its columns; the record, when it verifies."""
    _, tree_size, next_update, digest, stored = status
    envelope = stored.encode() if isinstance(stored, str) else bytes(stored)
    sha = hashlib.sha256(envelope).digest()
    report.digests[sid] = sha
    where = f"status_record row of {sid}"
    if sha != bytes(digest):
        report.problems.append(f"{where}: digest column does not match")
    try:
        record = verify_status_record(envelope, key, structure_id=sid)
    except VerificationError as exc:
        report.problems.append(f"{where}: {exc}")
        return None
    if record.tree_size != tree_size:
        report.problems.append(f"{where}: tree_size column does not match")
    if record.next_update != next_update:
        report.problems.append(
            f"{where}: next_update column says {format_time(next_update)}, the signed record "
            f"{format_time(record.next_update)}"
        )
    report.entries.append((sid, sha, record.next_update))
    return record


def _check_map(newest: _Head, report: AuditReport) -> None:
    """The status map of the stored records against the newest head's map root."""
    status_map = StatusMap(report.digests.items())
    signed = newest.head.map
    if (status_map.root(), len(status_map)) != (signed.root, signed.count):
        report.problems.append(
            f"status map: the {len(status_map)} stored status records do not give the map root "
            f"of head serial {newest.row.serial} ({signed.count} records): a status_record row "
            "was changed, added or removed"
        )


def _by_key(state: State) -> dict[tuple[type, str], Record]:
    records: list[Record] = [state[0], *state[1], *state[2]]
    return {(type(r), r.id): r for r in records}


def _diff_state(log: State, sources: Sources, other: State, where: str) -> list[str]:
    """Name every record and field where ``other`` differs from the replayed log, with the
    event the log's version comes from."""
    problems: list[str] = []
    mine, theirs = _by_key(log), _by_key(other)
    for key in sorted(mine.keys() | theirs.keys(), key=lambda k: (k[0].__name__, k[1])):
        label = f"{key[0].__name__.lower()} {key[1]}"
        a, b = mine.get(key), theirs.get(key)
        event = f" (event {sources[key]})" if key in sources else ""
        if a is None:
            problems.append(f"{label}: in {where} but not in the event log")
        elif b is None:
            problems.append(f"{label}: in the event log{event} but not in {where}")
        elif a != b:
            ja, jb = a.to_json(), b.to_json()
            for name in sorted(ja.keys() | jb.keys()):
                if ja.get(name) != jb.get(name):
                    problems.append(
                        f"{label}: {name}: {where} {'say' if where.endswith('s') else 'says'} "
                        f"{jb.get(name)!r}, the event log says {ja.get(name)!r}{event}"
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


def compare_with_state(
    session: Session, key: VerifierKey, state_dir: Path, report: AuditReport
) -> None:
    """Step 5: the database against the registry's own state in ``state_dir`` (when there)."""
    if not (state_dir / f"{STATE_NAME}.sqlite").exists():
        return
    state = TrustedState(state_dir, STATE_NAME)
    try:
        note = state.head()
        if note is None:
            return
        try:
            trusted = verify_registry_head(note, key)
        except VerificationError as exc:
            report.problems.append(f"state {state.path}: its head does not verify ({exc})")
            return
        serial, size = trusted.map.serial, trusted.size
        cosigned = (
            "" if trusted.cosigned_at is None else f", cosigned {format_time(trusted.cosigned_at)}"
        )
        ours = f"head serial {serial} (log size {size}){cosigned}, which the registry signed"
        newest = session.scalars(select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).first()
        if newest is None or newest.serial < serial:
            theirs = (
                "holds no head"
                if newest is None
                else f"newest head is serial {newest.serial} (log size {newest.size})"
            )
            report.problems.append(
                f"rolled back: the database's {theirs}, but its state {state.path} holds {ours}"
            )
            return
        row = session.get(HeadRow, serial)
        if row is None:
            report.problems.append(f"head serial {serial}: missing, but its state holds {ours}")
            return
        if not note.startswith(bytes(row.note)):
            report.problems.append(
                f"head serial {serial}: not the head the registry signed (its state {state.path} "
                "holds another)"
            )
            return
        if newest.serial != serial:
            return  # the database is ahead of this state: another writer signed since
        if bytes(row.tree_state) != (state.frontier() or b""):
            report.problems.append(
                f"head serial {serial}: its tree_state column is not the frontier the registry "
                "signed"
            )
        trusted_entries = {sid: digest for sid, digest, _ in state.entries()}
        for sid in sorted(trusted_entries.keys() | report.digests.keys()):
            signed, stored = trusted_entries.get(sid), report.digests.get(sid)
            if signed == stored:
                continue
            where = f"status_record row of {sid}"
            if stored is None:
                report.problems.append(f"{where}: missing (the registry signed a record of it)")
            elif signed is None:
                report.problems.append(f"{where}: the registry signed no record of it")
            else:
                report.problems.append(f"{where}: not the record the registry signed")
        held = {row[0]: DepartmentEntry(*row) for row in state.departments()}
        for department_id in sorted(held.keys() | report.departments.keys()):
            mine, logged = held.get(department_id), report.departments.get(department_id)
            if mine is None or logged is None or mine[:5] != logged[:5]:
                report.problems.append(
                    f"department {department_id}: the registry's state holds "
                    f"{_described(mine)}, the log's department events {_described(logged)}"
                )
    finally:
        state.close()


def _described(entry: DepartmentEntry | None) -> str:
    if entry is None:
        return "no such department"
    return f"{entry.state} key {entry.verifier().keyid_text} (event {entry.seq})"


# --- Step 6: who wrote what -------------------------------------------------------------------


@dataclass
class _Referral:
    """An Art. 19 referral as the log's statements make it (the row's fields, but the dues)."""

    structure_id: str
    case_kind: str
    found_by: str
    found_at: datetime
    referred_to: str | None = None
    referred_at: datetime | None = None
    decided_at: datetime | None = None
    decision: str | None = None
    answered_at: datetime | None = None
    answer: str | None = None


_REFERRAL_FIELDS = tuple(f for f in _Referral.__dataclass_fields__)


@dataclass
class _Followed:
    """What the statements say of the referral and notice rows, folded in log order."""

    stages: dict[str, CaseStage] = field(default_factory=dict)  # each case's stage so far
    referrals: dict[str, _Referral] = field(default_factory=dict)
    acknowledged: dict[str, tuple[str, datetime]] = field(default_factory=dict)


def _check_statements(
    session: Session,
    report: AuditReport,
    *,
    tables: bool = True,
    calendar: WorkCalendar | None = None,
) -> None:
    """Fold the department events and check every statement against the key its department
    held at that index; then every ``department_write`` row against the event it names; with
    ``tables``, the referral and notice rows against what the statements make of them."""
    departments: dict[str, DepartmentEntry] = {}
    written: dict[int, tuple[str, str, bytes]] = {}  # seq -> (department, request id, digest)
    followed = _Followed()
    query = select(EventRow.seq, EventRow.body).order_by(EventRow.seq)
    for seq, body in session.execute(query, execution_options=_OPTS):
        try:
            event = decode_event(bytes(body))
        except ValueError:
            continue  # named in step 4
        if event.department is not None:
            change = event.department
            try:
                departments[change.id] = fold_department(departments.get(change.id), change, seq)
            except ValueError as exc:
                report.problems.append(f"event {seq}: {exc}")
            continue
        if event.statement is not None:
            report.statements += 1
            statement = _check_statement(seq, event, departments, report)
            if statement is not None:
                digest = write_digest(statement.action, statement.write)
                key = (statement.department, statement.request_id)
                written[seq] = (*key, digest)
                if key not in report.written:
                    report.written[key] = (*key, digest, seq, None)
                    _follow(statement, event, departments, followed)
        if isinstance(event.record, Case):
            followed.stages[event.record.id] = event.record.stage
    report.departments = departments
    for row in session.scalars(select(WriteRow).order_by(WriteRow.seq)):
        where = f"department_write row {row.department}/{row.request_id}"
        found = written.get(row.seq)
        if found is None:
            report.problems.append(
                f"{where}: event {row.seq} carries no verified statement of that write"
            )
        elif found != (row.department, row.request_id, bytes(row.digest)):
            report.problems.append(f"{where}: event {row.seq} carries another statement")
    if tables:
        _check_referrals(session, followed, report, calendar or WorkCalendar.default())
        _check_acknowledged(session, followed, report)


def _follow(
    statement: WriteStatement,
    event: Event,
    departments: dict[str, DepartmentEntry],
    followed: _Followed,
) -> None:
    """What a verified statement (its first event) does to the referral and notice rows, as
    ``registry.department_writes`` does it."""
    write, at, by = statement.write, event.at, departments[statement.department]
    try:
        if statement.action == "open_case":
            case = parse_record({"type": "case", **write["case"]})
            assert isinstance(case, Case)
            if not in_remit(Role(by.role), case.kind):
                followed.referrals[case.id] = _Referral(
                    case.structure, case.kind.value, by.id, case.opened
                )
            return
        if statement.action == "acknowledge_notice":
            followed.acknowledged[str(write["notice"])] = (by.id, at)
            return
        referral = followed.referrals.get(str(write.get("case")))
        if referral is None:
            return
        if statement.action == "refer_case":
            referral.referred_to, referral.referred_at = str(write["to"]), at
            stage = followed.stages.get(str(write["case"]))
            if stage in DECISION_STAGES:
                referral.decided_at, referral.decision = at, stage.value
        elif statement.action == "move_case":
            stage = CaseStage(write["stage"])
            to = None if referral.referred_to is None else departments.get(referral.referred_to)
            if (
                to is not None
                and referral.decided_at is None
                and stage in DECISION_STAGES
                and (to.id == by.id or to.role == by.role)
            ):
                referral.decided_at, referral.decision = at, stage.value
        elif statement.action == "answer_referral":
            referral.answered_at, referral.answer = at, str(write["answer"])
    except (KeyError, TypeError, ValueError):
        return  # a malformed write made nothing (its event is named in _check_statement)


def _second(value: datetime | None) -> datetime | None:
    """A row's time to the second, in UTC (events are dated to the second)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _check_referrals(
    session: Session, followed: _Followed, report: AuditReport, calendar: WorkCalendar
) -> None:
    """Every referral row is what the statements make it, its dues what ``calendar`` gives
    for its times (Art. 19: REFERRAL_DAYS working days from the find, and from the decision)."""
    rows = {row.case_id: row for row in session.scalars(select(ReferralRow))}
    expected = followed.referrals
    for case_id in sorted(rows.keys() | expected.keys()):
        where = f"referral row of {case_id}"
        row, made = rows.get(case_id), expected.get(case_id)
        if row is None:
            report.problems.append(f"{where}: missing (the log's statements open it)")
            continue
        if made is None:
            report.problems.append(f"{where}: the log's statements make no such referral")
            continue
        for name in _REFERRAL_FIELDS:
            want, have = getattr(made, name), getattr(row, name)
            if isinstance(want, datetime) or isinstance(have, datetime):
                want, have = _second(want), _second(have)
            if want != have:
                report.problems.append(
                    f"{where}: {name} is {_shown(have)}, the log's statements say {_shown(want)}"
                )
        for name, since in (("referral_due", made.found_at), ("answer_due", made.decided_at)):
            have = _second(getattr(row, name))
            want = None if since is None else _second(calendar.due(since, REFERRAL_DAYS))
            if have != want:
                report.problems.append(
                    f"{where}: {name} is {_shown(have)}, the working-day calendar gives "
                    f"{_shown(want)}"
                    + ("" if since is None else _earlier_calendar(calendar, since, have, name))
                )


def _earlier_calendar(
    calendar: WorkCalendar, since: datetime, have: datetime | None, name: str
) -> str:
    """The reason a due differs, when an earlier state of the calendar gives it: a year's file
    not yet shipped (weekends only), or replaced since (``registry/calendars/superseded/``).
    Still a difference: nothing records which calendar the registry counted by then, and
    taking every earlier one would let a database writer move a due by a holiday's length."""
    start = "found_at" if name == "referral_due" else "decided_at"
    what = f" ({REFERRAL_DAYS} working days from {start})"
    due = calendar.due(since, REFERRAL_DAYS)
    years = {since.astimezone(CITY_TZ).year, due.astimezone(CITY_TZ).year}
    superseded = superseded_years()
    for year in sorted(years):
        for was in [None, *(y for y in superseded if y.year == year)]:
            if _second(calendar.replaced(year, was).due(since, REFERRAL_DAYS)) == have:
                file = "no file" if was is None else f"the file {was.source!r}"
                return (
                    f"{what}; the calendar with {file} for {year} gives the row's due: if the "
                    "registry counted by that calendar then, re-date the row by it"
                )
    return what


def _check_acknowledged(session: Session, followed: _Followed, report: AuditReport) -> None:
    """Every acknowledged notice row was acknowledged by a statement, by its department then."""
    query = select(NotificationRow).where(NotificationRow.acknowledged_at.is_not(None))
    seen: set[str] = set()
    for row in session.scalars(query, execution_options=_OPTS):
        seen.add(row.id)
        made = followed.acknowledged.get(row.id)
        have = (row.acknowledged_by, _second(row.acknowledged_at))
        want = (None, None) if made is None else (made[0], _second(made[1]))
        if have != want:
            report.problems.append(
                f"notice row {row.id}: acknowledged by {_shown(have[0])} at {_shown(have[1])}, "
                f"the log's statements say {_shown(want[0])} at {_shown(want[1])}"
            )
    for notice_id in sorted(followed.acknowledged.keys() - seen):
        by, at = followed.acknowledged[notice_id]
        report.problems.append(
            f"notice row {notice_id}: not acknowledged (or missing), the log's statements say "
            f"acknowledged by {by!r} at {format_time(at)}"
        )


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return format_time(value)
    return repr(value)


def _check_statement(
    seq: int, event: Event, departments: dict[str, DepartmentEntry], report: AuditReport
) -> WriteStatement | None:
    """One statement: signed by its department's key of the time, and the cause of the event's
    record. Returns the statement when it verifies."""
    assert event.statement is not None
    where = f"event {seq}: statement"
    envelope = orjson.dumps(event.statement, option=orjson.OPT_SORT_KEYS)
    try:
        claimed = statement_department(envelope)
    except MalformedError as exc:
        report.problems.append(f"{where}: {exc}")
        return None
    held = departments.get(claimed)
    if held is None:
        report.problems.append(f"{where}: department {claimed!r} was not enrolled at that index")
        return None
    if not held.active:
        report.problems.append(
            f"{where}: department {claimed!r}'s key was revoked at event {held.seq}, before it"
        )
        return None
    try:
        statement = verify_statement(envelope, [held.verifier()])
    except (VerificationError, MalformedError) as exc:
        report.problems.append(
            f"{where}: does not verify with {claimed}'s key of that index "
            f"({held.verifier().keyid_text}): {exc}"
        )
        return None
    why = _effect_mismatch(statement.action, statement.write, event.record)
    if why is not None:
        report.problems.append(f"{where}: {statement.action} by {claimed} did not {why}")
        return None
    return statement


def _effect_mismatch(action: str, write: dict[str, Any], record: Record | None) -> str | None:
    """Why ``record`` (None: a statement event) is not what ``action`` with ``write`` makes;
    None when it is."""
    try:
        if action in ("refer_case", "answer_referral", "acknowledge_notice"):
            return None if record is None else "change a record"
        if action == "issue_permit":
            wanted = parse_record({"type": "permit", **write["permit"]})
            return None if record == wanted else "issue this permit"
        if action == "change_permit_status":
            ok = (
                isinstance(record, Permit)
                and record.id == write["permit"]
                and record.status.value == write["status"]
            )
            return None if ok else "give this permit this status"
        if action == "open_case":
            made = [parse_record({"type": "case", **write["case"]})]
            if "structure" in write:
                made.append(parse_record({"type": "structure", **write["structure"]}))
            return None if record in made else "open this case or structure"
        if action == "move_case":
            ok = (
                isinstance(record, Case)
                and record.id == write["case"]
                and record.stage.value == write["stage"]
            )
            return None if ok else "move this case to this stage"
        if action == "suspend_party":
            ok = (
                isinstance(record, Case)
                and record.id == write["case"]
                and record.party_suspended is write["suspended"]
            )
            return None if ok else "set this case's party suspension"
    except (KeyError, TypeError, ValueError):
        return "make this record (its write is malformed)"
    return f"make this record (unknown action {action!r})"
