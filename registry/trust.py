"""Verifying the registry's own signed format, the status record, on top of the client's verifiers.

The general formats (C2SP signed notes and checkpoints, DSSE envelopes) are verified by
``permitgate_client.formats``, one copy shared by the registry, the gate and every caller. A
status record is a DSSE envelope whose payload is a ``StatusRecord``; parsing that payload needs
the registry's record types, so it is verified here. Pure: bytes and a key in, a typed record or a
``VerificationError`` subclass out. ``spec/status-record.md`` specifies the format.
"""

from __future__ import annotations

import orjson
from permitgate_client import MalformedError, VerifierKey
from permitgate_client.formats import verify_envelope

from registry.records import StatusRecord

__all__ = ["STATUS_PAYLOAD_TYPE", "verify_status_record"]

STATUS_PAYLOAD_TYPE = "application/vnd.permitgate.status+json"


def verify_status_record(data: bytes, key: VerifierKey) -> StatusRecord:
    """Verify a signed status record from the registry and return its typed payload."""
    payload = verify_envelope(data, [key], STATUS_PAYLOAD_TYPE)
    try:
        return StatusRecord.from_json(orjson.loads(payload))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise MalformedError(f"status record: {exc}") from exc
