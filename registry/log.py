"""The registry log's events: what one change looks like as hashed bytes, and how to fold them.

An event is the RFC 8785 canonical JSON of an object holding its index ``seq`` and time ``at``
(so every leaf is unique and dated) and what happened, one of:

* a **record event** ``{"at", "record", "seq"}``: ``record`` is the full new state of a
  structure, permit or case in its export form (an import line's change). Written by a
  department (``registry.department_writes``), it also carries ``"statement"``: the department's
  signed write statement, the DSSE envelope as a JSON object, so anyone with the department's
  key can check who asked for the change;
* a **statement event** ``{"at", "seq", "statement"}``: a department's write that changes no
  record (a referral, its answer, a notice acknowledged), filed under the case's or notice's
  structure;
* a **department event** ``{"at", "department": {...}, "seq"}``: a department enrolled, its key
  rotated or revoked (``DepartmentChange``), filed under no structure. Folding them in log order
  (``fold_department``) gives which key each department had at every index.

Folding the record events of a structure in order gives its state; ``registry verify`` does
exactly that and compares the result with the tables and the signed records. Nothing is signed
from the events: a writer signs from the previous signed record (``registry.writer``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson
from permitgate_client import VerifierKey

from registry.canonical import canonical_json
from registry.departments import Role
from registry.records import Case, Permit, Record, Structure, format_time, parse_record, parse_time
from registry.vocabulary import id_error

__all__ = [
    "DEPARTMENT_CHANGES",
    "DepartmentChange",
    "DepartmentEntry",
    "Event",
    "State",
    "StatementWrite",
    "decode_event",
    "encode_event",
    "event_bytes",
    "fold",
    "fold_department",
    "statement_write",
    "write_digest",
]

DEPARTMENT_CHANGES: Final = ("enrol", "rotate", "revoke")
"""What a department event says: a department enrolled with its first key, given a new key (the
old one is no longer accepted), or its key revoked (refused from then on)."""
_REASON_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class DepartmentChange:
    """One department event's ``department`` object: the department (id, role, name), the key
    the change is about (the new key for enrol and rotate, the revoked one for revoke)."""

    change: str
    id: str
    role: Role
    name: str
    key: VerifierKey
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "change": self.change,
            "id": self.id,
            "role": self.role.value,
            "name": self.name,
            "key": self.key.text,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, obj: Any) -> DepartmentChange:
        """Parse a department event's object; ``ValueError`` names the field at fault."""
        if not isinstance(obj, dict):
            raise ValueError("department: not a JSON object")
        extra = sorted(obj.keys() - {"change", "id", "role", "name", "key", "reason"})
        if extra:
            raise ValueError(f"department.{extra[0]}: unknown field")
        for name in ("change", "id", "role", "name", "key"):
            if not isinstance(obj.get(name), str) or not obj[name].strip():
                raise ValueError(f"department.{name}: missing or not a string")
        if obj["change"] not in DEPARTMENT_CHANGES:
            raise ValueError(f"department.change: unknown {obj['change']!r}")
        why = id_error(obj["id"])
        if why is not None:
            raise ValueError(f"department.id: {why}")
        try:
            role = Role(obj["role"])
        except ValueError as exc:
            raise ValueError(f"department.role: unknown {obj['role']!r}") from exc
        try:
            key = VerifierKey.from_text(obj["key"])
        except ValueError as exc:
            raise ValueError(f"department.key: {exc}") from exc
        if key.name != obj["id"]:
            raise ValueError(f"department.key: named {key.name!r}, not {obj['id']!r}")
        reason = obj.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > _REASON_MAX):
            raise ValueError(f"department.reason: not a string of at most {_REASON_MAX}")
        return cls(obj["change"], obj["id"], role, obj["name"], key, reason)


class DepartmentEntry(NamedTuple):
    """A department as the directory holds it: its current (or last) key, whether that key is
    ``active`` or ``revoked``, and the log index of the event that made it so."""

    id: str
    role: str
    name: str
    key: str  # the verifier key text
    state: str  # "active" or "revoked"
    seq: int

    @property
    def active(self) -> bool:
        return self.state == "active"

    def verifier(self) -> VerifierKey:
        return VerifierKey.from_text(self.key)


def fold_department(
    current: DepartmentEntry | None, change: DepartmentChange, seq: int
) -> DepartmentEntry:
    """The department after ``change`` at index ``seq``; ``ValueError`` when the change does not
    follow from ``current`` (enrolled twice, a key rotated or revoked that is not current)."""
    what = f"department {change.id}"
    if change.change == "enrol":
        if current is not None:
            raise ValueError(f"{what}: enrolled already (at event {current.seq})")
        return DepartmentEntry(
            change.id, change.role.value, change.name, change.key.text, "active", seq
        )
    if current is None:
        raise ValueError(f"{what}: not enrolled")
    if change.change == "rotate":  # also after a revocation: a new key
        if change.key.text == current.key:
            shown = "current" if current.active else "revoked"
            raise ValueError(f"{what}: the new key is its {shown} key")
        return current._replace(
            role=change.role.value, name=change.name, key=change.key.text, state="active", seq=seq
        )
    if not current.active:
        raise ValueError(f"{what}: its key was revoked already (at event {current.seq})")
    if change.key.text != current.key:
        raise ValueError(f"{what}: the key revoked is not its current key")
    return current._replace(state="revoked", seq=seq)


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded event: ``record`` for a record event, ``statement`` (the envelope's JSON
    object) when a department wrote it, ``department`` for a department event."""

    seq: int
    at: datetime
    record: Record | None = None
    statement: dict[str, Any] | None = None
    department: DepartmentChange | None = None


def encode_event(
    seq: int,
    at: str,
    record_json: dict[str, Any] | None = None,
    *,
    statement: dict[str, Any] | None = None,
    department: dict[str, Any] | None = None,
) -> bytes:
    """The exact bytes hashed into the log (``at`` formatted, ``record_json`` normalised)."""
    obj: dict[str, Any] = {"seq": seq, "at": at}
    if record_json is not None:
        obj["record"] = record_json
    if statement is not None:
        obj["statement"] = statement
    if department is not None:
        obj["department"] = department
    return canonical_json(obj)


def event_bytes(seq: int, at_json: bytes, record_bytes: bytes) -> bytes:
    """``encode_event`` of a record event from parts already in canonical form: ``at_json`` the
    JSON string of the formatted time, ``record_bytes`` the canonical JSON of the record (keys
    in RFC 8785 order: at, record, seq)."""
    return b'{"at":' + at_json + b',"record":' + record_bytes + b',"seq":' + b"%d}" % seq


_KINDS: Final = (
    frozenset({"seq", "at", "record"}),
    frozenset({"seq", "at", "record", "statement"}),
    frozenset({"seq", "at", "statement"}),
    frozenset({"seq", "at", "department"}),
)


def decode_event(body: bytes) -> Event:
    """Parse an event's bytes; raises ``ValueError`` when they are not a well-formed event (one
    of the three kinds, in canonical form)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed event ({exc})") from exc
    if not isinstance(obj, dict) or frozenset(obj) not in _KINDS:
        shown = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"malformed event (fields {shown})")
    seq, at = obj["seq"], obj["at"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(at, str):
        raise ValueError("malformed event (seq or at)")
    record = parse_record(obj["record"]) if "record" in obj else None
    statement = obj.get("statement")
    if statement is not None and not isinstance(statement, dict):
        raise ValueError("malformed event (statement is not a JSON object)")
    department = None
    if "department" in obj:
        department = DepartmentChange.from_json(obj["department"])
    event = Event(seq, parse_time(at), record, statement, department)
    again = encode_event(
        seq,
        format_time(event.at),
        None if record is None else record.to_json(),
        statement=statement,
        department=None if department is None else department.to_json(),
    )
    if again != body:
        raise ValueError("event is not in canonical form")
    return event


State = tuple[Structure, tuple[Permit, ...], tuple[Case, ...]]
"""A structure's current state: the structure, its permits and its cases (each by id)."""


def fold(structure_id: str, records: Iterable[Record]) -> State:
    """The state made of each record's latest version; ``ValueError`` if none is the structure."""
    structure: Structure | None = None
    permits: list[Permit] = []
    cases: list[Case] = []
    for record in records:
        if isinstance(record, Structure):
            structure = record
        elif isinstance(record, Permit):
            permits.append(record)
        else:
            cases.append(record)
    if structure is None or structure.id != structure_id:
        raise ValueError(f"structure {structure_id}: events refer to it, but none creates it")
    permits.sort(key=_by_id)
    cases.sort(key=_by_id)
    return structure, tuple(permits), tuple(cases)


def _by_id(record: Record) -> str:
    return record.id


def write_digest(action: str, write: Any) -> bytes:
    """What identifies a department's write for its request id: SHA-256 of the RFC 8785 JSON of
    ``{"action", "write"}``. Not the signed payload: the same write signed again (a client
    restarted) is a replay of it, not another write."""
    return hashlib.sha256(canonical_json({"action": action, "write": write})).digest()


class StatementWrite(NamedTuple):
    """What a statement event's write statement says, read without verifying it."""

    department: str
    request_id: str
    action: str
    digest: bytes  # write_digest(action, write)


def statement_write(statement: dict[str, Any]) -> StatementWrite | None:
    """What a statement event's envelope says (department, request id, action, digest), read
    from its payload without verifying it (the caller trusts the event: a head the registry
    signed covers it, or the caller verified it); None when it is not a write statement."""
    try:
        payload = orjson.loads(base64.b64decode(statement["payload"], validate=True))
        department, request_id = payload["department"], payload["request_id"]
        action = payload["action"]
        digest = write_digest(action, payload["write"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    if not all(isinstance(v, str) for v in (department, request_id, action)):
        return None
    return StatementWrite(department, request_id, action, digest)
