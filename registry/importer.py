"""JSON Lines import: all or nothing, streaming, every error reported with its line and field.

The whole import is one transaction holding the registry's write lock. Lines are read in chunks;
each chunk is parsed, the rows it refers to are fetched in one query per table, and the lines are
checked in order against that state (so a line may refer to a structure created a few lines up).
Valid changes are written as they go so that later chunks see them; any error anywhere rolls the
whole transaction back at the end, after every line has been checked. Memory holds one chunk.

A successful import appends one event per change to the log, re-signs the status record of every
structure it touched (chunk by chunk, overlapping with the reading; see ``registry.status``), and
signs a checkpoint for the new tree size.

The input is UTF-8 (a byte-order mark at the start, as spreadsheet programs write, is skipped). An
id may appear once per record type in one file: a second line with it is an error naming the
first. Ids are remembered as fingerprints, not strings (10 bytes a record, plus a 4 MiB bitmap;
see ``_SeenIds``), and duplicates reported once every line has been read.
"""

from __future__ import annotations

import os
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import orjson
from permitgate_client.formats import Checkpoint
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from registry.admin import NotInitialised, WrongKey, open_writer, stored_status_map
from registry.heads import sign_head
from registry.log import encode_event
from registry.merkle import CompactTree, leaf_hash
from registry.records import (
    Case,
    InvalidRecord,
    Permit,
    Record,
    Structure,
    format_time,
    parse_record,
)
from registry.signing import Signer
from registry.status import SigningPipeline, StatusSigner
from registry.storage import (
    CASE_COLUMNS,
    PERMIT_COLUMNS,
    STRUCTURE_COLUMNS,
    Base,
    CaseRow,
    Database,
    EventRow,
    PermitRow,
    StatusRow,
    StructureRow,
    bulk_insert,
    case_of,
    id_in,
    permit_of,
    structure_of,
    table_of,
    values_of,
)
from registry.vocabulary import STAGE_MOVES, may_move

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
_SIGNING_WORKERS = max(1, min(4, os.cpu_count() or 1))
_ROW: dict[type, type[Base]] = {Structure: StructureRow, Permit: PermitRow, Case: CaseRow}
_WRITE_ORDER = (Structure, Permit, Case)  # parents before children


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
    now: datetime | None = None,
    on_chunk: Callable[[int], object] | None = None,
) -> ImportReport:
    """Import JSON Lines (raw bytes per line); nothing is written unless every line is valid.

    ``on_chunk`` is called with the number of bytes consumed after each chunk (for progress).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report = ImportReport()
    try:
        with open_writer(db, signer) as (session, origin, head):
            tree = CompactTree.from_state(head.size, head.tree_state)
            status_signer = StatusSigner(signer, now=now)
            with SigningPipeline(session, status_signer, workers=_SIGNING_WORKERS) as pipeline:
                applier = _Applier(session, tree, format_time(now), report, pipeline)
                numbered = enumerate(_utf8_lines(lines, report), start=1)
                while chunk := list(islice(numbered, _CHUNK)):
                    applier.apply(chunk)
                    if on_chunk is not None:
                        on_chunk(sum(len(raw) for _, raw in chunk))
                applier.ids.report_duplicates(report)
                if not report.ok:
                    raise _Rollback
                pipeline.finish()
            if report.changes:
                report.signed = (
                    session.scalar(
                        select(func.count())
                        .select_from(StatusRow)
                        .where(StatusRow.tree_size > head.size)
                    )
                    or 0
                )
                row = sign_head(
                    signer,
                    origin=origin,
                    tree=tree,
                    status_map=stored_status_map(session),
                    serial=head.serial + 1,
                    now=now,
                )
                report.checkpoint = Checkpoint.from_body(row.note[: row.note.index(b"\n\n") + 1])
                session.add(row)
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


class _Applier:
    """Checks and applies chunks of lines inside the import's transaction."""

    def __init__(
        self,
        session: Session,
        tree: CompactTree,
        at: str,
        report: ImportReport,
        pipeline: SigningPipeline,
    ) -> None:
        self.session = session
        self.pipeline = pipeline
        self.connection = session.connection()
        self.dialect = self.connection.dialect.name
        self.tree = tree
        self.at = at
        self.report = report
        self.ids = _SeenIds()

    def apply(self, chunk: list[tuple[int, bytes]]) -> None:
        report = self.report
        parsed = list(self._parse(chunk))
        current, in_db = self._fetch(parsed)
        changed: dict[tuple[type, str], Record] = {}
        events: list[tuple[int, str, bytes]] = []
        for line, record in parsed:
            key = (type(record), record.id)
            old = current.get(key)
            if not self._check(line, record, old, current):
                continue
            if old == record:
                report.unchanged += 1
                continue
            current[key] = changed[key] = record
            body = encode_event(self.tree.size, self.at, record.to_json())
            events.append((self.tree.size, record.structure_id, body))
            self.tree.append(leaf_hash(body))
            report.changes += 1
        self._write(changed, in_db, events)
        report.end_chunk()
        if changed and report.ok:  # once an error is found nothing will be kept: skip signing
            self.pipeline.submit({r.structure_id for r in changed.values()}, self.tree.size)

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

    def _fetch(
        self, parsed: list[tuple[int, Record]]
    ) -> tuple[dict[tuple[type, str], Record], set[tuple[type, str]]]:
        """The stored rows this chunk refers to, keyed by (record type, id)."""
        structure_ids = {r.structure_id for _, r in parsed}
        permit_ids = {r.id for _, r in parsed if isinstance(r, Permit)}
        case_ids = {r.id for _, r in parsed if isinstance(r, Case)}
        current: dict[tuple[type, str], Record] = {}
        queries: list[tuple[type, Any, Any, set[str]]] = [
            (Structure, select(*STRUCTURE_COLUMNS), StructureRow.id, structure_ids),
            (Permit, select(*PERMIT_COLUMNS), PermitRow.id, permit_ids),
            (Case, select(*CASE_COLUMNS), CaseRow.id, case_ids),
        ]
        converters: dict[type, Callable[[Any], Record]] = {
            Structure: structure_of,
            Permit: permit_of,
            Case: case_of,
        }
        for kind, query, id_column, ids in queries:
            if ids:
                where = id_in(id_column, ids, self.dialect)
                for row in self.session.execute(query.where(where)):
                    current[(kind, row[0])] = converters[kind](row)
        return current, set(current)

    def _check(
        self,
        line: int,
        record: Record,
        old: Record | None,
        current: dict[tuple[type, str], Record],
    ) -> bool:
        report = self.report
        if isinstance(record, Structure):
            return True
        what = "permit" if isinstance(record, Permit) else "case"
        if (Structure, record.structure) not in current:
            report.error(line, "structure", f"unknown structure {record.structure!r}")
            return False
        if old is not None and old.structure_id != record.structure:
            report.error(
                line,
                "structure",
                f"{what} {record.id} belongs to {old.structure_id!r}; it cannot move to "
                f"{record.structure!r}",
            )
            return False
        moving = isinstance(record, Case) and isinstance(old, Case)
        if moving and not may_move(old.stage, record.stage):  # type: ignore[union-attr]
            stage, new = old.stage.value, record.stage.value  # type: ignore[union-attr]
            allowed = ", ".join(sorted(s.value for s in STAGE_MOVES[old.stage])) or "none"  # type: ignore[union-attr]
            report.error(
                line,
                "stage",
                f"case {record.id} cannot move from {stage} to {new} "
                f"(allowed from {stage}: {allowed})",
            )
            return False
        return True

    def _write(
        self,
        changed: dict[tuple[type, str], Record],
        in_db: set[tuple[type, str]],
        events: list[tuple[int, str, bytes]],
    ) -> None:
        for kind in _WRITE_ORDER:
            new = [values_of(r) for k, r in changed.items() if k[0] is kind and k not in in_db]
            old = [values_of(r) for k, r in changed.items() if k[0] is kind and k in in_db]
            table = table_of(_ROW[kind])
            bulk_insert(self.session, table, [tuple(values.values()) for values in new])
            if old:
                self.connection.execute(
                    table.update().where(table.c.id == bindparam("old_id")),
                    [{**values, "old_id": values["id"]} for values in old],
                )
        bulk_insert(self.session, table_of(EventRow), events)
