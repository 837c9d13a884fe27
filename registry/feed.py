"""The registry as a gate reads it: the ``RegistryFeed`` protocol and its SQL implementation.

A gate needs a few reads that must agree with each other, so they happen inside one snapshot
(``with feed.snapshot() as view``) that sees a single state of the registry:

* ``view.checkpoint_note()``: the newest registry head (a signed checkpoint with its status map
  line) with its newest cosignature line, or None before ``init``;
* ``view.status_records(above=..., next_update_after=...)``: ``(structure id, DSSE envelope)``
  of the status records showing a tree size above ``above`` or a ``next_update`` later than
  ``next_update_after`` (re-signed in place by a refresh): what changed since the gate's last
  look. With neither given, every record (a full load);
* ``view.newest_next_update()``: the latest ``next_update`` among the records, which the gate
  passes as ``next_update_after`` at its next look;
* ``view.status_records_of(ids)``: the records of those structures (the gate reads again the
  few it could not verify);
* ``view.consistency_proof(old_size, new_size)``: the RFC 9162 proof that the log at
  ``new_size`` extends the log at ``old_size``;
* for a gate that holds only the status map's top (``registry.statusmap.MapTop``) and proves
  records a bucket at a time: ``view.bucket_records(index)``, every record of one map bucket;
  ``view.map_top()``, the top computed from every record (a full read: the fallback when no
  faster source of a top is at hand); ``view.frontier(size)``, the log's compact tree state
  stored with a head of that size.

Nothing a feed returns is believed as read. Heads are verified against the registry key, a
consistency proof against the two heads' roots, and records by their SHA-256 against the status
map a verified head signs (``server/verifier.py``). Which rows a feed picks for
``status_records`` is a hint: a feed that leaves a changed record out is found out when the map
root does not match, and the gate then reads every record. So a feed can withhold data (the gate
then turns stale) but cannot make the gate believe anything the registry did not sign.

A feed that cannot be read raises ``FeedError`` whose message says why in one line;
``feed.interrupt()``, from any thread, makes the reads under way raise it at once (a gate
stopping while a read waits on a lock). Records stream: a view is only valid inside its
``with`` block. ``SqlFeed`` reads the registry's own database; a Redis feed and the registry
service are further implementations of the same protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Protocol

from permitgate_client._proofs import MAP_EMPTY, map_key
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from registry.merkle import CompactTree, consistency_proof, leaf_hash
from registry.statusmap import BUCKETS, BucketItem, MapTop, bucket_item
from registry.storage import Database, EventRow, HeadRow, StatusRow, error_line, id_in

__all__ = ["FeedError", "FeedView", "RegistryFeed", "SqlFeed"]

_IDS_PER_QUERY = 5000
_ROWS_PER_FETCH = 5000


class FeedError(Exception):
    """The registry could not be read; the message says why, in one line."""


class FeedView(Protocol):
    """One consistent state of the registry, readable only inside its ``with`` block."""

    def checkpoint_note(self) -> bytes | None:
        """The newest head with its newest cosignature line, or None when there is none."""
        ...

    def status_records(
        self, *, above: int | None = None, next_update_after: datetime | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """``(structure id, envelope)`` of the records signed at a tree size above ``above`` or
        (when given) with a ``next_update`` later than ``next_update_after``; with ``above``
        None, every record."""
        ...

    def newest_next_update(self) -> datetime | None:
        """The latest ``next_update`` of any record (None when there is none)."""
        ...

    def status_records_of(self, ids: Collection[str]) -> Iterator[tuple[str, bytes]]:
        """``(structure id, envelope)`` of the records of ``ids`` that exist."""
        ...

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof from the log at ``old_size`` to ``new_size``."""
        ...

    def bucket_records(self, index: int) -> list[tuple[str, bytes]]:
        """``(structure id, envelope)`` of every record in status map bucket ``index``."""
        ...

    def map_top(self) -> bytes:
        """The status map's top over every record (``StatusMap.top_bytes``), unverified."""
        ...

    def frontier(self, size: int) -> bytes | None:
        """The log's compact tree state stored with a head of ``size`` (None: none stored)."""
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
    def __init__(self, session: Session, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    def checkpoint_note(self) -> bytes | None:
        head = self._session.scalars(
            select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)
        ).first()
        return None if head is None else head.cosigned_note()

    def status_records(
        self, *, above: int | None = None, next_update_after: datetime | None = None
    ) -> Iterator[tuple[str, bytes]]:
        if above is None:
            yield from self._every_record()
            return
        changed = StatusRow.tree_size > above
        if next_update_after is not None:
            changed = or_(changed, StatusRow.next_update > next_update_after)
        rows = self._session.execute(
            select(StatusRow.structure_id, StatusRow.envelope).where(changed),
            execution_options={"yield_per": 5000},
        )
        for structure_id, envelope in rows:
            yield structure_id, bytes(envelope)

    def _every_record(self) -> Iterator[tuple[str, bytes]]:
        """Every record, through the driver's own cursor (a server-side one on PostgreSQL):
        a million rows come twice as fast as through SQLAlchemy's result rows."""
        connection = self._session.connection()
        driver_error = connection.dialect.loaded_dbapi.Error
        dbapi = connection.connection
        try:
            if self._dialect == "postgresql":
                cursor = dbapi.driver_connection.cursor(name="permitgate_feed_records")  # type: ignore[union-attr]
            else:
                cursor = dbapi.cursor()
            try:
                cursor.execute("SELECT structure_id, envelope FROM status_record")
                while rows := cursor.fetchmany(_ROWS_PER_FETCH):
                    for structure_id, envelope in rows:
                        yield structure_id, bytes(envelope)
            finally:
                cursor.close()
        except driver_error as exc:  # SQLAlchemy is not there to wrap the driver's errors
            raise FeedError(f"cannot read the registry database: {error_line(exc)}") from exc

    def newest_next_update(self) -> datetime | None:
        return self._session.scalar(select(func.max(StatusRow.next_update)))

    def status_records_of(self, ids: Collection[str]) -> Iterator[tuple[str, bytes]]:
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            rows = self._session.execute(
                select(StatusRow.structure_id, StatusRow.envelope).where(
                    id_in(StatusRow.structure_id, chunk, self._dialect)
                )
            )
            for structure_id, envelope in rows:
                yield structure_id, bytes(envelope)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """From the frontier stored with a head of ``old_size`` (or, when none is stored or it
        does not give that head's root, rebuilt from the events before it) and the events in
        ``[old_size, new_size)``."""
        if old_size < 0 or new_size < old_size:
            raise FeedError(f"no consistency proof from tree size {old_size} to {new_size}")
        if old_size == 0 or old_size == new_size:
            return []
        old = self._frontier(old_size)
        return consistency_proof(old, self._leaves(old_size, new_size))

    def bucket_records(self, index: int) -> list[tuple[str, bytes]]:
        rows = self._session.execute(
            select(StatusRow.structure_id, StatusRow.envelope).where(StatusRow.map_bucket == index)
        )
        return [(structure_id, bytes(envelope)) for structure_id, envelope in rows]

    def map_top(self) -> bytes:
        """Bucket by bucket, in bucket order, so that only one bucket's entries are in memory."""
        items: list[BucketItem] = [(0, MAP_EMPTY)] * BUCKETS
        current: int | None = None
        entries: list[tuple[bytes, bytes]] = []

        def close() -> None:
            if current is not None:
                entries.sort()
                try:
                    items[current] = bucket_item(b"".join(k + v for k, v in entries), current)
                except ValueError as exc:  # a row filed under another bucket than its id's
                    raise FeedError(f"the status records do not make a status map: {exc}") from exc

        rows = self._session.execute(
            select(StatusRow.map_bucket, StatusRow.structure_id, StatusRow.envelope).order_by(
                StatusRow.map_bucket
            ),
            execution_options={"yield_per": _ROWS_PER_FETCH},
        )
        for bucket, structure_id, envelope in rows:
            if bucket != current:
                close()
                current, entries = bucket, []
            entries.append((map_key(structure_id), hashlib.sha256(envelope).digest()))
        close()
        return MapTop(items).to_bytes()

    def frontier(self, size: int) -> bytes | None:
        return self._session.scalar(
            select(HeadRow.tree_state)
            .where(HeadRow.size == size)
            .order_by(HeadRow.serial.desc())
            .limit(1)
        )

    def _frontier(self, size: int) -> CompactTree:
        row = self._session.execute(
            select(HeadRow.tree_state, HeadRow.root_hash)
            .where(HeadRow.size == size)
            .order_by(HeadRow.serial.desc())
            .limit(1)
        ).first()
        if row is not None:
            try:
                tree = CompactTree.from_state(size, bytes(row.tree_state))
            except ValueError:
                pass  # a damaged row: rebuild below
            else:
                if tree.root() == bytes(row.root_hash):
                    return tree
        tree = CompactTree()
        for leaf in self._leaves(0, size):
            tree.append(leaf)
        return tree

    def _leaves(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of the events ``[start, end)``; ``FeedError`` when one is missing."""
        rows = self._session.execute(
            select(EventRow.seq, EventRow.body)
            .where(EventRow.seq >= start, EventRow.seq < end)
            .order_by(EventRow.seq),
            execution_options={"yield_per": 5000},
        )
        leaves: list[bytes] = []
        for seq, body in rows:
            if seq != start + len(leaves):
                break
            leaves.append(leaf_hash(bytes(body)))
        if len(leaves) != end - start:
            raise FeedError(
                f"the log lacks event {start + len(leaves)}: no consistency proof from tree "
                f"size {start} to {end}"
            )
        return leaves


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
                    yield _SqlView(session, self._db.dialect)
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
