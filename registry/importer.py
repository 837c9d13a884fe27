"""JSON Lines import: all or nothing, streaming, every error reported with its line and field.

The whole import is one write of the registry (``registry.writer``): one transaction holding its
write locks. Lines are read in chunks; each chunk is parsed and checked in order against each
structure's current state, which is its previous *signed* record (read back and checked against
the digest the registry keeps, or held in memory while this import's own new record of it is
still being signed), so a line may refer to a structure created a few lines up, and nothing
written to the ``structure``/``permit``/``violation_case`` tables behind the registry's back is
believed. Those tables serve only as an index from a permit or case id to the structure that
holds it, and what they say is confirmed against that structure's signed record. Valid changes
are written as they go; any error anywhere rolls the whole transaction back at the end, after
every line has been checked. Memory holds one chunk, plus the states still being signed.

A successful import appends one event per change to the log, signs the status record of every
structure it touched (chunk by chunk, overlapping with the reading; see ``registry.status``) from
that state, and signs a head for the new log size and status map.

The input is UTF-8 (a byte-order mark at the start, as spreadsheet programs write, is skipped). An
id may appear once per record type in one file: a second line with it is an error naming the
first. Ids are remembered as fingerprints, not strings (10 bytes a record, plus a 4 MiB bitmap;
see ``_SeenIds``), and duplicates reported once every line has been read.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import orjson
from permitgate_client.formats import Checkpoint
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from registry.admin import REPAIR_ADVICE, NotInitialised, RegistryDamaged, WrongKey
from registry.canonical import canonical_json
from registry.log import event_bytes
from registry.merkle import leaf_hash
from registry.records import (
    Case,
    InvalidRecord,
    Permit,
    Record,
    StatusRecord,
    Structure,
    format_time,
    parse_record,
)
from registry.signing import Signer
from registry.status import (
    DEFAULT_WORKERS,
    SigningPipeline,
    StateParts,
    StatusRowValues,
    StatusSigner,
)
from registry.storage import (
    Base,
    CaseRow,
    Database,
    EventRow,
    PermitRow,
    StructureRow,
    bulk_insert,
    id_in,
    table_of,
    values_of,
)
from registry.vocabulary import STAGE_MOVES, may_move
from registry.writer import Writer, open_writer

__all__ = [
    "MAX_REPORTED_ERRORS",
    "ImportReport",
    "LineError",
    "NotInitialised",
    "WrongKey",
    "import_lines",
]

MAX_REPORTED_ERRORS = 100
_CHUNK = 5000
_SIGNING_WORKERS = DEFAULT_WORKERS
_ROW: dict[type, type[Base]] = {Structure: StructureRow, Permit: PermitRow, Case: CaseRow}
_WRITE_ORDER = (Structure, Permit, Case)  # parents before children
_INDEX: dict[type, type[PermitRow] | type[CaseRow]] = {Permit: PermitRow, Case: CaseRow}


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    field: str
    why: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.why}"


@dataclass
class ImportReport:
    """What an import did, or why it did nothing."""

    lines: int = 0
    changes: int = 0
    unchanged: int = 0
    error_count: int = 0
    errors: list[LineError] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS
    signed: int = 0  # structures whose status record was (re-)signed
    checkpoint: Checkpoint | None = None
    _pending: list[LineError] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def error(self, line: int, field_name: str, why: str) -> None:
        self.error_count += 1
        self._pending.append(LineError(line, field_name, why))

    def end_chunk(self) -> None:
        """Keep the chunk's errors in line order (they are found in two passes)."""
        room = MAX_REPORTED_ERRORS - len(self.errors)
        self.errors.extend(sorted(self._pending, key=lambda e: e.line)[: max(room, 0)])
        self._pending.clear()

    def end_file(self) -> None:
        """Merge errors found once the whole file was read (duplicates) in line order."""
        merged = sorted([*self.errors, *self._pending], key=lambda e: e.line)
        self.errors = merged[:MAX_REPORTED_ERRORS]
        self._pending.clear()


class _Rollback(Exception):
    pass


def import_lines(
    db: Database,
    lines: Iterable[bytes],
    signer: Signer,
    *,
    state_dir: Path,
    now: datetime | None = None,
    on_chunk: Callable[[int], object] | None = None,
) -> ImportReport:
    """Import JSON Lines (raw bytes per line); nothing is written unless every line is valid.

    ``state_dir`` holds the registry's own state (``registry.writer``). ``on_chunk`` is called
    with the number of bytes consumed after each chunk (for progress).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report = ImportReport()
    try:
        with open_writer(db, signer, state_dir) as writer:
            applier = _Applier(writer, format_time(now), report)
            with SigningPipeline(
                writer.session,
                StatusSigner(signer, now=now),
                written=applier.written,
                workers=_SIGNING_WORKERS,
            ) as pipeline:
                numbered = enumerate(_utf8_lines(lines, report), start=1)
                while chunk := list(islice(numbered, _CHUNK)):
                    applier.apply(chunk, pipeline)
                    if on_chunk is not None:
                        on_chunk(sum(len(raw) for _, raw in chunk))
                applier.ids.report_duplicates(report)
                if not report.ok:
                    raise _Rollback
                pipeline.finish()
            if report.changes:
                report.signed = writer.signed_records
                row = writer.sign_head(now)
                report.checkpoint = Checkpoint.from_body(row.note[: row.note.index(b"\n\n") + 1])
    except _Rollback:
        pass
    return report


_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _utf8_lines(lines: Iterable[bytes], report: ImportReport) -> Iterator[bytes]:
    """The lines, without a UTF-8 byte-order mark at the start; nothing after a UTF-16 one."""
    it = iter(lines)
    first = next(it, None)
    if first is None:
        return
    if first.startswith(_UTF16_BOMS):  # every line would be garbage: say it once
        report.lines += 1
        report.error(1, "(file)", "UTF-16 text, not UTF-8: save the file as UTF-8")
        report.end_chunk()
        return
    yield first.removeprefix(_UTF8_BOM)
    yield from it


def _json_error(raw: bytes) -> str:
    """Why a line is not JSON: not UTF-8 (where), or orjson's message for the line."""
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode()) + 1
        return (
            f"not UTF-8 text: byte 0x{raw[exc.start]:02X} at column {column} "
            "(save the file as UTF-8)"
        )
    try:  # without its newline, else orjson points past the line
        orjson.loads(raw.rstrip(b"\r\n"))
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    return "not valid JSON"


class _SeenIds:
    """Every (record type, id) of the file and where it was, for finding duplicates at the end.

    Memory must stay small for a million lines, so no id is kept as a string: each is kept as an
    80-bit fingerprint (Python's keyed 64-bit string hash of the id, and 16 bits of the hash of
    the id with a suffix, each mixed with the record type), 10 bytes a record in two arrays; its
    line follows from its position (``_skips`` records where lines without a record were). A
    4 MiB bitmap of the first hash picks out, as the file is read, the few records whose hash
    was seen before; only those are compared at the end. Two different ids share a fingerprint
    with a chance of about 2**-80 per pair (for a million ids, about 4e-13 in all).
    """

    _BITS = 1 << 25

    def __init__(self) -> None:
        self._first = array("q")
        self._second = array("H")
        self._skips: list[tuple[int, int]] = [(0, 0)]  # (from record n, lines before it - n)
        self._bitmap = bytearray(self._BITS >> 3)
        self._again: set[int] = set()  # first hashes seen more than once

    def add(self, line: int, record: Record) -> None:
        n = len(self._first)
        if line - 1 - n != self._skips[-1][1]:
            self._skips.append((n, line - 1 - n))
        salt = _KIND_SALT[type(record)]
        first = hash(record.id) ^ salt
        self._first.append(first)
        self._second.append((hash(record.id + "\x00") ^ salt) & 0xFFFF)
        bit = first & (self._BITS - 1)
        byte, mask = bit >> 3, 1 << (bit & 7)
        if self._bitmap[byte] & mask:
            self._again.add(first)
        else:
            self._bitmap[byte] |= mask

    def _line(self, n: int) -> int:
        return n + 1 + self._skips[bisect_right(self._skips, (n, sys.maxsize)) - 1][1]

    def report_duplicates(self, report: ImportReport) -> None:
        again = self._again
        if again:
            earliest: dict[tuple[int, int], int] = {}
            for n, (first, second) in enumerate(zip(self._first, self._second, strict=True)):
                if first in again:
                    seen = earliest.setdefault((first, second), n)
                    if seen != n:
                        report.error(self._line(n), "id", f"duplicate of line {self._line(seen)}")
        report.end_file()


_KIND_SALT = {Structure: 0, Permit: 0x5DEECE66D, Case: 0x27BB2EE687B0B0FD}


Key = tuple[type, str]  # (record type, id)


class _Holding:
    """One structure's records as this import sees them: its signed state, plus the changes
    made so far, each record with its canonical JSON (what the event and the signature use)."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: dict[Key, tuple[Record, bytes]] = {}

    @classmethod
    def of(cls, record: StatusRecord) -> _Holding:
        holding = cls()
        records: list[Record] = [record.structure, *record.permits, *record.cases]
        for r in records:
            holding.records[(type(r), r.id)] = (r, canonical_json(r.to_json()))
        return holding

    def get(self, key: Key) -> Record | None:
        found = self.records.get(key)
        return None if found is None else found[0]

    def parts(self) -> StateParts:
        structure = b""
        permits: list[tuple[str, bytes]] = []
        cases: list[tuple[str, bytes]] = []
        for (kind, rid), (_, raw) in self.records.items():
            if kind is Structure:
                structure = raw
            elif kind is Permit:
                permits.append((rid, raw))
            else:
                cases.append((rid, raw))
        permits.sort()
        cases.sort()
        return structure, tuple(raw for _, raw in permits), tuple(raw for _, raw in cases)


class _Applier:
    """Checks and applies chunks of lines inside the import's write."""

    def __init__(self, writer: Writer, at: str, report: ImportReport) -> None:
        self.writer = writer
        self.session: Session = writer.session
        self.connection = self.session.connection()
        self.dialect = self.connection.dialect.name
        self.tree = writer.tree
        self.at_json = orjson.dumps(at)
        self.report = report
        self.ids = _SeenIds()
        self.chunks = 0
        # States handed to the signing pipeline whose records are not written yet, with the
        # chunk that last changed them: a later chunk takes them from here.
        self.pending: dict[str, tuple[_Holding, int]] = {}

    def written(self, rows: list[StatusRowValues], tag: object) -> None:
        """The pipeline wrote these records: the writer learns their digests, and the states
        of the latest chunk to change them are read back from now on."""
        self.writer.signed(rows)
        for row in rows:
            held = self.pending.get(row[0])
            if held is not None and held[1] == tag:
                del self.pending[row[0]]

    def apply(self, chunk: list[tuple[int, bytes]], pipeline: SigningPipeline) -> None:
        report = self.report
        self.chunks += 1
        parsed = list(self._parse(chunk))
        owners, in_tables = self._index(parsed)
        holdings = self._holdings({r.structure_id for _, r in parsed} | set(owners.values()))
        changed: dict[Key, Record] = {}
        touched: dict[str, _Holding] = {}
        events: list[tuple[int, str, bytes]] = []
        for line, record in parsed:
            key = (type(record), record.id)
            sid = record.structure_id
            holding = holdings.get(sid)
            ok, old = self._check(line, record, key, holding, owners, holdings)
            if not ok:
                continue
            if old == record:
                report.unchanged += 1
                continue
            if holding is None:  # a new structure
                holding = holdings[sid] = _Holding()
            raw = canonical_json(record.to_json())
            holding.records[key] = (record, raw)
            touched[sid] = holding
            changed[key] = record
            body = event_bytes(self.tree.size, self.at_json, raw)
            events.append((self.tree.size, sid, body))
            self.tree.append(leaf_hash(body))
            report.changes += 1
        self._write(changed, in_tables, events)
        report.end_chunk()
        if touched:
            # Signed even once an error is found (nothing will be kept): the states must
            # leave memory through the pipeline for memory to stay bounded.
            for sid, holding in touched.items():
                self.pending[sid] = (holding, self.chunks)
            states = [(sid, holding.parts()) for sid, holding in touched.items()]
            pipeline.submit(states, self.tree.size, self.chunks)

    def _parse(self, chunk: list[tuple[int, bytes]]) -> Iterator[tuple[int, Record]]:
        report = self.report
        for line, raw in chunk:
            report.lines += 1
            if not raw.strip():
                report.lines -= 1
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                report.error(line, "(line)", _json_error(raw))
                continue
            try:
                record = parse_record(obj)
            except InvalidRecord as exc:
                for err in exc.errors:
                    report.error(line, err.field, err.why)
                continue
            self.ids.add(line, record)
            yield line, record

    def _index(self, parsed: list[tuple[int, Record]]) -> tuple[dict[Key, str], set[Key]]:
        """What the tables say of the chunk's records: the structure each permit and case id
        is filed under (an index only, to be confirmed), and which rows exist (to insert or
        update them)."""
        owners: dict[Key, str] = {}
        in_tables: set[Key] = set()
        structure_ids = {r.id for _, r in parsed if isinstance(r, Structure)}
        if structure_ids:
            where = id_in(StructureRow.id, structure_ids, self.dialect)
            for sid in self.session.scalars(select(StructureRow.id).where(where)):
                in_tables.add((Structure, sid))
        for kind, row in _INDEX.items():
            ids = {r.id for _, r in parsed if isinstance(r, kind)}
            if ids:
                query = select(row.id, row.structure_id).where(id_in(row.id, ids, self.dialect))
                for rid, sid in self.session.execute(query):
                    owners[(kind, rid)] = sid
                    in_tables.add((kind, rid))
        return owners, in_tables

    def _holdings(self, structure_ids: set[str]) -> dict[str, _Holding]:
        """The current state of each structure the registry knows: the pending one, else its
        signed record read back and verified."""
        holdings: dict[str, _Holding] = {}
        wanted = []
        for sid in structure_ids:
            held = self.pending.get(sid)
            if held is not None:
                holdings[sid] = held[0]
            elif self.writer.knows(sid):
                wanted.append(sid)
        for sid, record in self.writer.verified_records(wanted).items():
            holdings[sid] = _Holding.of(record)
        return holdings

    def _check(
        self,
        line: int,
        record: Record,
        key: Key,
        holding: _Holding | None,
        owners: dict[Key, str],
        holdings: dict[str, _Holding],
    ) -> tuple[bool, Record | None]:
        """Whether the line may be applied, and the record it replaces (None: a new one)."""
        report = self.report
        if isinstance(record, Structure):
            return True, None if holding is None else holding.get(key)
        what = "permit" if isinstance(record, Permit) else "case"
        if holding is None:
            report.error(line, "structure", f"unknown structure {record.structure!r}")
            return False, None
        old = holding.get(key)
        filed = owners.get(key)
        if old is None and filed is not None:  # the tables file it: confirm where
            elsewhere = holdings.get(filed)
            if elsewhere is None or elsewhere.get(key) is None:
                raise RegistryDamaged(
                    f"{what} row of {record.id}: names structure {filed!r}, whose signed record "
                    f"does not hold it: {REPAIR_ADVICE}"
                )
            report.error(
                line,
                "structure",
                f"{what} {record.id} belongs to {filed!r}; it cannot move to {record.structure!r}",
            )
            return False, None
        if (
            isinstance(record, Case)
            and isinstance(old, Case)
            and not may_move(old.stage, record.stage)
        ):
            stage, new = old.stage.value, record.stage.value
            allowed = ", ".join(sorted(s.value for s in STAGE_MOVES[old.stage])) or "none"
            report.error(
                line,
                "stage",
                f"case {record.id} cannot move from {stage} to {new} "
                f"(allowed from {stage}: {allowed})",
            )
            return False, None
        return True, old

    def _write(
        self,
        changed: dict[Key, Record],
        in_tables: set[Key],
        events: list[tuple[int, str, bytes]],
    ) -> None:
        for kind in _WRITE_ORDER:
            new = [values_of(r) for k, r in changed.items() if k[0] is kind and k not in in_tables]
            old = [values_of(r) for k, r in changed.items() if k[0] is kind and k in in_tables]
            table = table_of(_ROW[kind])
            bulk_insert(self.session, table, [tuple(values.values()) for values in new])
            if old:
                self.connection.execute(
                    table.update().where(table.c.id == bindparam("old_id")),
                    [{**values, "old_id": values["id"]} for values in old],
                )
        bulk_insert(self.session, table_of(EventRow), events)
