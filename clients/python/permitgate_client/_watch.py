"""What ``Client.watch`` and ``AsyncClient.watch`` share: the typed ``StatusChange``, where a
watch stands (``WatchPosition``), and the resuming, with no I/O.

A watch stream carries answers and progress markers. ``_Resumer`` keeps the last marker (the
point to resume from after a dropped stream) and the last answer yielded per structure, so that
an answer the gate sends again on resuming (a record that changed without changing the answer,
say) is not yielded twice. Answers given on data the gate could not show fresh or genuine
(``REGISTRY_STALE``, ``RECORD_UNVERIFIED``) make it resume from the start: the gate cannot know
which answers a caller holds, and the fresh answer must not be missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import grpc

from permitgate_client._errors import InvalidCheckError
from permitgate_client._models import Check, Decision
from permitgate_client._times import format_time
from permitgate_client.v1 import gate_pb2 as pb

__all__ = ["MAX_WATCHED_IDS", "ChangeCause", "StatusChange", "WatchPosition"]

MAX_WATCHED_IDS: Final = 10_000
"""The most structure ids one watch may name (a district or every structure: no limit)."""

RESUMABLE: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED}
)
"""Ends of a watch stream after which it is resumed: the gate went away, restarted, or ended
a watch that fell behind."""

_CAUTIONARY: Final = frozenset({"REGISTRY_STALE", "RECORD_UNVERIFIED"})


class ChangeCause(StrEnum):
    """Why the gate sent an answer."""

    CURRENT = "current"
    """The answer as the watch started (or resumed)."""
    RECORD_CHANGED = "record_changed"
    """The structure's record changed (a new case, a permit issued, suspended, revoked ...)."""
    TIME_PASSED = "time_passed"
    """A permit lapsed or came into force, a temporary grant ended, a record grew old."""
    REGISTRY_STALE = "registry_stale"
    """The gate can no longer show that its data is fresh."""
    REGISTRY_FRESH = "registry_fresh"
    """Fresh data again."""


_CAUSES: Final = {
    int(pb.ChangeCause.Value(f"CHANGE_CAUSE_{cause.name}")): cause for cause in ChangeCause
}
_PROGRESS: Final = int(pb.CHANGE_CAUSE_PROGRESS)


@dataclass(frozen=True, slots=True)
class WatchPosition:
    """A point a watch can resume from: every change up to registry ``version`` and up to
    ``at`` had been sent. Pass it as ``after`` to start a later watch there (version 0, before
    the gate held any data: from the start)."""

    version: int
    at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or self.version < 0:
            raise ValueError(f"version: a registry version (0 or more), not {self.version!r}")
        if self.at.tzinfo is None:
            raise ValueError("at: give a timezone-aware datetime")


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A watched structure's new answer."""

    structure_id: str
    decision: Decision
    """The answer a check would get (its ``decision_id`` is empty: nothing was logged)."""
    cause: ChangeCause
    registry_version: int
    at: datetime
    """When the gate found the change (aware, UTC)."""
    position: WatchPosition | None
    """The last progress marker before this change (None before the first): resuming there
    in another process may send this change again, never loses one."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``permitgate watch --json`` prints one per line)."""
        decision = self.decision
        return {
            "structure_id": self.structure_id,
            "verdict": decision.verdict.value,
            "reasons": [r.to_json() for r in decision.reasons],
            "valid_until": None
            if decision.valid_until is None
            else format_time(decision.valid_until),
            "cause": self.cause.value,
            "registry_version": self.registry_version,
            "at": format_time(self.at),
        }


def watch_request(
    question: Check,
    structure_ids: list[str] | tuple[str, ...] | None,
    district: str | None,
    all_structures: bool,
) -> pb.WatchRequest:
    """The request, checked as far as it can be without the gate (the gate checks the rest)."""
    if not isinstance(question, Check):
        raise TypeError(
            "question: expected a Check (Check.connection('', utility='water'), say), got "
            f"{type(question).__name__}"
        )
    if question.structure_id:
        raise InvalidCheckError(
            "question: leave its structure_id empty; name the structures in structure_ids, "
            "district or all_structures"
        )
    if isinstance(structure_ids, str):
        raise TypeError("structure_ids: expected a list of ids, got one str")
    chosen = sum((structure_ids is not None, district is not None, bool(all_structures)))
    if chosen != 1:
        raise InvalidCheckError("give exactly one of structure_ids, district and all_structures")
    request = pb.WatchRequest(all_structures=bool(all_structures), district=district or "")
    if structure_ids is not None:
        if not structure_ids:
            raise InvalidCheckError("structure_ids: name at least one structure")
        if len(structure_ids) > MAX_WATCHED_IDS:
            raise InvalidCheckError(
                f"structure_ids: at most {MAX_WATCHED_IDS} per watch, got {len(structure_ids)}"
            )
        request.structure_ids.extend(structure_ids)
    question.write(request.question)
    request.question.ClearField("correlation_id")
    return request


class _Resumer:
    """The resume point and the answers yielded, over every stream of one watch."""

    def __init__(self, request: pb.WatchRequest, after: WatchPosition | None) -> None:
        self._request = request
        self.position = after
        self._yielded: dict[str, bytes] = {}
        self._cautionary: set[str] = set()  # structures whose answer held is cautionary

    def request(self) -> pb.WatchRequest:
        """The request for the next stream: from the last marker, unless an answer held was
        given on data that was stale or could not be verified (then from the start)."""
        request = pb.WatchRequest()
        request.CopyFrom(self._request)
        position = self.position
        if position is not None and position.version and not self._cautionary:
            request.after_version = position.version
            request.after_time.FromDatetime(position.at)
        return request

    def take(self, message: pb.StatusChange) -> StatusChange | None:
        """The change to yield, or None (a marker, or an answer already yielded)."""
        if message.cause == _PROGRESS:
            self.position = WatchPosition(
                message.registry_version, message.at.ToDatetime(tzinfo=UTC)
            )
            return None
        decision = Decision.from_proto(message.decision)
        answer = pb.Decision()
        answer.CopyFrom(message.decision)
        for field in ("registry_version", "decided_at", "decision_id"):
            answer.ClearField(field)
        fingerprint = answer.SerializeToString(deterministic=True)
        sid = message.structure_id
        if self._yielded.get(sid) == fingerprint:
            return None
        self._yielded[sid] = fingerprint
        if any(reason.code in _CAUTIONARY for reason in decision.reasons):
            self._cautionary.add(sid)
        else:
            self._cautionary.discard(sid)
        return StatusChange(
            sid,
            decision,
            _CAUSES.get(message.cause, ChangeCause.RECORD_CHANGED),
            message.registry_version,
            message.at.ToDatetime(tzinfo=UTC),
            self.position,
        )


def backoff(failures: int) -> float:
    """Seconds to wait before reconnecting after ``failures`` failed attempts in a row."""
    return float(min(0.1 * 2 ** max(failures - 1, 0), 5.0))
