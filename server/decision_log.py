"""The decision log: every answer the gate gives, appended to the registry database.

Appending is a list append on the request path; a background task writes the buffer in bulk
every ``interval`` seconds (COPY on PostgreSQL), so logging costs no database round trip per
request. ``close`` writes what is left. A write that fails keeps the rows for the next try.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from registry.storage import Database, DecisionRow, bulk_insert, table_of
from server.periodic import Periodic

__all__ = ["DecisionLog", "LogEntry"]

log = logging.getLogger(__name__)

# decision_id, decided_at, caller, check_type, structure_id, request (JSON), verdict,
# reasons (JSON), registry_version, notification_id: the decision_log columns in order.
LogEntry = tuple[str, datetime, str, str, str, str, str, str, int, str | None]


class DecisionLog:
    def __init__(self, db: Database, *, interval: float = 0.5) -> None:
        self._db = db
        self._buffer: list[LogEntry] = []
        self._flusher = Periodic("decision-log", interval, self.flush)
        self.written = 0

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
            bulk_insert(session, table_of(DecisionRow), rows)

    async def close(self) -> None:
        await self._flusher.close()
        await self.flush()
