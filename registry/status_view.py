"""One structure's signed status record, in words: what it says, and whether its signature holds.

``permitgate registry status`` shows this. The record is read from its envelope as signed (never
from the tables), and its signature is checked with the registry key when one is given; without a
key the record is still shown, marked as not checked, so that a person with only the database can
read it and a person with the key can trust it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from permitgate_client import VerificationError, VerifierKey

from registry.records import Case, Permit, StatusRecord, format_time
from registry.trust import verify_status_record

__all__ = ["Signature", "StatusView", "read_status_view"]


class Signature(StrEnum):
    """What is known of the record's signature."""

    VERIFIED = "verified"
    NOT_CHECKED = "not checked"
    FAILED = "failed"


@dataclass(frozen=True)
class StatusView:
    structure_id: str
    envelope: bytes
    record: StatusRecord | None  # None when the payload cannot be read at all
    signature: Signature
    detail: str  # the signature's status in words
    now: datetime

    def lines(self) -> list[str]:
        """The record for a person to read."""
        out = [f"signature: {self.signature.value}: {self.detail}"]
        r = self.record
        if r is None:
            return out
        if self.signature is Signature.FAILED:
            out.append("the record as stored (do not rely on it):")
        s = r.structure
        out.append(
            f"structure {s.id}: {s.area.value}, district {s.district}"
            + (f", declared use {s.declared_use}" if s.declared_use else "")
            + (f", {s.address}" if s.address else "")
        )
        state = (
            f"good until {format_time(r.next_update)}"
            if self.now < r.next_update
            else f"EXPIRED at {format_time(r.next_update)} (gates answer REVIEW; run "
            "'permitgate registry refresh')"
        )
        out.append(
            f"record: registry version {r.tree_size}, signed {format_time(r.this_update)}, {state}"
        )
        out.append(f"permits ({len(r.permits)}):" if r.permits else "permits: none")
        out.extend(f"  {_permit(p)}" for p in r.permits)
        out.append(f"cases ({len(r.cases)}):" if r.cases else "cases: none")
        out.extend(f"  {_case(c)}" for c in r.cases)
        return out

    def to_json(self) -> dict[str, Any]:
        """The envelope as signed (canonical JSON: re-encoding gives its bytes), and the record."""
        return {
            "structure_id": self.structure_id,
            "signature": {"status": self.signature.value, "detail": self.detail},
            "record": None if self.record is None else self.record.to_json(),
            "envelope": orjson.loads(self.envelope),
        }


def _permit(p: Permit) -> str:
    parts = [p.id, p.kind.value, p.status.value, f"issued {format_time(p.issued)}"]
    if p.expires is not None:
        parts.append(f"expires {format_time(p.expires)}")
    if p.use:
        parts.append(f"use {p.use}")
    return "  ".join(parts)


def _case(c: Case) -> str:
    opened = f"opened {format_time(c.opened)}"
    return "  ".join([c.id, c.kind.value, c.stage.value, f"source {c.source.value}", opened])


def read_status_view(
    structure_id: str,
    envelope: bytes,
    key: VerifierKey | None,
    key_file: Path,
    *,
    now: datetime | None = None,
) -> StatusView:
    """Check ``envelope`` with ``key`` (read from ``key_file``; None: it does not exist)."""
    now = now or datetime.now(UTC)
    if key is None:
        try:
            record = _unverified(envelope)
        except ValueError as exc:
            return StatusView(structure_id, envelope, None, Signature.FAILED, str(exc), now)
        detail = f"no key ({key_file} does not exist; pass --keys the registry's key folder)"
        return StatusView(structure_id, envelope, record, Signature.NOT_CHECKED, detail, now)
    try:
        record = verify_status_record(envelope, key)
        if record.structure.id != structure_id:
            raise VerificationError(
                f"the record describes {record.structure.id!r}, not {structure_id!r}"
            )
    except VerificationError as exc:
        try:
            shown: StatusRecord | None = _unverified(envelope)
        except ValueError:
            shown = None
        detail = f"does not verify with the registry key {key.keyid_text} (from {key_file}): {exc}"
        return StatusView(structure_id, envelope, shown, Signature.FAILED, detail, now)
    detail = f"signed by the registry key {key.keyid_text} (from {key_file})"
    return StatusView(structure_id, envelope, record, Signature.VERIFIED, detail, now)


def _unverified(envelope: bytes) -> StatusRecord:
    """The payload, read without checking any signature (raises ``ValueError``)."""
    try:
        payload = base64.b64decode(orjson.loads(envelope)["payload"], validate=True)
        return StatusRecord.from_json(orjson.loads(payload))
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"the envelope cannot be read: {exc}") from exc
