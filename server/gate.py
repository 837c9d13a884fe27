"""The gate's job, apart from any transport: answer one typed check from the verified cache.

``Gate.answer`` looks the structure up (a dictionary read), decides by the request's own rule
(``CheckRequest.decide``: every kind of check is one unit in ``server.checks``, so the gate names
none of them), records a notification for the working group when the verdict is NOTIFY, signs a
receipt when asked (one Ed25519 signature), and appends the answer to the decision log. It never
fails open: a head whose cosignature is older than the staleness bound (or one known to be
superseded), or a status record past its ``next_update``, makes the rules add ``REGISTRY_STALE``
(REVIEW at best), and a structure whose current record cannot be verified answers REVIEW with
``RECORD_UNVERIFIED``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any

from permitgate_client.formats import Receipt

from registry.notifications import NotificationNotRecorded, NotificationStore
from registry.records import StatusRecord
from server.cache import CachedStatus, RegistryCache
from server.checks import CheckRequest, MemoKey
from server.decision_log import DecisionLog, LogEntry
from server.receipts import ReceiptSigner
from server.rules import Decision, Reason, Verdict, decide_unverified

__all__ = ["Answer", "Gate", "GateUnavailable", "reason_json"]


class GateUnavailable(Exception):
    """The gate cannot answer right now without breaking a promise; the caller may retry."""


log = logging.getLogger(__name__)

_MEMO_LIMIT = 200_000
_NOTICE_LIMIT = 100_000
_FOREVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Memo:
    """A decision, and what it holds for: the same status object, staleness, and time before."""

    status: CachedStatus
    stale: bool
    valid_before: datetime
    decision: Decision


def _next_change(record: StatusRecord | None, now: datetime) -> datetime:
    """The first moment after ``now`` at which a rule over ``record`` could answer otherwise."""
    if record is None:
        return _FOREVER
    moments = [record.next_update]
    for permit in record.permits:
        if permit.issued > now:
            moments.append(permit.issued)
        if permit.expires is not None and permit.expires > now:
            moments.append(permit.expires)
    return min(moments)


_Basis = tuple[Decision, "CachedStatus | None", int, bytes]
"""What an answer rests on, read together before anything is awaited: the decision, the status
it was decided on, the registry version and the checkpoint note (version 0 and no note before
any data is loaded)."""


@dataclass(slots=True)
class Answer:
    """One answer as given; never changed once made (not frozen: a frozen dataclass's
    ``__init__`` costs ten times as much, and one is made per check)."""

    decision: Decision
    decision_id: str
    decided_at: datetime
    registry_version: int
    notification_id: str | None
    receipt: bytes | None


def reason_json(reason: Reason) -> dict[str, Any]:
    return {
        "code": reason.code.value,
        "article": reason.article,
        "permit_kind": None if reason.permit_kind is None else reason.permit_kind.value,
        "case_id": reason.case_id,
        "message": reason.message,
    }


class Gate:
    def __init__(
        self,
        *,
        notifications: NotificationStore,
        cache: RegistryCache,
        receipts: ReceiptSigner,
        decision_log: DecisionLog,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.notifications = notifications
        self.cache = cache
        self.receipts = receipts
        self.decision_log = decision_log
        self.clock = clock
        self._ids = count(1)
        self._id_prefix = f"D-{secrets.token_hex(6)}-"
        self._notices: dict[tuple[str, str, str], str] = {}
        self._memo: dict[MemoKey, _Memo] = {}

    async def ensure(self, structure_ids: Collection[str]) -> None:
        """Make the records of ``structure_ids`` answerable from memory before deciding on them.

        The embedded gate holds every verified record, so nothing is to be done; a gate over a
        shared cache fetches and verifies the ones its bounded cache lacks.
        """
        await self.cache.ensure(structure_ids)

    def decide(self, request: CheckRequest, now: datetime) -> tuple[Decision, CachedStatus | None]:
        """The rules' decision, and the cached status it rests on (None if unknown).

        Decisions are memoised per structure and question: a hit needs the same status record
        object, the same staleness, and ``now`` before the next moment the answer could change
        (a permit coming into force or expiring, the record's ``next_update``).
        """
        cache = self.cache
        if cache.is_doubtful(request.structure_id):
            # Not decided on any record: none held is known to be current.
            return decide_unverified(request.article), None
        status = cache.get(request.structure_id)  # parses the record on first use
        if status is None:
            if cache.is_doubtful(request.structure_id):  # its record could not be read now
                return decide_unverified(request.article), None
            # Not held: no memo, the rules answer at once.
            return request.decide(None, now, cache.is_stale(now)), None
        record = status.record
        assert record is not None  # get() parsed it
        stale = cache.is_stale(now) or record.next_update <= now
        key = request.memo_key
        if key is not None:
            hit = self._memo.get(key)
            if (
                hit is not None
                and hit.status is status
                and hit.stale is stale
                and now < hit.valid_before
            ):
                return hit.decision, status
        decision = request.decide(record, now, stale)
        if key is not None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = _Memo(status, stale, _next_change(record, now), decision)
        return decision, status

    def answer_at(self, request: CheckRequest, now: datetime) -> Answer | None:
        """The answer at ``now``, not yet logged (``log`` it), or None when the verdict is
        NOTIFY: a notification must be recorded first, which ``answer`` awaits.

        The request path of every check that does not notify: no coroutine, no thread hop.
        """
        basis = self._basis(request, now)
        if basis[0].verdict is Verdict.NOTIFY:
            return None
        return self._answer(request, now, basis, None)

    async def answer(self, request: CheckRequest, *, caller: str) -> Answer:
        """The answer, logged; a NOTIFY verdict's notification recorded first."""
        now = self.clock()
        basis = self._basis(request, now)
        notification_id = None
        if basis[0].verdict is Verdict.NOTIFY:
            notification_id = await self._notify(request, basis[0], now)
        answer = self._answer(request, now, basis, notification_id)
        self.decision_log.append((request, caller, answer))
        return answer

    def answer_now(self, request: CheckRequest, *, caller: str, now: datetime) -> Answer | None:
        """``answer_at``, logged."""
        answer = self.answer_at(request, now)
        if answer is not None:
            self.decision_log.append((request, caller, answer))
        return answer

    def log(self, entries: list[LogEntry]) -> None:
        """Log answers given by ``answer_at``, a batch's at once."""
        self.decision_log.extend(entries)

    def _basis(self, request: CheckRequest, now: datetime) -> _Basis:
        if self.decision_log.full:
            raise GateUnavailable("the decision log cannot be written; try again later")
        head = self.cache.head
        if head is None:
            if request.receipt:
                raise GateUnavailable(
                    "no registry data is loaded yet: a receipt would prove nothing"
                )
            return (*self.decide(request, now), 0, b"")
        return (*self.decide(request, now), head.checkpoint.size, head.note)

    def _answer(
        self, request: CheckRequest, now: datetime, basis: _Basis, notification_id: str | None
    ) -> Answer:
        decision, status, version, note = basis
        decision_id = f"{self._id_prefix}{next(self._ids)}"
        receipt = None
        if request.receipt:
            record = None if status is None else status.record
            receipt = self.receipts.sign(
                Receipt(
                    decision_id=decision_id,
                    decided_at=now,
                    check=request.to_json(),
                    verdict=decision.verdict.name,
                    reasons=tuple(reason_json(r) for r in decision.reasons),
                    valid_until=decision.valid_until,
                    notification_id=notification_id,
                    checkpoint_note=note,
                    status_record_sha256=None if status is None else status.digest.hex(),
                    status_record_tree_size=None if record is None else record.tree_size,
                )
            )
        return Answer(decision, decision_id, now, version, notification_id, receipt)

    async def _notify(self, request: CheckRequest, decision: Decision, now: datetime) -> str:
        # Only a notifying office's premises check answers NOTIFY, and it always carries an
        # application id (checks.py refuses one without): one notice per office, application
        # and structure.
        office_name = request.notifying_office
        key = (office_name, request.application_id, request.structure_id)
        if key in self._notices:
            return self._notices[key]
        try:
            notice = await asyncio.to_thread(
                self.notifications.record,
                structure_id=request.structure_id,
                office=office_name,
                application_id=request.application_id,
                reasons=[reason_json(r) for r in decision.reasons],
                at=now,
            )
        except NotificationNotRecorded as exc:
            log.error("notification for %s could not be recorded: %s", request.structure_id, exc)
            raise GateUnavailable(
                "the notification to the working group could not be recorded; try again"
            ) from exc
        if len(self._notices) >= _NOTICE_LIMIT:
            self._notices.clear()
        self._notices[key] = notice
        return notice
