"""The decision log: every answer the gate gives, written in batches to a ``DecisionStore``.

Appending is a list append on the request path; a background task turns the buffer into
records and writes them in bulk every ``interval`` seconds, so logging costs no database round
trip and no serialisation per request. What the store does with a batch decides what happens:

* written: done;
* the store is unavailable (``StoreUnavailable``): the batch is kept, as records (each entry is
  converted once, however long the outage), and tried again first, after a pause that doubles
  with each failure in a row from ``interval`` up to ``max_backoff``; the reason is logged once
  (not at every try) and again when writing resumes; while ``limit`` entries wait, the gate
  stops answering (UNAVAILABLE) rather than give answers it cannot log;
* some records refused (NUL in a text column on PostgreSQL, a duplicate decision id): the rest
  is written, and each refused record is set aside: counted, logged once with the store's
  reason, and appended to ``refused.jsonl`` in the state directory, so it never blocks the
  records behind it.

A record is filed under the check's ``subject_id`` (its ``structure_id`` column): the structure
asked about, or for an applicant check (``check_type`` ``applicant``, Art. 22) the party id; the
row's check JSON says which (``structure_id`` or ``party_id``).

At shutdown, whatever the store would still not take is kept in ``unwritten.jsonl`` in the state
directory; the next start writes those records before any new one. Both ends say so in the log.
A process killed outright loses exactly the entries no committed flush holds: those appended
since the last flush that committed began (the README says so, and
``tests/test_decision_log_crash.py`` shows it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from permitgate_client.formats import format_time

from registry.decisions import DecisionRecord, DecisionStore, Refused, StoreUnavailable
from server.periodic import Periodic

if TYPE_CHECKING:
    from server.checks import CheckRequest
    from server.gate import Answer
    from server.rules import Decision

__all__ = [
    "DEFAULT_LIMIT",
    "REFUSED_FILE",
    "UNWRITTEN_FILE",
    "DecisionLog",
    "LogEntry",
    "RecordMaker",
]

log = logging.getLogger(__name__)

LogEntry = tuple["CheckRequest", str, "Answer"]  # what was asked, by whom, the answer

REFUSED_FILE = "refused.jsonl"  # records the store refused: {"refused_at", "reason", "decision"}
UNWRITTEN_FILE = "unwritten.jsonl"  # records left unwritten at shutdown, one per line
DEFAULT_LIMIT = 200_000  # answers waiting to be written beyond which the gate answers UNAVAILABLE


_MEMO_LIMIT = 10_000  # decisions whose columns are kept; beyond it the memo starts afresh


class RecordMaker:
    """Turns entries into records, the one place entries convert.

    The gate shares one ``Decision`` object among every answer it memoised it for, so a
    decision's columns (the verdict's name, the reason codes as JSON) are made once per object
    and looked up by identity: hashing a frozen dataclass costs more than making them again.
    """

    def __init__(self) -> None:
        self._columns: dict[int, tuple[Decision, str, str]] = {}

    def __call__(self, entries: Iterable[LogEntry]) -> list[DecisionRecord]:
        columns = self._columns
        records = []
        for request, caller, answer in entries:
            decision = answer.decision
            memo = columns.get(id(decision))
            if memo is None or memo[0] is not decision:
                if len(columns) >= _MEMO_LIMIT:
                    columns.clear()
                reasons = orjson.dumps([r.code.value for r in decision.reasons]).decode()
                memo = columns[id(decision)] = (decision, decision.verdict.name, reasons)
            records.append(
                DecisionRecord(
                    answer.decision_id,
                    answer.decided_at,
                    caller,
                    request.check_type,
                    request.subject_id,  # the party id for an applicant check
                    orjson.dumps(request.to_json()).decode(),
                    memo[1],
                    memo[2],
                    answer.registry_version,
                    answer.notification_id,
                )
            )
        return records


class DecisionLog:
    def __init__(
        self,
        store: DecisionStore,
        *,
        state_dir: Path,
        interval: float = 0.5,
        max_backoff: float = 8.0,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._store = store
        self.state_dir = state_dir
        self._buffer: list[LogEntry] = []  # appended by requests, not yet converted
        self._unwritten: list[DecisionRecord] = []  # converted, waiting for the store
        self._in_flight = 0  # taken out of both by the flush under way
        self._carried = 0  # of those, how many came from an earlier run's file
        self._limit = limit
        self._flusher = Periodic("decision-log", interval, self._flush_when_due)
        self._lock = asyncio.Lock()
        self._failure: str | None = None  # why the store could not be written, while it cannot
        self._interval = interval
        self._max_backoff = max(max_backoff, interval)
        self.failures = 0  # flushes failed in a row, up to now
        self._next_try = 0.0  # loop time before which the flusher does not try again
        self.written = 0
        self.refused = 0
        self.converted = 0  # entries turned into records, each once
        self._records_of = RecordMaker()

    @property
    def refused_file(self) -> Path:
        return self.state_dir / REFUSED_FILE

    @property
    def unwritten_file(self) -> Path:
        return self.state_dir / UNWRITTEN_FILE

    @property
    def waiting(self) -> int:
        """Entries not yet written."""
        return len(self._buffer) + len(self._unwritten) + self._in_flight

    @property
    def full(self) -> bool:
        """True when so much is unwritten that answering more would risk losing entries."""
        return self.waiting >= self._limit

    def append(self, entry: LogEntry) -> None:
        self._buffer.append(entry)

    def extend(self, entries: Iterable[LogEntry]) -> None:
        """Append a batch's entries at once."""
        self._buffer.extend(entries)

    def start(self) -> None:
        """Take up the records an earlier run left unwritten (written first), then run."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.unwritten_file.exists():
            carried = self._read_unwritten()
            self._unwritten[:0] = carried
            self._carried = len(carried)
            log.warning(
                "decision log: %d answers left unwritten by an earlier run (%s) are written "
                "before any new one",
                len(carried),
                self.unwritten_file,
            )
        self._flusher.start()

    def _read_unwritten(self) -> list[DecisionRecord]:
        records: list[DecisionRecord] = []
        with self.unwritten_file.open("rb") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    records.append(DecisionRecord.from_json(orjson.loads(line)))
                except (ValueError, TypeError, AttributeError) as exc:  # a torn last line
                    log.error(
                        "decision log: %s line %d is not a decision record (%s); skipped",
                        self.unwritten_file,
                        number,
                        exc,
                    )
        return records

    async def _flush_when_due(self) -> None:
        """The flusher's round: skipped while backing off after a failed flush."""
        if asyncio.get_running_loop().time() >= self._next_try:
            await self.flush()

    async def flush(self) -> None:
        """Write what is waiting; one flush at a time."""
        async with self._lock:
            if not self._buffer and not self._unwritten:
                return
            try:
                await self._flush_batch()
            finally:
                self._in_flight = 0

    async def _flush_batch(self) -> None:
        """One attempt: convert what arrived, write it after what was kept; keep what failed."""
        entries, self._buffer = self._buffer, []
        self._in_flight = len(entries)
        try:
            converted = await asyncio.to_thread(self._convert, entries)
        except Exception:
            self._buffer[:0] = entries
            self._in_flight = 0
            self._back_off()
            log.exception("decision log: converting %d answers failed", len(entries))
            return
        # From here on the batch is kept as records: a retry never converts them again.
        records, self._unwritten = self._unwritten + converted, []
        self._in_flight = len(records)
        try:
            refused = await asyncio.to_thread(self._write, records)
        except StoreUnavailable as exc:
            self._unwritten[:0] = records
            self._in_flight = 0
            self._back_off()
            if str(exc) != self._failure:
                log.error(
                    "decision log: cannot write %d answers (%s); keeping them and trying "
                    "again; the gate answers UNAVAILABLE once %d wait",
                    self.waiting,
                    exc,
                    self._limit,
                )
                self._failure = str(exc)
            return
        except Exception:
            self._unwritten[:0] = records
            self._in_flight = 0
            self._back_off()
            log.exception("decision log: writing %d answers failed; keeping them", self.waiting)
            return
        self.failures, self._next_try = 0, 0.0
        self.written += len(records) - len(refused)
        self.refused += len(refused)
        if self._failure is not None:
            log.info("decision log: writing again (after: %s)", self._failure)
            self._failure = None
        if self._carried:
            log.info(
                "decision log: wrote the %d answers kept by an earlier run; removed %s",
                self._carried,
                self.unwritten_file,
            )
            self._carried = 0
            self.unwritten_file.unlink(missing_ok=True)

    def _back_off(self) -> None:
        """After a failed flush: the flusher waits ``interval``, doubling up to ``max_backoff``."""
        delay = min(self._interval * 2**self.failures, self._max_backoff)
        self.failures += 1
        self._next_try = asyncio.get_running_loop().time() + delay

    def _convert(self, entries: list[LogEntry]) -> list[DecisionRecord]:
        """In a worker thread: the stored form of each entry (the one place entries convert)."""
        records = self._records_of(entries)
        self.converted += len(records)
        return records

    def _write(self, records: list[DecisionRecord]) -> list[Refused]:
        """In a worker thread: write, and set aside whatever the store refused."""
        refused = self._store.write(records)
        if refused:
            self._set_aside(refused)
        return refused

    def _set_aside(self, refused: Sequence[Refused]) -> None:
        at = format_time(datetime.now(UTC))
        for item in refused:
            log.error(
                "decision log: the store refused decision %s (%s); set aside in %s",
                item.record.decision_id,
                item.reason,
                self.refused_file,
            )
        lines = [
            orjson.dumps({"refused_at": at, "reason": r.reason, "decision": r.record.to_json()})
            for r in refused
        ]
        try:
            with self.refused_file.open("ab") as out:
                out.write(b"\n".join(lines) + b"\n")
        except OSError as exc:  # the rest is written already: never retry it for this
            log.error("decision log: cannot append to %s (%s): %s", self.refused_file, exc, lines)

    async def close(self) -> None:
        """Write what is left; keep in a file whatever the store would still not take."""
        await self._flusher.close(interrupt=False)
        await self.flush()
        async with self._lock:
            if not self._buffer and not self._unwritten:
                return
            entries, self._buffer = self._buffer, []
            records = self._unwritten + await asyncio.to_thread(self._convert, entries)
            self._unwritten = []
            await asyncio.to_thread(self._save_unwritten, records)
            log.error(
                "decision log: %d answers could not be written (%s); kept in %s, which the "
                "next start writes first",
                len(records),
                self._failure,
                self.unwritten_file,
            )

    def _save_unwritten(self, records: list[DecisionRecord]) -> None:
        """Replace the file at once (a crash leaves the old file or the new one, never half)."""
        partial = self.unwritten_file.with_suffix(".partial")
        with partial.open("wb") as out:
            for record in records:
                out.write(orjson.dumps(record.to_json()) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        partial.replace(self.unwritten_file)
