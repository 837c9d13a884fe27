"""The registry log's events: what one change looks like as hashed bytes, and how to fold them.

An event is the RFC 8785 canonical JSON of ``{"seq": n, "at": time, "record": {...}}``, where
``record`` is the full new state of the structure, permit or case in its export form. Putting
the index and time inside the hashed bytes makes every leaf unique and dates every change.
Folding the events of a structure in order gives its state; ``registry verify`` does exactly that
and compares the result with the tables and the signed records. Nothing is signed from the
events: a writer signs from the previous signed record (``registry.writer``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from registry.canonical import canonical_json
from registry.records import Case, Permit, Record, Structure, format_time, parse_record, parse_time

__all__ = ["Event", "State", "decode_event", "encode_event", "event_bytes", "fold"]


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    at: datetime
    record: Record


def encode_event(seq: int, at: str, record_json: dict[str, Any]) -> bytes:
    """The exact bytes hashed into the log (``at`` formatted, ``record_json`` normalised)."""
    return canonical_json({"seq": seq, "at": at, "record": record_json})


def event_bytes(seq: int, at_json: bytes, record_bytes: bytes) -> bytes:
    """``encode_event`` from parts already in canonical form: ``at_json`` the JSON string of the
    formatted time, ``record_bytes`` the canonical JSON of the record (keys in RFC 8785 order:
    at, record, seq)."""
    return b'{"at":' + at_json + b',"record":' + record_bytes + b',"seq":' + b"%d}" % seq


def decode_event(body: bytes) -> Event:
    """Parse an event's bytes; raises ``ValueError`` when they are not a well-formed event."""
    try:
        obj = orjson.loads(body)
        seq, at, record = obj["seq"], obj["at"], obj["record"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed event ({exc})") from exc
    if not isinstance(seq, int) or not isinstance(at, str):
        raise ValueError("malformed event (seq or at)")
    event = Event(seq, parse_time(at), parse_record(record))
    if encode_event(seq, format_time(event.at), event.record.to_json()) != body:
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
