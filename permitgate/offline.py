"""Answering a check from a verified snapshot, with no gate, by the gate's own rules.

``permitgate check ... --snapshot FILE`` comes here. The check goes through the same validation
as at the gate (``CHECK_KINDS``: the wire message built by the client's ``Check``, converted by
the kind's ``from_wire``), and is decided by the same rule (``CheckRequest.decide``) on the
structure's record as the snapshot proves it (``registry.snapshot``): the record verified
against the head's status map, or the registry's holding none shown by an absence proof. A
record past its ``next_update`` is stale, as at the gate. What a snapshot cannot show (an id
outside a district snapshot) is REVIEW with ``RECORD_UNVERIFIED``, never an answer from nothing.
Offline, nothing is recorded: a NOTIFY tells no working group, and there is no receipt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from permitgate_client import Check
from permitgate_client.v1 import gate_pb2 as pb

from registry.snapshot import Absent, Found, NotInSnapshot, Snapshot
from server.checks import CHECK_KINDS
from server.rules import Decision, Reason, ReasonCode, Verdict
from server.wire import wire_decision

__all__ = ["OfflineAnswer", "answer_offline"]


@dataclass(frozen=True, slots=True)
class OfflineAnswer:
    """The rules' decision, what the snapshot showed of the structure, and when."""

    decision: Decision
    found: Found | Absent | NotInSnapshot
    decided_at: datetime
    registry_version: int

    def message(self) -> pb.Decision:
        """The decision as the gate would send it (no decision id, notification or receipt)."""
        out = pb.Decision()
        out.MergeFrom(wire_decision(self.decision))
        out.decided_at.CopyFrom(_stamp(self.decided_at))
        out.registry_version = self.registry_version
        return out


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def answer_offline(snapshot: Snapshot, check: Check, now: datetime) -> OfflineAnswer:
    """Decide ``check`` at ``now`` from ``snapshot`` (whose head ``Snapshot.open`` verified).

    Raises ``server.checks.InvalidCheck`` naming the field, as the gate answers
    ``INVALID_ARGUMENT``, and ``registry.snapshot.SnapshotUnusable`` naming the line at fault.
    """
    request = CHECK_KINDS[check.kind].from_wire(getattr(check.message, check.kind), now)
    found = snapshot.find(request.structure_id)
    if isinstance(found, Found):
        record = found.record
        decision = request.decide(record, now, record.next_update <= now)
    elif isinstance(found, Absent):
        decision = request.decide(None, now, False)
    else:
        decision = Decision(
            Verdict.REVIEW,
            (
                Reason(
                    ReasonCode.RECORD_UNVERIFIED,
                    request.article,
                    f"not in this snapshot, which holds district {found.district} only: "
                    "whether the registry holds the structure cannot be shown from it",
                ),
            ),
        )
    return OfflineAnswer(decision, found, now, snapshot.head.size)
