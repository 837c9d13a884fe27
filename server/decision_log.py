"""The decision log: every answer the gate gives, appended to the registry database.

Appending is a list append on the request path; a background task turns the buffer into rows
and writes them in bulk every ``interval`` seconds (COPY on PostgreSQL), so logging costs no
database round trip and no serialisation per request. ``close`` writes what is left. A write
that fails keeps the entries for the next try; while ``limit`` entries wait unwritten, the gate
stops answering (UNAVAILABLE) rather than give answers it could not log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from registry.storage import Database, DecisionRow, bulk_insert, table_of
from server.periodic import Periodic

if TYPE_CHECKING:
    from server.checks import CheckRequest
    from server.gate import Answer

__all__ = ["DecisionLog", "LogEntry", "row_of"]

log = logging.getLogger(__name__)

LogEntry = tuple["CheckRequest", str, "Answer"]  # what was asked, by whom, the answer


def row_of(entry: LogEntry) -> tuple[Any, ...]:
    """The decision_log row (columns in order) for one entry."""
    request, caller, answer = entry
    return (
        answer.decision_id,
        answer.decided_at,
        caller,
        request.check_type,
        request.structure_id,
        orjson.dumps(request.to_json()).decode(),
        answer.decision.verdict.name,
        orjson.dumps([r.code.value for r in answer.decision.reasons]).decode(),
        answer.registry_version,
        answer.notification_id,
    )


class DecisionLog:
    def __init__(self, db: Database, *, interval: float = 0.5, limit: int = 200_000) -> None:
        self._db = db
        self._buffer: list[LogEntry] = []
        self._limit = limit
        self._flusher = Periodic("decision-log", interval, self.flush)
        self.written = 0

    @property
    def full(self) -> bool:
        """True when so much is unwritten that answering more would risk losing entries."""
        return len(self._buffer) >= self._limit

    def append(self, entry: LogEntry) -> None:
        self._buffer.append(entry)

    def start(self) -> None:
        self._flusher.start()

    async def flush(self) -> None:
        if not self._buffer:
            return
        rows, self._buffer = self._buffer, []
        try:
            await asyncio.to_thread(self._write, rows)
        except Exception:
            log.exception("decision log: writing %d rows failed; keeping them", len(rows))
            self._buffer[:0] = rows
        else:
            self.written += len(rows)

    def _write(self, rows: list[LogEntry]) -> None:
        with self._db.session() as session:
            bulk_insert(session, table_of(DecisionRow), [row_of(entry) for entry in rows])

    async def close(self) -> None:
        await self._flusher.close()
        await self.flush()
