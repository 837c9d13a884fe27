"""Signed status records: one DSSE envelope per structure, re-signed whenever it changes.

A status record is what a cache holds and a gate decides from, so it carries everything about
its structure (the structure, its permits, its cases), the log size whose state it shows, and a
time window (``this_update`` to ``next_update``).

``SigningPipeline`` is how imports sign: after each chunk of lines is written, the importer hands
over the ids it touched; the pipeline reads their events back (inside the import's transaction)
and, in worker processes when there is much to sign, replays them into each structure's state
(the log is the truth, not the tables) and signs it, so that signing one chunk overlaps with
parsing the next. Results are written in submission order, so when a structure changes in two
chunks the later record wins.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from registry.canonical import canonical_json
from registry.log import State, replay
from registry.records import StatusRecord
from registry.signing import Signer
from registry.storage import (
    EventRow,
    StatusRow,
    bulk_insert,
    id_in,
    table_of,
)
from registry.trust import STATUS_PAYLOAD_TYPE

__all__ = [
    "RECORD_VALIDITY",
    "SigningPipeline",
    "State",
    "StatusSigner",
]

RECORD_VALIDITY = timedelta(days=7)
"""How long a signed status record may be relied on before the registry must re-sign it."""

EventGroup = tuple[str, list[bytes]]  # a structure id and its events' bytes, in log order
StatusRowValues = tuple[str, int, datetime, bytes, bytes]

_BATCH = 1000


class StatusSigner:
    """Builds and signs status records, all dated ``now``."""

    def __init__(
        self, signer: Signer, *, now: datetime, validity: timedelta = RECORD_VALIDITY
    ) -> None:
        self._signer = signer
        self.this_update = now
        self.next_update = now + validity

    def record(self, state: State, tree_size: int) -> StatusRecord:
        structure, permits, cases = state
        return StatusRecord(
            structure, permits, cases, tree_size, self.this_update, self.next_update
        )

    def envelope(self, record: StatusRecord) -> bytes:
        return self._signer.sign_envelope(canonical_json(record.to_json()), STATUS_PAYLOAD_TYPE)

    def row(self, state: State, tree_size: int) -> StatusRowValues:
        """The ``status_record`` row for ``state``: the envelope and its SHA-256 digest."""
        envelope = self.envelope(self.record(state, tree_size))
        digest = hashlib.sha256(envelope).digest()
        return state[0].id, tree_size, self.next_update, digest, envelope

    def rows(self, batch: list[EventGroup], tree_size: int) -> list[StatusRowValues]:
        return [self.row(replay(sid, bodies), tree_size) for sid, bodies in batch]

    def portable(self) -> tuple[Any, ...]:
        """What a worker process needs to rebuild this signer (includes the private key)."""
        name, raw = self._signer.name, self._signer.private_bytes()
        return name, raw, self.this_update, self.next_update

    @classmethod
    def from_portable(cls, portable: tuple[Any, ...]) -> StatusSigner:
        name, raw, this_update, next_update = portable
        signer = Signer.from_private_bytes(name, raw)
        return cls(signer, now=this_update, validity=next_update - this_update)


def iter_event_groups(session: Session, structure_ids: Collection[str]) -> Iterator[EventGroup]:
    """The events of each of ``structure_ids``, grouped by structure, in log order."""
    dialect = session.get_bind().dialect.name
    query = (
        select(EventRow.structure_id, EventRow.body)
        .where(id_in(EventRow.structure_id, structure_ids, dialect))
        .order_by(EventRow.structure_id, EventRow.seq)
    )
    rows = session.execute(query, execution_options={"yield_per": 5000})
    for sid, group in groupby(rows, key=lambda r: r[0]):
        yield sid, [bytes(r[1]) for r in group]


class SigningPipeline:
    """Signs the status records of structures as an import touches them.

    The first ``inline_limit`` structures are signed in this process; past that (a large
    import) a pool of ``workers`` processes signs while this process goes on reading lines.
    Use as a context manager; ``finish`` waits until everything submitted is written.
    """

    def __init__(
        self,
        session: Session,
        signer: StatusSigner,
        *,
        workers: int = 1,
        inline_limit: int = 5_000,
    ) -> None:
        self._session = session
        self._signer = signer
        self._workers = workers
        self._inline_left = inline_limit
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future[list[StatusRowValues]]] = deque()

    def __enter__(self) -> SigningPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, structure_ids: Collection[str], tree_size: int) -> None:
        """Sign the state of ``structure_ids`` as their events give it, at ``tree_size``."""
        batch: list[EventGroup] = []
        for group in iter_event_groups(self._session, structure_ids):
            batch.append(group)
            if len(batch) >= _BATCH:
                self._sign(batch, tree_size)
                batch = []
        if batch:
            self._sign(batch, tree_size)
        while self._pending and self._pending[0].done():
            self._write(self._pending.popleft().result())

    def finish(self) -> None:
        while self._pending:
            self._write(self._pending.popleft().result())

    def _sign(self, batch: list[EventGroup], tree_size: int) -> None:
        if self._workers <= 1 or self._inline_left > 0:
            self._inline_left -= len(batch)
            self._write(self._signer.rows(batch, tree_size))
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self._signer.portable(),),
            )
        self._pending.append(self._pool.submit(_sign_in_worker, batch, tree_size))
        while len(self._pending) > 2 * self._workers:
            self._write(self._pending.popleft().result())

    def _write(self, rows: list[StatusRowValues]) -> None:
        ids = [row[0] for row in rows]
        dialect = self._session.get_bind().dialect.name
        self._session.execute(delete(StatusRow).where(id_in(StatusRow.structure_id, ids, dialect)))
        bulk_insert(self._session, table_of(StatusRow), rows)


_worker_signer: StatusSigner | None = None


def _start_worker(portable: tuple[Any, ...]) -> None:
    global _worker_signer
    _worker_signer = StatusSigner.from_portable(portable)


def _sign_in_worker(batch: list[EventGroup], tree_size: int) -> list[StatusRowValues]:
    if _worker_signer is None:
        raise RuntimeError("status signing worker used before its initializer ran")
    return _worker_signer.rows(batch, tree_size)
