"""Verifying the registry's own signed format, the status record, on top of the client's verifiers.

The general formats (C2SP signed notes and checkpoints, DSSE envelopes) are verified by
``permitgate_client.formats``, one copy shared by the registry, the gate and every caller. A
status record is a DSSE envelope whose payload is a ``StatusRecord``; parsing that payload needs
the registry's record types, so it is verified here. Pure: bytes and a key in, a typed record or a
``VerificationError`` subclass out. ``spec/status-record.md`` specifies the format and numbers
the steps that ``verify_status_record`` takes.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from permitgate_client import (
    ExpiredError,
    FromTheFutureError,
    MalformedError,
    RollbackError,
    VerifierKey,
    WrongStructureError,
)
from permitgate_client.formats import format_time, verify_envelope

from registry.records import StatusRecord

__all__ = ["STATUS_PAYLOAD_TYPE", "verify_status_record"]

STATUS_PAYLOAD_TYPE = "application/vnd.permitgate.status+json"


def verify_status_record(
    data: bytes,
    key: VerifierKey,
    *,
    structure_id: str | None = None,
    checkpoint_size: int | None = None,
    held: StatusRecord | None = None,
    at: datetime | None = None,
) -> StatusRecord:
    """Verify a signed status record from the registry and return its typed payload.

    Each keyword adds a step (left out, the step is skipped): ``structure_id`` is the id the
    record was filed or asked under, ``checkpoint_size`` the tree size of the verified checkpoint
    held, ``held`` the record of the same structure already trusted, ``at`` the time it is to be
    relied on. A gate keeps a record past its ``next_update`` (it answers REVIEW from it), so
    the gate's cache gives no ``at``.
    """
    if at is not None and at.utcoffset() is None:
        raise ValueError("at: give a timezone-aware datetime")
    # Steps 1-3: the envelope, its payload type, the registry's signature over PAE.
    payload = verify_envelope(data, [key], STATUS_PAYLOAD_TYPE)
    # Step 4: the payload's shape.
    try:
        record = StatusRecord.from_json(orjson.loads(payload))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise MalformedError(f"status record: {exc}") from exc
    # Step 5: the record describes the structure it was filed under.
    if structure_id is not None and record.structure.id != structure_id:
        raise WrongStructureError(
            f"status record: describes {record.structure.id!r} but is filed under {structure_id!r}"
        )
    # Step 6: it shows no log position beyond the checkpoint held.
    if checkpoint_size is not None and record.tree_size > checkpoint_size:
        raise FromTheFutureError(
            f"status record of {record.structure.id}: tree size {record.tree_size} is beyond "
            f"the checkpoint's {checkpoint_size}"
        )
    # Step 7: it is not older than the record of the same structure already trusted.
    if held is not None and (held.tree_size, held.this_update) > (
        record.tree_size,
        record.this_update,
    ):
        raise RollbackError(
            f"status record of {record.structure.id}: tree size {record.tree_size} signed "
            f"{format_time(record.this_update)} is older than the one held (tree size "
            f"{held.tree_size} signed {format_time(held.this_update)})"
        )
    # Step 8: it may still be relied on.
    if at is not None and at >= record.next_update:
        raise ExpiredError(
            f"status record of {record.structure.id}: good until "
            f"{format_time(record.next_update)}, relied on at {format_time(at)}"
        )
    return record
