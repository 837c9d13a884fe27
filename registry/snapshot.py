"""Offline snapshots of the registry: written only once verified, read only once verified.

A snapshot lets a utility or an office check structures with no gate and no network: JSON Lines,
the first line the newest cosigned registry head, then one line per structure (all of them, or
one district's), sorted by id, each with its signed status record and its proof in the head's
status map::

    {"format":"permitgate-snapshot/v1","head":"<cosigned note>","district":null,"records":3000}
    {"id":"110105-0000-0014","envelope":"<DSSE envelope, as signed>","proof":"<base64>"}

``write_snapshot`` reads the head and every status record from the database in one consistent
view, verifies the head with the registry key, rebuilds the status map from the records and
compares its root with the head's: a database that does not verify gets no snapshot (nothing
is written), and the rows at fault are named where they can be. ``Snapshot`` is the reading
side, for ``permitgate check --snapshot``: it verifies the head (signature, cosigned time no
older than allowed), finds a structure's line and verifies its proof and its record; for an id
that no line holds, a full snapshot proves the absence by rebuilding the map from all its lines
(the root must be the head's), and a district snapshot cannot (the caller answers REVIEW).
Only the head, the envelopes and the proofs are trusted, once verified; the other header
fields are hints. ``spec/snapshot.md`` specifies the format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from permitgate_client import MalformedError, VerificationError, VerifierKey
from permitgate_client.formats import (
    MapProof,
    RegistryHead,
    verify_fresh,
    verify_map_proof,
    verify_registry_head,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.errors import PlainError
from registry.records import StatusRecord
from registry.statusmap import StatusMap
from registry.storage import Database, HeadRow, StatusRow
from registry.trust import verify_status_record
from registry.trusted_state import TrustedState

__all__ = [
    "FORMAT",
    "Absent",
    "Found",
    "NotInSnapshot",
    "Snapshot",
    "SnapshotRefused",
    "SnapshotReport",
    "SnapshotUnusable",
    "write_snapshot",
]

FORMAT = "permitgate-snapshot/v1"
_BATCH = 5000
_MAX_NAMED = 20  # rows named in a refusal, at most


class SnapshotRefused(PlainError):
    """The database does not verify: no snapshot is written (the message names what)."""


class SnapshotUnusable(PlainError):
    """A snapshot that cannot be relied on: the message names the file, the line and why."""

    exit_code = 1

    def __init__(self, message: str, error: VerificationError) -> None:
        super().__init__(message)
        self.error = error


# --- Writing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """What a snapshot holds: its head and how many records."""

    head: RegistryHead
    district: str | None
    records: int
    total: int  # records in the registry


def _newest_head(session: Session) -> HeadRow | None:
    return session.scalars(select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).first()


def _records(session: Session) -> Iterator[tuple[str, bytes]]:
    rows = session.execute(
        select(StatusRow.structure_id, StatusRow.envelope).order_by(StatusRow.structure_id),
        execution_options={"yield_per": _BATCH},
    )
    for structure_id, envelope in rows:
        yield structure_id, bytes(envelope)


def _district_of(envelope: bytes) -> str | None:
    """The district a status record names (its payload read, not verified: the record is
    verified by its digest against the head's map before it is written)."""
    try:
        payload = orjson.loads(base64.b64decode(orjson.loads(envelope)["payload"]))
        district = payload["structure"]["district"]
    except (orjson.JSONDecodeError, binascii.Error, KeyError, TypeError, ValueError):
        return None
    return district if isinstance(district, str) else None


def write_snapshot(
    db: Database,
    registry_key: VerifierKey,
    out: Path,
    *,
    district: str | None = None,
    state_dir: Path | None = None,
) -> SnapshotReport:
    """Write the snapshot of ``db`` (of one ``district``, or all) to ``out``, all or nothing.

    ``state_dir``, when it holds the registry's trusted state for the same head, names the rows
    that differ from what the registry signed if the map does not verify.
    """
    if not out.parent.is_dir():
        raise SnapshotRefused(f"cannot write {out}: the folder {out.parent} does not exist")
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with db.snapshot() as session:  # one view: the head and the records it covers
            row = _newest_head(session)
            if row is None:
                raise SnapshotRefused("this registry has no signed head: nothing to write")
            note = row.cosigned_note()
            try:
                head = verify_registry_head(note, registry_key)
            except VerificationError as exc:
                raise SnapshotRefused(
                    f"head row {row.serial} does not verify with the registry key ({exc}): "
                    "run 'permitgate registry verify'; no snapshot written"
                ) from exc
            chosen: set[str] = set()

            def digests() -> Iterator[tuple[str, bytes]]:
                for structure_id, envelope in _records(session):
                    if district is not None and _district_of(envelope) == district:
                        chosen.add(structure_id)
                    yield structure_id, hashlib.sha256(envelope).digest()

            status_map = StatusMap(digests())  # built at once: far faster than entry by entry
            if len(status_map) != head.map.count or status_map.root() != head.map.root:
                raise SnapshotRefused(_mismatch(session, head, status_map, registry_key, state_dir))
            count = len(status_map) if district is None else len(chosen)
            header = {"format": FORMAT, "head": note.decode(), "district": district,
                      "records": count}  # fmt: skip
            with tmp.open("wb") as f:
                f.write(orjson.dumps(header) + b"\n")
                written = 0
                previous = ""
                for structure_id, envelope in _records(session):
                    if structure_id <= previous:  # ids come sorted, each once
                        raise SnapshotRefused(
                            f"status_record rows are not sorted by id ({previous!r}, then "
                            f"{structure_id!r}): no snapshot written"
                        )
                    previous = structure_id
                    if district is not None and structure_id not in chosen:
                        continue
                    if status_map.get(structure_id) != hashlib.sha256(envelope).digest():
                        raise SnapshotRefused(  # one view of the database: cannot happen
                            f"status_record row of {structure_id!r} changed while read"
                        )
                    proof = status_map.prove(structure_id)
                    line = {
                        "id": structure_id,
                        "envelope": envelope.decode(),
                        "proof": base64.b64encode(proof.to_bytes()).decode(),
                    }
                    f.write(orjson.dumps(line) + b"\n")
                    written += 1
            if written != count:
                raise SnapshotRefused(f"read {written} records the second time, not {count}")
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return SnapshotReport(head, district, written, len(status_map))


def _mismatch(
    session: Session,
    head: RegistryHead,
    status_map: StatusMap,
    registry_key: VerifierKey,
    state_dir: Path | None,
) -> str:
    """Why the stored records do not make the head's map, naming the rows where it can."""
    said = (
        f"the status records in the database do not make the status map of the newest head "
        f"(head {head.map.serial}: {head.map.count} records; the database: {len(status_map)}"
        f"{'' if len(status_map) != head.map.count else ', another root'})"
    )
    suspects: list[str] = []
    trusted = _trusted_entries(state_dir, head)
    if trusted is not None:
        for structure_id, digest in sorted(trusted.items()):
            if status_map.get(structure_id) != digest:
                held = status_map.get(structure_id)
                suspects.append(
                    f"status_record row of {structure_id!r} "
                    + ("is missing" if held is None else "is not the record the registry signed")
                )
        for structure_id, _ in _records(session):
            if structure_id not in trusted:
                suspects.append(f"status_record row of {structure_id!r} was never signed in")
    else:  # without the registry's own state: the rows whose record is not genuine at all
        for structure_id, envelope in _records(session):
            try:
                verify_status_record(envelope, registry_key, structure_id=structure_id)
            except VerificationError as exc:
                suspects.append(f"status_record row of {structure_id!r}: {exc}")
    named = "; ".join(suspects[:_MAX_NAMED])
    more = len(suspects) - _MAX_NAMED
    if suspects:
        said += f": {named}" + (f" (and {more} more)" if more > 0 else "")
    return said + "; run 'permitgate registry verify'; no snapshot written"


def _trusted_entries(state_dir: Path | None, head: RegistryHead) -> dict[str, bytes] | None:
    """The registry's trusted entries, when ``state_dir`` holds them for this same head."""
    if state_dir is None or not (state_dir / "registry.sqlite").is_file():
        return None
    state = TrustedState(state_dir, "registry")
    try:
        note = state.head()
        if note is None or note[: note.index(b"\n\n")] != head.note[: head.note.index(b"\n\n")]:
            return None
        return {structure_id: digest for structure_id, digest, _ in state.entries()}
    finally:
        state.close()


# --- Reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """The structure's current record, verified against the head's map."""

    record: StatusRecord
    digest: bytes
    line: int


@dataclass(frozen=True, slots=True)
class Absent:
    """The registry holds no record of the structure: shown by an absence proof in the map."""

    proof: MapProof


@dataclass(frozen=True, slots=True)
class NotInSnapshot:
    """A district snapshot holds no line for the structure: it cannot say whether the registry
    holds one (the structure may be of another district)."""

    district: str


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    structure_id: str
    envelope: bytes
    proof: bytes


class Snapshot:
    """A snapshot file whose head verified and is fresh enough; ``find`` looks a structure up.

    ``open`` raises ``SnapshotUnusable`` naming the file, the line and the failure (its
    ``error`` the typed ``VerificationError``).
    """

    def __init__(
        self, path: Path, head: RegistryHead, district: str | None, registry_key: VerifierKey
    ) -> None:
        self.path = path
        self.head = head
        self.district = district
        self.registry_key = registry_key

    @classmethod
    def open(
        cls, path: Path, registry_key: VerifierKey, *, now: datetime, max_age: timedelta
    ) -> Snapshot:
        """Read and verify the header: the head's signature and status map line, and its
        cosigned time, at most ``max_age`` before ``now``."""
        try:
            with path.open("rb") as f:
                first = f.readline()
        except OSError as exc:
            raise SnapshotUnusable(
                f"snapshot {path}: cannot be read ({exc.strerror})",
                MalformedError(f"cannot be read ({exc.strerror})"),
            ) from exc
        try:
            header = _object(first)
            if header.get("format") != FORMAT:
                raise MalformedError(f"not a {FORMAT} snapshot (format {header.get('format')!r})")
            note, district = header.get("head"), header.get("district")
            if not isinstance(note, str):
                raise MalformedError("head: missing or not a string")
            if district is not None and not isinstance(district, str):
                raise MalformedError("district: not a string or null")
            head = verify_registry_head(note.encode(), registry_key)
        except VerificationError as exc:
            raise _unusable(path, 1, exc) from exc
        snapshot = cls(path, head, district, registry_key)
        try:
            verify_fresh(head, now=now, max_age=max_age)
        except VerificationError as exc:
            raise SnapshotUnusable(
                f"snapshot {path}: too old to rely on: {exc} (a newer snapshot, or a gate, can "
                "answer; --max-age sets the bound)",
                exc,
            ) from exc
        return snapshot

    @property
    def cosigned_at(self) -> datetime:
        """The head's cosigned time (``open`` showed there is one, and recent enough)."""
        assert self.head.cosigned_at is not None  # ``open`` showed it fresh
        return self.head.cosigned_at

    def find(self, structure_id: str) -> Found | Absent | NotInSnapshot:
        """The structure's verified record; or, for a full snapshot, the proof that the
        registry holds none; or, for a district snapshot, that it cannot tell."""
        for line in self._lines():
            if line.structure_id == structure_id:
                return self._found(line)
            if line.structure_id > structure_id:
                break
        if self.district is not None:
            return NotInSnapshot(self.district)
        return Absent(self._absence(structure_id))

    def _found(self, line: _Line) -> Found:
        digest = hashlib.sha256(line.envelope).digest()
        try:
            proof = MapProof.from_bytes(line.proof)
            verify_map_proof(self.head.map.root, line.structure_id, digest, proof)
            record = verify_status_record(
                line.envelope,
                self.registry_key,
                structure_id=line.structure_id,
                checkpoint_size=self.head.size,
            )
        except VerificationError as exc:
            raise _unusable(self.path, line.number, exc) from exc
        return Found(record, digest, line.number)

    def _absence(self, structure_id: str) -> MapProof:
        """Rebuild the status map from every line; when it is the head's, prove the absence."""
        lines = 0

        def digests() -> Iterator[tuple[str, bytes]]:
            nonlocal lines
            for line in self._lines():
                lines += 1
                yield line.structure_id, hashlib.sha256(line.envelope).digest()

        rebuilt = StatusMap(digests())
        if len(rebuilt) != self.head.map.count or rebuilt.root() != self.head.map.root:
            # Name the first line whose own proof fails, if one does.
            for line in self._lines():
                self._found(line)
            error = MalformedError(
                f"its {lines} records do not make the head's status map "
                f"({self.head.map.count} records): it is incomplete, or not a full snapshot"
            )
            raise SnapshotUnusable(f"snapshot {self.path}: {error}", error)
        proof = rebuilt.prove(structure_id)
        try:
            verify_map_proof(self.head.map.root, structure_id, None, proof)
        except VerificationError as exc:  # the map rebuilt is the head's: cannot happen
            raise _unusable(self.path, 0, exc) from exc
        return proof

    def _lines(self) -> Iterator[_Line]:
        """The record lines, parsed and in strictly increasing id order."""
        previous: str | None = None
        with self.path.open("rb") as f:
            f.readline()
            for number, raw in enumerate(f, start=2):
                try:
                    line = _record_line(raw, number)
                    if previous is not None and line.structure_id <= previous:
                        raise MalformedError(
                            f"id {line.structure_id!r} is not after {previous!r} (lines are "
                            "sorted by id, each id once)"
                        )
                except VerificationError as exc:
                    raise _unusable(self.path, number, exc) from exc
                previous = line.structure_id
                yield line


def _unusable(path: Path, line: int, error: VerificationError) -> SnapshotUnusable:
    where = f"line {line}: " if line else ""
    return SnapshotUnusable(f"snapshot {path} {where}{error}", error)


def _object(raw: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedError(f"not JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise MalformedError("not a JSON object")
    return obj


def _record_line(raw: bytes, number: int) -> _Line:
    obj = _object(raw)
    structure_id, envelope, proof = obj.get("id"), obj.get("envelope"), obj.get("proof")
    for name, value in (("id", structure_id), ("envelope", envelope), ("proof", proof)):
        if not isinstance(value, str):
            raise MalformedError(f"{name}: missing or not a string")
    assert isinstance(structure_id, str) and isinstance(envelope, str) and isinstance(proof, str)
    try:
        proof_bytes = base64.b64decode(proof, validate=True)
    except binascii.Error as exc:
        raise MalformedError("proof: not base64") from exc
    try:
        envelope_bytes = envelope.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") is no UTF-8
        raise MalformedError("envelope: not UTF-8 text") from exc
    return _Line(number, structure_id, envelope_bytes, proof_bytes)
