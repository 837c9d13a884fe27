"""Decisions as protobuf bytes, put together by concatenation rather than built as messages.

Serialized protobuf messages concatenate as a merge, and a field is a tag, a length and its
bytes; so an answer is the serialized fixed part of its decision (verdict, reasons,
valid_until: the same for every call that the memo answers alike, serialized once, by protobuf
itself) followed by the few fields that differ per call, encoded here. A ``DecisionBatch`` is
its ``decisions`` field repeated: each decision's bytes behind its tag and length. The gRPC
handlers send these bytes as they are (their response serializer is the identity), so a call
builds no protobuf object at all.

Fields are written in field-number order, as protobuf writes them, with proto3's defaults
(empty strings, zero) left out, so the bytes are those ``SerializeToString`` gives for the same
message; ``tests/test_wire.py`` checks that against messages built through the protobuf API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from google.protobuf.timestamp_pb2 import Timestamp
from permitgate_client.v1 import gate_pb2 as pb

from server.checks import PERMIT_KINDS, REASON_CODES, VERDICTS
from server.rules import Decision

if TYPE_CHECKING:
    from server.gate import Answer

__all__ = [
    "answer_bytes",
    "batch_field",
    "decided_at_field",
    "decision_fixed",
    "error_decision",
    "string_field",
    "varint",
    "version_field",
    "wire_decision",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_LIMIT: Final = 100_000

# Tags (field number << 3 | wire type) of the fields written here: 0 varint, 2 length-delimited.
_NOTIFICATION_ID: Final = b"\x22"  # 4, string
_REGISTRY_VERSION: Final = b"\x28"  # 5, uint64
_DECISION_ID: Final = b"\x32"  # 6, string
_CORRELATION_ID: Final = b"\x3a"  # 7, string
_RECEIPT: Final = b"\x42"  # 8, bytes
_DECIDED_AT: Final = b"\x4a"  # 9, Timestamp
_ERROR: Final = b"\x52"  # 10, string
_BATCH_DECISION: Final = b"\x0a"  # DecisionBatch.decisions, 1
_SECONDS: Final = b"\x08"  # Timestamp.seconds, 1, int64
_NANOS: Final = b"\x10"  # Timestamp.nanos, 2, int32

_SMALL: Final = tuple(bytes((n,)) for n in range(0x80))


def varint(n: int) -> bytes:
    """The base-128 varint of ``n``; a negative ``n`` as int64 (ten bytes, two's complement)."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    if n < 1 << 35:  # times and nanos: one bytes() call, no loop
        if n < 1 << 14:
            return bytes((n & 0x7F | 0x80, n >> 7))
        if n < 1 << 21:
            return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
        if n < 1 << 28:
            return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21))
        return bytes(
            (
                n & 0x7F | 0x80,
                n >> 7 & 0x7F | 0x80,
                n >> 14 & 0x7F | 0x80,
                n >> 21 & 0x7F | 0x80,
                n >> 28,
            )
        )
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(tag: bytes, data: bytes) -> bytes:
    size = len(data)
    return tag + (_SMALL[size] if size < 0x80 else varint(size)) + data


def string_field(tag: bytes, text: str) -> bytes:
    """A string field; empty for the empty string (proto3 leaves the default out)."""
    return _length_delimited(tag, text.encode()) if text else b""


def version_field(version: int) -> bytes:
    """``registry_version``; empty for 0 (no registry data loaded)."""
    return _REGISTRY_VERSION + varint(version) if version else b""


def decided_at_field(at: datetime) -> bytes:
    """``decided_at``, an aware datetime, as a Timestamp (microseconds: whole nanos x 1000)."""
    seconds = (at - _EPOCH) // _SECOND  # exact, and floored before 1970, as Timestamp wants
    nanos = at.microsecond * 1000
    stamp = (_SECONDS + varint(seconds) if seconds else b"") + (
        _NANOS + varint(nanos) if nanos else b""
    )
    return _DECIDED_AT + _SMALL[len(stamp)] + stamp


def _set_time(stamp: Timestamp, at: datetime) -> None:
    """``Timestamp.FromDatetime`` for aware datetimes, without its calendar arithmetic."""
    stamp.seconds = (at - _EPOCH) // _SECOND
    stamp.nanos = at.microsecond * 1000


def _message(decision: Decision) -> pb.Decision:
    message = pb.Decision(verdict=VERDICTS[decision.verdict])
    for reason in decision.reasons:
        r = message.reasons.add()
        r.code = REASON_CODES[reason.code]
        r.article = reason.article
        r.message = reason.message
        if reason.permit_kind is not None:
            r.permit_kind = PERMIT_KINDS[reason.permit_kind]
        if reason.case_id is not None:
            r.case_id = reason.case_id
    if decision.valid_until is not None:
        _set_time(message.valid_until, decision.valid_until)
    return message


_templates: dict[Decision, pb.Decision] = {}


def wire_decision(decision: Decision) -> pb.Decision:
    """The message of a decision's verdict, reasons and valid_until, built once per decision
    value (equal decisions share one; never change it: merge it)."""
    template = _templates.get(decision)
    if template is None:
        if len(_templates) >= _LIMIT:
            _templates.clear()
        template = _templates[decision] = _message(decision)
    return template


# By identity: the gate's memo and the rules hand out the same Decision objects again and
# again, and an identity look-up hashes no reasons. Each entry holds its decision, so that
# the id cannot pass to another object while the entry exists.
_fixed: dict[int, tuple[Decision, bytes]] = {}


def decision_fixed(decision: Decision) -> bytes:
    """The serialized verdict, reasons and valid_until of ``decision``."""
    hit = _fixed.get(id(decision))
    if hit is not None and hit[0] is decision:
        return hit[1]
    data = _message(decision).SerializeToString()
    if len(_fixed) >= _LIMIT:
        _fixed.clear()
    _fixed[id(decision)] = (decision, data)
    return data


_last_version: tuple[int, bytes] = (0, b"")
_last_decided_at: tuple[datetime | None, bytes] = (None, b"")


def answer_bytes(answer: Answer, correlation_id: str = "") -> bytes:
    """The serialized ``Decision`` of ``answer`` (with ``correlation_id``, in a batch)."""
    global _last_version, _last_decided_at
    version, version_bytes = _last_version
    if answer.registry_version != version:
        version = answer.registry_version
        _last_version = version, version_bytes = version, version_field(version)
    at, at_bytes = _last_decided_at
    if answer.decided_at is not at:  # a batch's answers share one
        at = answer.decided_at
        _last_decided_at = at, at_bytes = at, decided_at_field(at)
    receipt = answer.receipt
    return b"".join(
        (
            decision_fixed(answer.decision),
            string_field(_NOTIFICATION_ID, answer.notification_id or ""),
            version_bytes,
            string_field(_DECISION_ID, answer.decision_id),
            string_field(_CORRELATION_ID, correlation_id),
            _length_delimited(_RECEIPT, receipt) if receipt else b"",
            at_bytes,
        )
    )


def error_decision(correlation_id: str, error: str) -> bytes:
    """A batch's decision for a check that could not be answered."""
    return string_field(_CORRELATION_ID, correlation_id) + string_field(_ERROR, error)


def batch_field(decision: bytes) -> bytes:
    """One decision of a ``DecisionBatch``: its field's tag and length, then its bytes."""
    return _length_delimited(_BATCH_DECISION, decision)
