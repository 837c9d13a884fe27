"""Where the gate's decision log is stored: the ``DecisionStore`` interface and its SQL table.

A store takes a batch of decided answers and writes every one it can, in one go. It tells two
kinds of failure apart, because they call for opposite handling:

* the store cannot be written now (the database is down, locked, or lacks the table): it
  raises ``StoreUnavailable`` and writes nothing, so the caller keeps the batch and retries;
* the store refuses particular records (PostgreSQL text cannot hold NUL, a decision id already
  stored, a value out of range): it writes the others and returns the refused ones, each with
  the reason, so that one bad record never holds back the records behind it.

``SqlDecisionStore`` writes a batch with one bulk write in one transaction: COPY on PostgreSQL, the
driver's ``executemany`` on SQLite, with the times formatted for the whole batch at once.
Only when that fails on a record does it look for the refused ones, by bisection in a second
transaction, each part under a savepoint: k refused records among n cost about 2k·log2(n) bulk
writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import orjson
from permitgate_client.formats import format_time, parse_time
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from registry.storage import Database, DecisionRow, copy_rows, error_line, table_of

__all__ = ["DecisionRecord", "DecisionStore", "Refused", "SqlDecisionStore", "StoreUnavailable"]


class DecisionRecord(NamedTuple):
    """One answer the gate gave, as stored: who asked, what (as JSON), the answer, on which
    registry version. A plain tuple in the table's column order, so it goes to COPY as it is."""

    decision_id: str
    decided_at: datetime
    caller: str
    check_type: str
    structure_id: str
    request: str  # the check as asked, JSON
    verdict: str
    reasons: str  # the reason codes, a JSON array
    registry_version: int
    notification_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (times in RFC 3339), for files kept beside the store."""
        return {**self._asdict(), "decided_at": format_time(self.decided_at)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DecisionRecord:
        """The record ``to_json`` wrote; ``ValueError`` names the field that does not fit."""
        values: dict[str, Any] = {}
        for name in cls._fields:
            kind = int if name == "registry_version" else str
            value = obj.get(name)
            if not (
                (isinstance(value, kind) and not isinstance(value, bool))
                or (value is None and name == "notification_id")
            ):
                raise ValueError(f"decision record: {name}: {value!r} is not a {kind.__name__}")
            values[name] = value
        values["decided_at"] = parse_time(values["decided_at"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Refused:
    """A record the store will not hold, and the store's reason (one line)."""

    record: DecisionRecord
    reason: str


class StoreUnavailable(Exception):
    """The store cannot be written now; nothing of the batch was written. Retry later."""


class DecisionStore(Protocol):
    """Where decided answers are kept."""

    def write(self, records: Sequence[DecisionRecord]) -> list[Refused]:
        """Store every record the store accepts, at once; return the refused ones.

        Raises ``StoreUnavailable`` when nothing can be written now (then nothing was).
        """
        ...


class SqlDecisionStore:
    """The ``decision_log`` table of the registry database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._table = table_of(DecisionRow)
        if tuple(c.name for c in self._table.columns) != DecisionRecord._fields:
            raise RuntimeError("DecisionRecord's fields must be decision_log's columns, in order")
        dbapi = db.engine.dialect.loaded_dbapi
        # Errors about a row's values; anything else (connection, lock, missing table) is the
        # store's state, not the row's, and keeps the whole batch for a later try.
        self._refusals: tuple[type[BaseException], ...] = (
            dbapi.DataError,
            dbapi.IntegrityError,
            DataError,
            IntegrityError,
            ValueError,
            TypeError,
            OverflowError,
        )
        self._unavailable: tuple[type[BaseException], ...] = (SQLAlchemyError, dbapi.Error)
        names = ", ".join(DecisionRecord._fields)
        marks = ", ".join("?" * (len(DecisionRecord._fields) - 1))
        # notification_id travels as "" for NULL: sqlite3 binds None through its adapter
        # look-up, which costs about as much as binding the rest of the row.
        self._sqlite_statement = (
            f"INSERT INTO {self._table.name} ({names}) VALUES ({marks}, NULLIF(?, ''))"
        )

    def __repr__(self) -> str:
        return f"SqlDecisionStore({self._db!r})"

    def write(self, records: Sequence[DecisionRecord]) -> list[Refused]:
        if not records:
            return []
        try:
            try:
                with self._db.session() as session:
                    self._insert(session, records)
                return []
            except self._refusals as exc:
                if len(records) == 1:
                    return [Refused(records[0], error_line(exc))]
            return self._write_around_refusals(records)
        except self._unavailable as exc:
            raise StoreUnavailable(error_line(exc)) from exc

    def _write_around_refusals(self, records: Sequence[DecisionRecord]) -> list[Refused]:
        """Bisect a batch known to hold a refused record, each part under a savepoint (kept
        off the common path: on SQLite a savepoint makes every write journal twice)."""
        refused: list[Refused] = []
        with self._db.session() as session:
            middle = len(records) // 2
            parts = [records[middle:], records[:middle]]  # the first half next
            while parts:
                part = parts.pop()
                try:
                    with session.begin_nested():
                        self._insert(session, part)
                except self._refusals as exc:
                    if len(part) == 1:
                        refused.append(Refused(part[0], error_line(exc)))
                    else:
                        middle = len(part) // 2
                        parts += [part[middle:], part[:middle]]
        return refused

    def _insert(self, session: Session, records: Sequence[DecisionRecord]) -> None:
        """One bulk write on the session's own connection, inside its transaction."""
        if self._db.dialect == "postgresql":
            copy_rows(session, self._table, records)
            return
        driver = session.connection().connection.driver_connection
        assert driver is not None, "a live session has a driver connection"
        rows = [
            (r[0], time, r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9] or "")
            for r, time in zip(records, sqlite_times([r.decided_at for r in records]), strict=True)
        ]
        driver.executemany(self._sqlite_statement, rows)


def sqlite_times(times: Sequence[datetime]) -> list[str]:
    """Aware times as SQLAlchemy's SQLite DATETIME stores them (naive UTC, to the microsecond).

    One ``orjson`` call formats the whole batch (``2026-01-02T03:04:05.678901Z`` each), and
    string methods over the joined text make it ``2026-01-02 03:04:05.678901``: ``isoformat``
    one time at a time costs ten times as much, more than the rest of the row.
    """
    if not times:
        return []
    utc = [t if t.tzinfo is UTC else _utc(t) for t in times]
    text = orjson.dumps(utc, option=orjson.OPT_UTC_Z).decode()
    formatted = text[2:-3].replace("T", " ").split('Z","')
    # orjson leaves out a zero fraction of a second; SQLAlchemy always writes six digits
    return [t if len(t) == 26 else t + ".000000" for t in formatted]


def _utc(time: datetime) -> datetime:
    if time.tzinfo is None:
        raise ValueError(f"decided_at {time.isoformat()} has no time zone")
    return time.astimezone(UTC)
