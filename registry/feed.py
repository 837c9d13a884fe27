"""The registry as a gate reads it: the ``RegistryFeed`` interface and its SQL implementation.

A gate needs three reads, and they must agree with each other, so they happen inside one
snapshot (``with feed.snapshot() as view``) that sees a single state of the registry:

* ``view.checkpoint_note()``: the newest signed checkpoint note, or None before ``init``;
* ``view.status_records(above=..., next_update_after=...)``: the status records showing a tree
  size above what the gate holds, and those re-signed in place (``registry refresh``) with a
  ``next_update`` later than the newest it holds, as ``(structure id, DSSE envelope)``;
* ``view.last_events(since=..., before=...)``: for each structure the log changed in
  ``[since, before)``, the index of its last event there, so that a withheld or swapped record
  shows.

Checkpoints and status records come as bytes, exactly as signed: the gate verifies every byte
against the registry's key (``server/cache.py``), so for them a feed proves nothing and is
trusted for nothing. ``last_events`` is the exception: its (structure, index) pairs come from
the log's unsigned columns and are believed as read, so a feed that lies there can hide a
structure's latest change from the gate. Checking them against the checkpoint's Merkle root is
the next step of the trust design.

A feed that cannot be read raises ``FeedError`` whose message says why in one line;
``feed.interrupt()``, from any thread, makes the reads under way raise it at once (a gate
stopping while a read waits on a lock). Records and events stream: a view is only valid inside
its ``with`` block. ``SqlFeed`` reads the registry's own database; a Redis feed and a registry
service are the next implementations of the same protocol.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from registry.storage import Database, EventRow, HeadRow, StatusRow, error_line

__all__ = ["FeedError", "FeedView", "RegistryFeed", "SqlFeed"]


class FeedError(Exception):
    """The registry could not be read; the message says why, in one line."""


class FeedView(Protocol):
    """One consistent state of the registry, readable only inside its ``with`` block."""

    def checkpoint_note(self) -> bytes | None:
        """The newest signed checkpoint note, or None when the registry has none."""
        ...

    def status_records(
        self, *, above: int, next_update_after: datetime | None
    ) -> Iterator[tuple[str, bytes]]:
        """``(structure id, envelope)`` of the records signed at a tree size above ``above``,
        or (when given) re-signed with a ``next_update`` later than ``next_update_after``."""
        ...

    def last_events(self, *, since: int, before: int) -> Iterator[tuple[str, int]]:
        """``(structure id, index of its last event)`` for the log entries in [since, before)."""
        ...


class RegistryFeed(Protocol):
    """Where a gate reads the registry from."""

    def snapshot(self) -> AbstractContextManager[FeedView]:
        """A view of one consistent state; raises ``FeedError`` when the registry is unreadable."""
        ...

    def interrupt(self) -> None:
        """From any thread: stop the reads under way now (they raise ``FeedError``), so that a
        gate stopping during a read that waits on the database does not wait with it."""
        ...

    def close(self) -> None:
        """Release connections; the feed is not used afterwards."""
        ...


class _SqlView:
    def __init__(self, session: Session) -> None:
        self._session = session

    def checkpoint_note(self) -> bytes | None:
        head = self._session.scalars(
            select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)
        ).first()
        return None if head is None else head.cosigned_note()

    def status_records(
        self, *, above: int, next_update_after: datetime | None
    ) -> Iterator[tuple[str, bytes]]:
        changed = StatusRow.tree_size > above
        if next_update_after is not None:
            changed = or_(changed, StatusRow.next_update > next_update_after)
        rows = self._session.execute(
            select(StatusRow.structure_id, StatusRow.envelope).where(changed),
            execution_options={"yield_per": 5000},
        )
        yield from rows

    def last_events(self, *, since: int, before: int) -> Iterator[tuple[str, int]]:
        rows = self._session.execute(
            select(EventRow.structure_id, func.max(EventRow.seq))
            .where(EventRow.seq >= since, EventRow.seq < before)
            .group_by(EventRow.structure_id)
        )
        yield from rows


class SqlFeed:
    """The feed over the registry's database (SQLite or PostgreSQL), in one snapshot per read:
    a REPEATABLE READ transaction on PostgreSQL, a read transaction on SQLite."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._reading: set[Any] = set()  # driver connections of the snapshots open now
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return repr(self._db)

    @contextmanager
    def snapshot(self) -> Iterator[FeedView]:
        try:
            with self._db.snapshot() as session:
                driver = session.connection().connection.driver_connection
                with self._lock:
                    self._reading.add(driver)
                try:
                    yield _SqlView(session)
                finally:
                    with self._lock:
                        self._reading.discard(driver)
        except SQLAlchemyError as exc:
            raise FeedError(f"cannot read the registry database: {error_line(exc)}") from exc

    def interrupt(self) -> None:
        """Cancel the statement each open snapshot runs: psycopg asks the server to cancel it,
        SQLite interrupts it. Best effort: a statement that ends meanwhile is not affected."""
        with self._lock:
            drivers = list(self._reading)
        for driver in drivers:
            cancel = getattr(driver, "cancel_safe", None) or getattr(driver, "interrupt", None)
            if cancel is not None:
                with contextlib.suppress(Exception):  # the connection may be gone already
                    cancel()

    def close(self) -> None:
        """Nothing to release: the ``Database`` belongs to whoever made it."""
