"""JSON Lines import: all or nothing, streaming, every error reported with its line and field.

The whole import is one write of the registry (``registry.writer``): one transaction holding its
write locks. Lines are read in chunks. Past the first, chunks are parsed and validated by the
worker processes that also sign (``parse_lines``), a few chunks ahead; this process checks each
chunk's lines in order against each structure's current state, which is its previous *signed*
record (read back and checked against the digest the registry keeps, or held in memory while
this import's own new record of it is still being signed), so a line may refer to a structure
created a few lines up, and nothing written to the ``structure``/``permit``/``violation_case``
tables behind the registry's back is believed. Those tables serve only as an index from a permit
or case id to the structure that holds it, and what they say is confirmed against that
structure's signed record. Valid changes are written as they go; any error anywhere rolls the
whole transaction back at the end, after every line has been checked. Memory holds a few chunks,
plus the states still being signed.

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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from permitgate_client.formats import Checkpoint
from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from registry.admin import NotInitialised, WrongKey
from registry.log import event_bytes
from registry.merkle import leaf_hash
from registry.record_checks import filed_elsewhere, stage_move_error, unknown_structure
from registry.records import (
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
    WorkerPool,
    insert_rows,
    sqlite_time,
)
from registry.storage import (
    Base,
    CaseRow,
    Database,
    EventRow,
    PermitRow,
    StructureRow,
    UTCDateTime,
    id_in,
    table_of,
    values_of,
)
from registry.vocabulary import CaseStage
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
_WORKERS = DEFAULT_WORKERS
_SQLITE_CACHE = -262_144  # KiB: an import's B-tree pages stay in memory (up to 256 MiB)


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
    status_signer = StatusSigner(signer, now=now)
    try:
        with (
            open_writer(db, signer, state_dir) as writer,
            WorkerPool(status_signer, _WORKERS) as pool,
            ExitStack() as stack,
        ):
            applier = _Applier(writer, format_time(now), report)
            stack.enter_context(_sqlite_cache(writer.session))
            with SigningPipeline(
                writer.session, status_signer, written=applier.written, pool=pool
            ) as pipeline:
                numbered = enumerate(_utf8_lines(lines, report), start=1)
                for chunk, parsed in _parsed_chunks(numbered, pool, writer.session):
                    applier.apply(chunk, parsed, pipeline)
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


@contextmanager
def _sqlite_cache(session: Session) -> Iterator[None]:
    """On SQLite, a page cache large enough for an import's B-trees, for its length only."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    driver = session.connection().connection.driver_connection
    assert driver is not None, "a live session has a driver connection"
    (before,) = driver.execute("PRAGMA cache_size").fetchone()
    driver.execute(f"PRAGMA cache_size = {_SQLITE_CACHE}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size = {int(before)}")


Chunk = list[tuple[int, bytes]]


def _parsed_chunks(
    numbered: Iterator[tuple[int, bytes]], pool: WorkerPool, session: Session
) -> Iterator[tuple[Chunk, Parsed]]:
    """The chunks of the input, in order, each with its lines parsed: the first here, the
    others (a large import) in the pool's workers, a few chunks ahead of the one applied."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    first = list(islice(numbered, _CHUNK))
    if not first:
        return
    if pool.workers <= 1:
        chunk = first
        while chunk:
            yield chunk, parse_lines(chunk, sqlite)
            chunk = list(islice(numbered, _CHUNK))
        return
    ahead: deque[tuple[Chunk, Future[Parsed]]] = deque()

    def read_ahead() -> None:
        while len(ahead) < pool.workers and (chunk := list(islice(numbered, _CHUNK))):
            ahead.append((chunk, pool.submit(parse_lines, chunk, sqlite)))

    read_ahead()  # the workers start (and parse the next chunks) while the first is applied
    yield first, parse_lines(first, sqlite)
    while ahead:
        done, future = ahead.popleft()
        read_ahead()
        yield done, future.result()


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


STRUCTURE, PERMIT, CASE = 0, 1, 2
"""Record kinds, as parsed lines carry them."""
_KIND_NAME = ("structure", "permit", "case")

Line = tuple[int, int, str, str, str | None, bytes, tuple[Any, ...]]
"""A valid line: its number, kind, id, structure id, case stage (None for the others), the
record's canonical JSON, and its table row (times as the database takes them)."""
Rejected = tuple[int, list[tuple[str, str]]]
"""An invalid line: its number and (field, why) for each error."""
Parsed = tuple[list[Line], list[Rejected], int]
"""A chunk's valid lines, invalid lines, and how many were blank."""


def parse_lines(chunk: Chunk, sqlite: bool) -> Parsed:
    """Parse and validate a chunk of lines (in a worker process for a large import): each
    becomes a ``Line``, or the errors ``parse_record`` found. Nothing here needs the database.

    The canonical JSON is orjson's sorted output, which is RFC 8785 for a record's JSON (only
    strings, ASCII keys: see ``registry.canonical``); times are SQLite's text when ``sqlite``.
    """
    valid: list[Line] = []
    rejected: list[Rejected] = []
    blank = 0
    for line, raw in chunk:
        if not raw.strip():
            blank += 1
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            rejected.append((line, [("(line)", _json_error(raw))]))
            continue
        try:
            record = parse_record(obj)
        except InvalidRecord as exc:
            rejected.append((line, [(e.field, e.why) for e in exc.errors]))
            continue
        canonical = orjson.dumps(record.to_json(), option=orjson.OPT_SORT_KEYS)
        row = tuple(values_of(record).values())
        if isinstance(record, Structure):
            valid.append((line, STRUCTURE, record.id, record.id, None, canonical, row))
            continue
        if sqlite:
            row = tuple(sqlite_time(v) if isinstance(v, datetime) else v for v in row)
        if isinstance(record, Permit):
            valid.append((line, PERMIT, record.id, record.structure, None, canonical, row))
        else:
            stage = record.stage.value
            valid.append((line, CASE, record.id, record.structure, stage, canonical, row))
    return valid, rejected, blank


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

    def add(self, line: int, kind: int, rid: str) -> bool:
        """Remember the id; True when its first hash was seen before (it may be a repeat)."""
        n = len(self._first)
        if line - 1 - n != self._skips[-1][1]:
            self._skips.append((n, line - 1 - n))
        salt = _KIND_SALT[kind]
        first = hash(rid) ^ salt
        self._first.append(first)
        self._second.append((hash(rid + "\x00") ^ salt) & 0xFFFF)
        bit = first & (self._BITS - 1)
        byte, mask = bit >> 3, 1 << (bit & 7)
        if self._bitmap[byte] & mask:
            self._again.add(first)
            return True
        self._bitmap[byte] |= mask
        return False

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


_KIND_SALT = (0, 0x5DEECE66D, 0x27BB2EE687B0B0FD)  # by kind


Key = tuple[int, str]  # (kind, id)


class _Holding:
    """One structure's records as this import sees them: its signed state, plus the changes
    made so far. Each record is kept as its canonical JSON (what events and signatures are made
    of, and what tells a change from a repeat) with its stage when it is a case."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: dict[Key, tuple[bytes, str | None]] = {}

    @classmethod
    def of(cls, record: StatusRecord) -> _Holding:
        holding = cls()
        records = holding.records
        records[(STRUCTURE, record.structure.id)] = (_canonical(record.structure), None)
        for p in record.permits:
            records[(PERMIT, p.id)] = (_canonical(p), None)
        for c in record.cases:
            records[(CASE, c.id)] = (_canonical(c), c.stage.value)
        return holding

    def parts(self) -> StateParts:
        structure = b""
        permits: list[tuple[str, bytes]] = []
        cases: list[tuple[str, bytes]] = []
        for (kind, rid), (raw, _) in self.records.items():
            if kind == STRUCTURE:
                structure = raw
            elif kind == PERMIT:
                permits.append((rid, raw))
            else:
                cases.append((rid, raw))
        permits.sort()
        cases.sort()
        return structure, tuple(raw for _, raw in permits), tuple(raw for _, raw in cases)


def _canonical(record: Record) -> bytes:
    return orjson.dumps(record.to_json(), option=orjson.OPT_SORT_KEYS)


class _Applier:
    """Checks and applies chunks of parsed lines inside the import's write."""

    def __init__(self, writer: Writer, at: str, report: ImportReport) -> None:
        self.writer = writer
        self.session: Session = writer.session
        self.connection = self.session.connection()
        self.dialect = self.connection.dialect.name
        self.tree = writer.tree
        self.at_json = orjson.dumps(at)
        self.report = report
        self.ids = _SeenIds()
        self.empty_at_start = writer.head.map.count == 0 and _tables_empty(self.session)
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

    def apply(self, chunk: Chunk, parsed: Parsed, pipeline: SigningPipeline) -> None:
        report = self.report
        self.chunks += 1
        valid, rejected, blank = parsed
        report.lines += len(chunk) - blank
        for line, errors in rejected:
            for field_name, why in errors:
                report.error(line, field_name, why)
        add = self.ids.add
        again = [(kind, rid) for line, kind, rid, *_ in valid if add(line, kind, rid)]
        owners, in_tables = self._index(valid, again)
        holdings = self._holdings({sid for _, _, _, sid, *_ in valid} | set(owners.values()))
        changed: dict[Key, tuple[Any, ...]] = {}
        touched: dict[str, _Holding] = {}
        events: list[tuple[int, str, bytes]] = []
        tree, at_json, held, filed_under = self.tree, self.at_json, holdings.get, owners.get
        append_leaf, add_event, start = tree.append, events.append, tree.size
        for line, kind, rid, sid, stage, raw, row in valid:
            key = (kind, rid)
            holding = held(sid)
            old = None if holding is None else holding.records.get(key)
            filed = filed_under(key)
            if (
                kind != STRUCTURE
                and (holding is None or filed is not None or (old is not None and old[1] != stage))
                and not self._may_apply(line, key, sid, stage, holding, old, filed, holdings)
            ):
                continue  # (the common lines, new or unchanged, need no closer look)
            if old is not None and old[0] == raw:
                report.unchanged += 1
                continue
            if holding is None:  # a new structure
                holding = holdings[sid] = _Holding()
            holding.records[key] = (raw, stage)
            touched[sid] = holding
            changed[key] = row
            seq = start + len(events)
            body = event_bytes(seq, at_json, raw)
            add_event((seq, sid, body))
            append_leaf(leaf_hash(body))
        report.changes += len(events)
        self._write(changed, in_tables, events)
        report.end_chunk()
        if touched:
            # Signed even once an error is found (nothing will be kept): the states must
            # leave memory through the pipeline for memory to stay bounded.
            for sid, holding in touched.items():
                self.pending[sid] = (holding, self.chunks)
            states = [(sid, holding.parts()) for sid, holding in touched.items()]
            pipeline.submit(states, tree.size, self.chunks)

    def _index(self, valid: list[Line], again: list[Key]) -> tuple[dict[Key, str], set[Key]]:
        """What the tables say of the chunk's records: the structure each permit and case id
        is filed under (an index only, to be confirmed), and which rows exist (to insert or
        update them). Into an empty registry only ids this import may have written already
        (``again``) can be there."""
        owners: dict[Key, str] = {}
        in_tables: set[Key] = set()
        keys = again if self.empty_at_start else [(kind, rid) for _, kind, rid, *_ in valid]
        structure_ids = {rid for kind, rid in keys if kind == STRUCTURE}
        if structure_ids:
            where = id_in(StructureRow.id, structure_ids, self.dialect)
            for sid in self.session.scalars(select(StructureRow.id).where(where)):
                in_tables.add((STRUCTURE, sid))
        for kind, row in ((PERMIT, PermitRow), (CASE, CaseRow)):
            ids = {rid for k, rid in keys if k == kind}
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

    def _may_apply(
        self,
        line: int,
        key: Key,
        sid: str,
        stage: str | None,
        holding: _Holding | None,
        old: tuple[bytes, str | None] | None,
        filed: str | None,
        holdings: dict[str, _Holding],
    ) -> bool:
        """Whether a permit or case line may be applied to ``holding`` (its structure's state,
        None when the registry has no such structure), where it is ``old`` (None: a new one)
        and the tables file it under ``filed``."""
        kind, rid = key
        if holding is None:
            self.report.error(line, "structure", unknown_structure(sid))
            return False
        if old is None:
            if filed is None:
                return True
            # The tables file it under a structure: that structure's signed record must hold
            # it, else the row was added or changed behind the registry's back.
            elsewhere = holdings.get(filed)
            backed = elsewhere is not None and key in elsewhere.records
            why = filed_elsewhere(_KIND_NAME[kind], rid, filed, sid, backed)
            self.report.error(line, "structure", why)
            return False
        if kind == CASE and old[1] != stage:
            moved = stage_move_error(rid, CaseStage(str(old[1])), CaseStage(str(stage)))
            if moved is not None:
                self.report.error(line, "stage", moved)
                return False
        return True

    def _write(
        self,
        changed: dict[Key, tuple[Any, ...]],
        in_tables: set[Key],
        events: list[tuple[int, str, bytes]],
    ) -> None:
        for kind, model in enumerate(_ROWS):
            table = table_of(model)
            new = [row for k, row in changed.items() if k[0] == kind and k not in in_tables]
            old = [row for k, row in changed.items() if k[0] == kind and k in in_tables]
            insert_rows(self.session, table, new)
            if old:
                self.connection.execute(
                    table.update().where(table.c.id == bindparam("old_id")),
                    [self._update_values(table, row) for row in old],
                )
        insert_rows(self.session, table_of(EventRow), events)

    def _update_values(self, table: Table, row: tuple[Any, ...]) -> dict[str, Any]:
        """A row's values by column name, times as datetimes (as SQLAlchemy binds them)."""
        values = dict(zip(table.c.keys(), row, strict=True))
        for column in table.c:
            value = values[column.key]
            if isinstance(value, str) and isinstance(column.type, UTCDateTime):
                values[column.key] = datetime.fromisoformat(value).replace(tzinfo=UTC)
        values["old_id"] = values["id"]
        return values


_ROWS: tuple[type[Base], ...] = (StructureRow, PermitRow, CaseRow)  # by kind; parents first


def _tables_empty(session: Session) -> bool:
    """Whether the structure, permit and violation_case tables hold no row at all."""
    ids = (StructureRow.id, PermitRow.id, CaseRow.id)
    return all(session.scalar(select(column).limit(1)) is None for column in ids)
