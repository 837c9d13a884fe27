"""WatchStatus: the answer a check would get for each watched structure, sent again whenever
it changes, so a utility or an office hears of a new case or a lapsed permit without polling.

``WatchHub`` is told of every head the gate installs (it is one of ``RegistryCache.listeners``)
and keeps a clock of its own for what time changes: a permit coming into force or lapsing, a
temporary grant reaching its end, a record passing its ``next_update``, the registry turning
stale or fresh again. Each watch (``_Watch``) keeps the last answer it sent per structure and
sends only answers that differ; decisions are the gate's own (``Gate.decide``), so an answer on
stale or unverifiable data carries ``REGISTRY_STALE`` or ``RECORD_UNVERIFIED`` exactly as a check
would. Nothing is decided in the listener: it queues structure ids, and each watch decides them
at its reader's pace, so a slow reader holds at most ``queue_limit`` ids, and one that falls
further behind is ended with ``ABORTED`` and a message saying where to resume.

After each step (the first answers, a head, a moment that passed) a watch sends a progress
marker: every change up to that registry version and that time has been sent. A caller resumes
from a marker; the gate then sends only the structures whose record changed after that version,
whose answer could have changed by time after that moment, or whose answer is cautionary now.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable, Set
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import grpc
from permitgate_client.v1 import gate_pb2 as pb

from registry.records import StatusRecord, format_time
from registry.statusmap import bucket_of
from registry.vocabulary import ConnectionKind, id_error
from server.checks import (
    CHECK_KINDS,
    MAX_TEXT,
    CheckRequest,
    ConnectionRequest,
    InvalidCheck,
)
from server.gate import Gate
from server.rules import TEMPORARY_CONNECTION_MAX, Decision, ReasonCode
from server.wire import wire_decision

__all__ = [
    "MAX_WATCHED_IDS",
    "MAX_WATCHES",
    "MAX_WIDE_WATCHES",
    "QUEUE_LIMIT",
    "WatchHub",
    "WatchSpec",
    "parse_watch",
]

log = logging.getLogger(__name__)

MAX_WATCHED_IDS: Final = 10_000
"""The most structure ids one watch may name."""
MAX_WATCHES: Final = 256
"""Watches open at once on one gate (each holds a call slot for as long as it runs)."""
MAX_WIDE_WATCHES: Final = 8
"""Of those, watches of a district or of every structure (each may hold an answer per
structure: a million structures are some 100 MB per watch)."""
QUEUE_LIMIT: Final = 20_000
"""Structure ids one watch may have waiting for its reader before it is ended (ABORTED)."""
TICK: Final = 0.5
"""Seconds between looks at the clock (moments passed, staleness)."""

_CHUNK: Final = 512  # ids made answerable (Gate.ensure) at a time
_PLACEHOLDER_ID: Final = "WATCH"  # stands in for the structure while the question is validated

# The causes, as the ints the wire carries.
CURRENT: Final[int] = int(pb.CHANGE_CAUSE_CURRENT)
RECORD_CHANGED: Final[int] = int(pb.CHANGE_CAUSE_RECORD_CHANGED)
TIME_PASSED: Final[int] = int(pb.CHANGE_CAUSE_TIME_PASSED)
REGISTRY_STALE: Final[int] = int(pb.CHANGE_CAUSE_REGISTRY_STALE)
REGISTRY_FRESH: Final[int] = int(pb.CHANGE_CAUSE_REGISTRY_FRESH)
PROGRESS: Final[int] = int(pb.CHANGE_CAUSE_PROGRESS)

_CAUTIONARY: Final = frozenset({ReasonCode.REGISTRY_STALE, ReasonCode.RECORD_UNVERIFIED})

Context = Any  # grpc.aio.ServicerContext: the grpc package ships no type information


# --- The request ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """A validated WatchRequest: the question, the structures, and where to resume."""

    question: CheckRequest
    structure_ids: tuple[str, ...] | None  # None: a district, or every structure
    district: str | None  # None with structure_ids None: every structure
    after_version: int
    after_time: datetime | None

    @property
    def wide(self) -> bool:
        """A district or every structure, rather than named ones."""
        return self.structure_ids is None


def parse_watch(message: pb.WatchRequest, now: datetime) -> WatchSpec:
    """The watch asked for, or ``InvalidCheck`` naming the field at fault."""
    named = len(message.structure_ids)
    chosen = sum((named > 0, bool(message.district), message.all_structures))
    if chosen != 1:
        raise InvalidCheck(
            "structure_ids",
            "set exactly one of structure_ids, district and all_structures"
            + (f" (got {chosen})" if chosen else ""),
        )
    structure_ids: tuple[str, ...] | None = None
    if named:
        if named > MAX_WATCHED_IDS:
            raise InvalidCheck("structure_ids", f"at most {MAX_WATCHED_IDS} per watch, got {named}")
        seen: set[str] = set()
        for index, sid in enumerate(message.structure_ids):
            why = id_error(sid)
            if why is not None:
                raise InvalidCheck(f"structure_ids[{index}]", why)
            if sid in seen:
                raise InvalidCheck(f"structure_ids[{index}]", f"{sid} is named twice")
            seen.add(sid)
        structure_ids = tuple(message.structure_ids)
    district = message.district or None
    if district is not None and (len(district) > MAX_TEXT or district != district.strip()):
        raise InvalidCheck(
            "district", f"at most {MAX_TEXT} characters, with no surrounding white space"
        )
    after_time = None
    if message.HasField("after_time"):
        if not message.after_version:
            raise InvalidCheck("after_time", "only with after_version (the marker's version)")
        try:
            after_time = message.after_time.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError) as exc:
            raise InvalidCheck("after_time", f"not a valid time ({exc})") from exc
    return WatchSpec(
        _question(message, now), structure_ids, district, message.after_version, after_time
    )


def _question(message: pb.WatchRequest, now: datetime) -> CheckRequest:
    which = message.question.WhichOneof("check") if message.HasField("question") else None
    if which is None:
        raise InvalidCheck(
            "question", "required: a connection, registration or premises check to ask"
        )
    kind = CHECK_KINDS.get(which)
    if kind is None:
        raise InvalidCheck(f"question.{which}", "this gate does not watch such checks")
    if kind.whole_registry:
        raise InvalidCheck(
            f"question.{which}",
            "a check about a party, not a structure, cannot be watched: ask CheckApplicant",
        )
    body = kind.message()
    body.CopyFrom(getattr(message.question, which))
    if body.structure_id:
        raise InvalidCheck(
            f"question.{which}.structure_id",
            "leave empty: name the structures in structure_ids, district or all_structures",
        )
    body.structure_id = _PLACEHOLDER_ID
    if which == "premises" and not body.application_id:
        body.application_id = "watch"  # a watch records no notice: no application to name
    body.receipt = False
    try:
        question = kind.from_wire(body, now)
    except InvalidCheck as exc:
        raise InvalidCheck(f"question.{which}.{exc.field}", exc.why) from exc
    if isinstance(question, ConnectionRequest) and question.kind is ConnectionKind.TEMPORARY:
        until = question.requested_until
        latest = now + TEMPORARY_CONNECTION_MAX
        if until is None or until > latest:
            raise InvalidCheck(
                "question.connection.requested_until",
                "a temporary connection watch names the end of the supply, at most 365 days "
                f"ahead (by {format_time(latest)})",
            )
    return question


# --- What changes by time ------------------------------------------------------------------------


def _moments(record: StatusRecord | None, question: CheckRequest) -> list[datetime]:
    """Every moment at which an answer on ``record`` could change by time alone."""
    moments = []
    if isinstance(question, ConnectionRequest) and question.requested_until is not None:
        moments.append(question.requested_until)
    if record is not None:
        moments.append(record.next_update)
        for permit in record.permits:
            moments.append(permit.issued)
            if permit.expires is not None:
                moments.append(permit.expires)
    return moments


def _next_moment(record: StatusRecord | None, question: CheckRequest, now: datetime) -> datetime:
    return min((m for m in _moments(record, question) if m > now), default=_NEVER)


_NEVER: Final = datetime.max.replace(tzinfo=UTC)


def _change(
    structure_id: str, decision: Decision, version: int, at: datetime, cause: int
) -> pb.StatusChange:
    message = pb.StatusChange(
        structure_id=structure_id,
        registry_version=version,
        cause=cause,  # type: ignore[arg-type]
    )
    message.at.FromDatetime(at)
    answer = message.decision
    answer.MergeFrom(wire_decision(decision))
    answer.registry_version = version
    answer.decided_at.CopyFrom(message.at)
    return message


def _marker(version: int, at: datetime) -> pb.StatusChange:
    message = pb.StatusChange(registry_version=version, cause=PROGRESS)  # type: ignore[arg-type]
    message.at.FromDatetime(at)
    return message


# --- One watch -----------------------------------------------------------------------------------


class WatchOverflow(Exception):
    """The reader fell more than ``queue_limit`` structures behind."""


class WatchRefused(Exception):
    """Too many watches open on this gate."""


class WatchUnsupported(Exception):
    """This gate cannot serve such a watch (the message says which gate can)."""


class WatchClosed(Exception):
    """The gate is stopping."""


@dataclass(frozen=True, slots=True)
class _Marker:
    version: int
    at: datetime


class _Watch:
    """One stream's state: the last answer sent per structure, what waits to be decided, and
    the moments at which its answers change by time."""

    def __init__(self, hub: WatchHub, spec: WatchSpec) -> None:
        self.hub = hub
        self.spec = spec
        self.named: frozenset[str] | None = (
            None if spec.structure_ids is None else frozenset(spec.structure_ids)
        )
        self.last: dict[str, Decision] = {}
        self.pending: deque[tuple[str, int] | _Marker] = deque()
        self.waiting = 0  # structure ids in pending
        # Decide the structures watched again: why, and since which version their records may
        # have changed (None: decide every one).
        self.rescan: tuple[int, int | None] | None = None
        self.overflowed = False
        self.moments: list[tuple[datetime, str]] = []
        self.scheduled: dict[str, datetime] = {}
        self.wakeup = asyncio.Event()
        self._by_bucket: dict[int, list[str]] | None = None  # named ids by map bucket, on demand

    # --- told by the hub, on the event loop ---------------------------------------------

    def records_changed(self, structure_ids: Collection[str]) -> None:
        named = self.named
        if named is None:
            self._queue(structure_ids, RECORD_CHANGED)
            return
        if len(structure_ids) <= len(named):
            self._queue([s for s in structure_ids if s in named], RECORD_CHANGED)
        else:
            changed = structure_ids if isinstance(structure_ids, Set) else set(structure_ids)
            self._queue([s for s in named if s in changed], RECORD_CHANGED)

    def buckets_changed(self, buckets: Collection[int]) -> None:
        """Decide again the named structures in these map buckets: a shared cache knows from
        verified data which buckets a new head changed, and which structures in them only from
        the change stream's hints, which may leave one out."""
        if self.named is None:
            return
        if self._by_bucket is None:
            self._by_bucket = {}
            for structure_id in self.named:
                self._by_bucket.setdefault(bucket_of(structure_id), []).append(structure_id)
        by_bucket = self._by_bucket
        self._queue([s for b in buckets for s in by_bucket.get(b, ())], RECORD_CHANGED)

    def rescan_all(self, cause: int, since: int | None = None) -> None:
        """Decide again every structure watched (``since``: those whose record changed after
        that version, and those whose answer is cautionary)."""
        pending = self.rescan
        if pending is not None:
            earlier = pending[1]
            since = None if since is None or earlier is None else min(since, earlier)
            if cause == RECORD_CHANGED:
                cause = pending[0]  # staleness, if pending, is the cause to tell
        self.rescan = (cause, since)
        self.wakeup.set()

    def due(self, now: datetime) -> bool:
        """Queue the structures whose moment has come; True if there were any."""
        moments, scheduled, due = self.moments, self.scheduled, []
        while moments and moments[0][0] <= now:
            moment, sid = heapq.heappop(moments)
            if scheduled.get(sid) == moment:
                del scheduled[sid]
                due.append(sid)
        self._queue(due, TIME_PASSED)
        return bool(due)

    def mark(self, version: int, at: datetime) -> None:
        self.pending.append(_Marker(version, at))
        self.wakeup.set()

    def _queue(self, structure_ids: Iterable[str], cause: int) -> None:
        for sid in structure_ids:
            if self.waiting >= self.hub.queue_limit:
                self.overflowed = True
                self.pending.clear()
                break
            self.pending.append((sid, cause))
            self.waiting += 1
        self.wakeup.set()

    # --- the reader's side ---------------------------------------------------------------

    def decide(
        self, sid: str, now: datetime, cause: int, resume: WatchSpec | None = None
    ) -> pb.StatusChange | None:
        """The structure's answer now, if it is one to send (None: unchanged, or not watched).

        With ``resume``, the answer is only made the one the caller holds, unless the record
        changed after the resume point, time could have changed it since, or it is cautionary.
        """
        gate = self.hub.gate
        decision, status = gate.decide(replace(self.spec.question, structure_id=sid), now)  # type: ignore[type-var]
        record = None if status is None else status.record
        return self._news(sid, decision, record, now, cause, resume)

    def redecide(self, sid: str, now: datetime, cause: int, since: int) -> pb.StatusChange | None:
        """``decide``, if the structure's record changed after version ``since`` (or its
        answer is cautionary, or its record cannot be read now)."""
        cache = self.hub.gate.cache
        status = cache.get(sid)
        if status is not None:
            record = status.record
            assert record is not None  # get() parsed it
            if record.tree_size <= since and not _cautionary(self.last.get(sid)):
                return None
        elif not cache.is_doubtful(sid) and not _cautionary(self.last.get(sid)):
            return None  # not held, before and now
        return self.decide(sid, now, cause)

    def _news(
        self,
        sid: str,
        decision: Decision,
        record: StatusRecord | None,
        now: datetime,
        cause: int,
        resume: WatchSpec | None,
    ) -> pb.StatusChange | None:
        gate = self.hub.gate
        district = self.spec.district
        if district is not None and (record is None or record.structure.district != district):
            return None
        moment = _next_moment(record, self.spec.question, now)
        if moment < self.scheduled.get(sid, _NEVER):
            self.scheduled[sid] = moment
            heapq.heappush(self.moments, (moment, sid))
        if self.last.get(sid) == decision:
            return None
        self.last[sid] = decision
        if self.hub._stale is False and gate.cache.is_stale(now):
            self.hub._answered_stale = True
        if resume is not None and not _changed_since(record, decision, resume, now):
            return None
        return _change(sid, decision, gate.cache.size, now, cause)

    def scope(self) -> list[str]:
        """Every structure watched, as of now."""
        if self.spec.structure_ids is not None:
            return list(self.spec.structure_ids)
        return self.hub.gate.cache.structure_ids()


def _cautionary(decision: Decision | None) -> bool:
    return decision is not None and any(r.code in _CAUTIONARY for r in decision.reasons)


def _changed_since(
    record: StatusRecord | None, decision: Decision, resume: WatchSpec, now: datetime
) -> bool:
    if _cautionary(decision):
        return True
    if record is None:
        return False
    if record.tree_size > resume.after_version:
        return True
    since = resume.after_time
    return since is not None and any(since < m <= now for m in _moments(record, resume.question))


# --- The hub -------------------------------------------------------------------------------------


class WatchHub:
    """Every watch open on one gate; subscribes itself to the gate's cache."""

    def __init__(
        self,
        gate: Gate,
        *,
        max_watches: int = MAX_WATCHES,
        max_wide_watches: int = MAX_WIDE_WATCHES,
        queue_limit: int = QUEUE_LIMIT,
        tick: float = TICK,
    ) -> None:
        self.gate = gate
        self.max_watches = max_watches
        self.max_wide_watches = max_wide_watches
        self.queue_limit = queue_limit
        self.tick = tick
        self._watches: set[_Watch] = set()
        self._stale: bool | None = None
        # An answer was decided on stale data while the hub still held the data fresh (the
        # cosignature aged out between two looks): the next look that finds the data fresh
        # decides every watched structure again, though it saw no flip.
        self._answered_stale = False
        self._version = gate.cache.size  # the registry version last told of
        self._doubtful: Set[str] = gate.cache.doubtful  # as last seen
        self._checked_at = gate.clock()  # moments up to here have been queued
        self._clock: asyncio.Task[None] | None = None
        self._closing = False
        gate.cache.listeners.append(self.changed)

    def __len__(self) -> int:
        return len(self._watches)

    def close(self) -> None:
        """End every watch (UNAVAILABLE, the caller resumes elsewhere or later) and take no
        more: a gate that is stopping must not wait for streams that never end."""
        self._closing = True
        for watch in self._watches:
            watch.wakeup.set()

    def changed(self, version: int, structure_ids: Collection[str] | None) -> None:
        """The cache's listener: a head was installed, ``structure_ids`` changed (None: any)."""
        before, self._version = self._version, version
        doubtful, seen = self.gate.cache.doubtful, self._doubtful
        # Structures whose record could be verified and now cannot (the database altered under
        # the gate, say), or the other way round: their answers change with no new head.
        unsure = () if doubtful is seen or doubtful == seen else doubtful ^ seen
        self._doubtful = doubtful
        if not self._watches:
            return
        flip = self._staleness_flip(self.gate.clock())
        if flip is None and version == before and structure_ids is None and not unsure:
            return  # the same head again (the embedded follower installs each poll whole)
        since = None if version < before else before
        for watch in self._watches:
            told = 0 if structure_ids is None else len(structure_ids)
            if watch.named is None and watch.waiting + told + len(unsure) > self.queue_limit // 2:
                # Too many to queue one by one (a wide watch's queue could overflow): scanned
                # in chunks instead, deciding those changed since ``before``, the cautionary
                # answers and the doubtful structures again.
                if flip is not None:
                    watch.rescan_all(flip)
                else:
                    watch.rescan_all(RECORD_CHANGED, since)
            else:
                if flip is not None:
                    watch.rescan_all(flip)
                elif structure_ids is None:
                    if version != before:
                        watch.rescan_all(RECORD_CHANGED, since)
                elif (buckets := self.gate.cache.changed_buckets) and watch.named is not None:
                    # Every named structure in a changed bucket: those told, and whatever the
                    # change stream's hints left out.
                    watch.buckets_changed(buckets)
                else:
                    watch.records_changed(structure_ids)
                if unsure:
                    watch.records_changed(unsure)
            watch.mark(version, self._checked_at)

    def look_at_the_clock(self) -> None:
        """Queue what time changed: moments passed, the registry turning stale or fresh."""
        now = self.gate.clock()
        flip = self._staleness_flip(now)
        version = self.gate.cache.size
        for watch in self._watches:
            if flip is not None:
                watch.rescan_all(flip)
                watch.due(now)
                watch.mark(version, now)
            elif watch.due(now):
                watch.mark(version, now)
        self._checked_at = now

    def _staleness_flip(self, now: datetime) -> int | None:
        stale = self.gate.cache.is_stale(now)
        before, self._stale = self._stale, stale
        answered_stale, self._answered_stale = self._answered_stale, False
        if before is None:
            return None
        if before != stale:
            return REGISTRY_STALE if stale else REGISTRY_FRESH
        return REGISTRY_FRESH if answered_stale and not stale else None

    async def _keep_time(self) -> None:
        while self._watches:
            await asyncio.sleep(self.tick)
            try:
                self.look_at_the_clock()
            except Exception:  # the clock must keep going for the other watches
                log.exception("watch: looking at the clock failed")

    async def changes(self, spec: WatchSpec) -> AsyncIterator[pb.StatusChange]:
        """The stream of one watch: the first answers, a marker, then each change and marker.

        Raises ``WatchUnsupported`` for a district or every structure on a gate over the
        shared cache, ``WatchRefused`` when too many watches are open, ``WatchOverflow`` when the
        reader falls too far behind, ``WatchClosed`` when the gate stops.
        """
        if self._closing:
            raise WatchClosed("this gate is stopping")
        if spec.wide and not self.gate.cache.holds_every_record:
            raise WatchUnsupported(
                "a gate over the shared Redis cache holds only the structures asked of it: "
                "watch named structures here (structure_ids), or a district or every structure "
                "on a gate without --redis, which holds every record"
            )
        if len(self._watches) >= self.max_watches:
            raise WatchRefused(f"this gate serves at most {self.max_watches} watches at once")
        if spec.wide and sum(w.spec.wide for w in self._watches) >= self.max_wide_watches:
            raise WatchRefused(
                f"this gate serves at most {self.max_wide_watches} watches of a district or "
                "of every structure at once"
            )
        watch = _Watch(self, spec)
        if not self._watches:  # nothing waits for a moment: begin the clock's count now
            self._checked_at = self.gate.clock()
            self._stale = self.gate.cache.is_stale(self._checked_at)
            self._answered_stale = False
        self._watches.add(watch)
        if self._clock is None or self._clock.done():
            self._clock = asyncio.get_running_loop().create_task(self._keep_time())
        try:
            started = self.gate.clock()  # each structure is decided at this time or later
            version = self.gate.cache.size
            resume = spec if spec.after_version else None
            async for change in self._scan(watch, CURRENT, resume):
                yield change
            yield _marker(version, started)
            while True:
                if self._closing:
                    raise WatchClosed(
                        "this gate is stopping: resume from the last progress marker received"
                    )
                if watch.overflowed:
                    raise WatchOverflow(
                        f"this watch fell more than {self.queue_limit} structures behind its "
                        "reader and was ended: resume from the last progress marker received "
                        "(after_version, after_time)"
                    )
                if watch.rescan is not None:
                    (cause, since), watch.rescan = watch.rescan, None
                    async for change in self._rescan(watch, cause, since):
                        yield change
                    continue
                if not watch.pending:
                    watch.wakeup.clear()
                    await watch.wakeup.wait()
                    continue
                entry = watch.pending.popleft()
                if isinstance(entry, _Marker):
                    yield _marker(entry.version, entry.at)
                    continue
                batch = [entry]
                while len(batch) < _CHUNK and watch.pending:
                    if isinstance(watch.pending[0], _Marker):
                        break
                    batch.append(watch.pending.popleft())  # type: ignore[arg-type]
                watch.waiting -= len(batch)
                await self.gate.ensure([sid for sid, _ in batch])
                for sid, cause in batch:
                    news = watch.decide(sid, self.gate.clock(), cause)
                    if news is not None:
                        yield news
        finally:
            self._watches.discard(watch)

    async def _rescan(
        self, watch: _Watch, cause: int, since: int | None
    ) -> AsyncIterator[pb.StatusChange]:
        if since is None:
            async for change in self._scan(watch, cause, None):
                yield change
            return
        structure_ids = watch.scope()
        for start in range(0, len(structure_ids), _CHUNK):
            chunk = structure_ids[start : start + _CHUNK]
            await self.gate.ensure(chunk)
            for sid in chunk:
                news = watch.redecide(sid, self.gate.clock(), cause, since)
                if news is not None:
                    yield news
            await asyncio.sleep(0)  # a long scan must not hold the loop

    async def _scan(
        self, watch: _Watch, cause: int, resume: WatchSpec | None
    ) -> AsyncIterator[pb.StatusChange]:
        structure_ids = watch.scope()
        for start in range(0, len(structure_ids), _CHUNK):
            chunk = structure_ids[start : start + _CHUNK]
            await self.gate.ensure(chunk)
            for sid in chunk:
                change = watch.decide(sid, self.gate.clock(), cause, resume)
                if change is not None:
                    yield change
            await asyncio.sleep(0)  # a long scan must not hold the loop

    # --- the gRPC method -----------------------------------------------------------------

    async def watch_status(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.StatusChange]:
        """``permitgate.v1.PermitGate/WatchStatus``."""
        try:
            spec = parse_watch(request, self.gate.clock())
        except InvalidCheck as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            async for change in self.changes(spec):
                yield change
        except WatchRefused as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except WatchUnsupported as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except WatchOverflow as exc:
            await _abort(context, grpc.StatusCode.ABORTED, str(exc))
        except WatchClosed as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))


async def _abort(context: Context, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)  # raises
    raise AssertionError("context.abort returned")  # pragma: no cover
