"""The registry log's events: what one change looks like as hashed bytes, and how to replay it.

An event is the RFC 8785 canonical JSON of ``{"seq": n, "at": time, "record": {...}}``, where
``record`` is the full new state of the structure, permit or case in its export form. Putting
the index and time inside the hashed bytes makes every leaf unique and dates every change.
Replaying the events of a structure in order gives its current state; ``registry verify`` does
exactly that and compares the result with the tables and the signed records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from registry.canonical import canonical_json
from registry.records import Record, format_time, parse_record, parse_time

__all__ = ["Event", "decode_event", "encode_event"]


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    at: datetime
    record: Record


def encode_event(seq: int, at: str, record_json: dict[str, Any]) -> bytes:
    """The exact bytes hashed into the log (``at`` formatted, ``record_json`` normalised)."""
    return canonical_json({"seq": seq, "at": at, "record": record_json})


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
