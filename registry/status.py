"""Signed status records: one DSSE envelope per structure, re-signed whenever it changes.

A status record is what a cache holds and a gate decides from, so it carries everything about
its structure (the structure, its permits, its cases), the log size whose state it shows, and a
time window (``this_update`` to ``next_update``).

What is signed is always a state the writer holds: the structure's previous verified record plus
the changes of this write (``registry.writer``, ``registry.importer``). The state travels as
``StateParts``, each record already in its canonical JSON form, so that signing needs no parsing
and a worker process receives a few byte strings per structure; the payload is assembled from
them in exactly the RFC 8785 form ``StatusRecord.to_json`` would give.

``SigningPipeline`` is how writers sign many records: after each chunk the importer hands over the
states it changed; the pipeline signs them, in the processes of a ``WorkerPool`` when there is
much to sign, while the importer goes on reading. Results are written in submission order, so
when a structure changes in two chunks the later record wins. The workers die with the process
that started them (each watches its parent), so killing an import leaves no worker behind.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from permitgate_client.formats import pae
from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, Table, delete
from sqlalchemy.orm import Session

from registry.canonical import canonical_json
from registry.records import Case, Permit, StatusRecord, Structure, format_time
from registry.signing import Signer
from registry.statusmap import bucket_of
from registry.storage import StatusRow, UTCDateTime, id_in, table_of
from registry.trust import STATUS_PAYLOAD_TYPE

__all__ = [
    "DEFAULT_WORKERS",
    "RECORD_VALIDITY",
    "SigningPipeline",
    "StateParts",
    "StatusRowValues",
    "StatusSigner",
    "WorkerPool",
    "insert_rows",
    "sqlite_time",
    "state_parts",
]

_T = TypeVar("_T")

RECORD_VALIDITY = timedelta(days=7)
"""How long a signed status record may be relied on before the registry must re-sign it."""

StateParts = tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]
"""A structure's state to sign: the canonical JSON of the structure, of each of its permits and
of each of its cases (both sorted by id)."""
StatusRowValues = tuple[str, int, datetime, bytes, bytes, int]
"""A ``status_record`` row: structure id, tree size, next update, SHA-256, envelope, and the
status map bucket the structure sits in."""

DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))
"""Signing worker processes a large write starts."""
_BATCH = 1000
_PARENT_POLL = 0.2  # seconds between a worker's looks at its parent


def state_parts(
    structure: Structure, permits: Sequence[Permit], cases: Sequence[Case]
) -> StateParts:
    """The parts of a state given as typed records (sorted here by id)."""
    return (
        canonical_json(structure.to_json()),
        tuple(canonical_json(p.to_json()) for p in sorted(permits, key=_by_id)),
        tuple(canonical_json(c.to_json()) for c in sorted(cases, key=_by_id)),
    )


def _by_id(record: Permit | Case) -> str:
    return record.id


class StatusSigner:
    """Builds and signs status records, all dated ``now``."""

    def __init__(
        self, signer: Signer, *, now: datetime, validity: timedelta = RECORD_VALIDITY
    ) -> None:
        self._signer = signer
        self.this_update = now
        self.next_update = now + validity
        if self.next_update <= self.this_update:
            raise ValueError("a status record's validity must be positive")
        self._next_json = orjson.dumps(format_time(self.next_update))
        self._this_json = orjson.dumps(format_time(self.this_update))
        self._envelope_middle = b"".join(
            (
                b'","payloadType":',
                orjson.dumps(STATUS_PAYLOAD_TYPE),
                b',"signatures":[{"keyid":',
                orjson.dumps(signer.verifier.keyid_text),
                b',"sig":"',
            )
        )

    def envelope(self, record: StatusRecord) -> bytes:
        return self._signer.sign_envelope(canonical_json(record.to_json()), STATUS_PAYLOAD_TYPE)

    def payload(self, parts: StateParts, tree_size: int) -> bytes:
        """The canonical JSON of the status record of ``parts`` at ``tree_size``: the bytes
        ``canonical_json(StatusRecord(...).to_json())`` gives, assembled from the parts (the
        keys in RFC 8785 order: cases, next_update, permits, structure, this_update,
        tree_size)."""
        if tree_size < 1:
            raise ValueError("tree_size must be at least 1")
        structure, permits, cases = parts
        return b"".join(
            (
                b'{"cases":[',
                b",".join(cases),
                b'],"next_update":',
                self._next_json,
                b',"permits":[',
                b",".join(permits),
                b'],"structure":',
                structure,
                b',"this_update":',
                self._this_json,
                b',"tree_size":',
                str(tree_size).encode(),
                b"}",
            )
        )

    def row(self, structure_id: str, parts: StateParts, tree_size: int) -> StatusRowValues:
        """The ``status_record`` row for ``parts``: the envelope and its SHA-256 digest.

        The envelope is the one ``Signer.sign_envelope`` makes (canonical JSON of payload,
        payloadType and one signature), written out here around the signature: thousands are
        made per second, and only the two base64 strings differ between them."""
        payload = self.payload(parts, tree_size)
        signature = self._signer.sign(pae(STATUS_PAYLOAD_TYPE, payload))
        envelope = b"".join(
            (
                b'{"payload":"',
                base64.b64encode(payload),
                self._envelope_middle,
                base64.b64encode(signature),
                b'"}]}',
            )
        )
        digest = hashlib.sha256(envelope).digest()
        return structure_id, tree_size, self.next_update, digest, envelope, bucket_of(structure_id)

    def rows(
        self, batch: Sequence[tuple[str, StateParts]], tree_size: int
    ) -> list[StatusRowValues]:
        return [self.row(sid, parts, tree_size) for sid, parts in batch]

    def portable(self) -> tuple[Any, ...]:
        """What a worker process needs to rebuild this signer (includes the private key)."""
        name, raw = self._signer.name, self._signer.private_bytes()
        return name, raw, self.this_update, self.next_update

    @classmethod
    def from_portable(cls, portable: tuple[Any, ...]) -> StatusSigner:
        name, raw, this_update, next_update = portable
        signer = Signer.from_private_bytes(name, raw)
        return cls(signer, now=this_update, validity=next_update - this_update)


Written = Callable[[list[StatusRowValues], object], None]
"""Told of every batch of rows once written, with the tag it was submitted with."""


class WorkerPool:
    """The worker processes of one write, started when first needed: they sign status records
    (and the importer has them parse lines). Spawned, never forked (a fork would copy the
    database connections), and each exits as soon as the process that started it is gone."""

    def __init__(self, signer: StatusSigner, workers: int = DEFAULT_WORKERS) -> None:
        self.workers = workers
        self._portable = signer.portable()
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self._portable, os.getpid()),
            )
        return self._pool.submit(fn, *args)


class SigningPipeline:
    """Signs the status records of states handed to it, and writes them.

    The first ``inline_limit`` structures are signed in this process; past that (a large
    write) the ``pool``'s workers sign while this process goes on (without a pool, or with a
    pool of one worker, everything is signed here). Use as a context manager; ``finish`` waits
    until everything submitted is written.
    """

    def __init__(
        self,
        session: Session,
        signer: StatusSigner,
        *,
        written: Written | None = None,
        pool: WorkerPool | None = None,
        inline_limit: int = 5_000,
    ) -> None:
        self._session = session
        self._signer = signer
        self._written = written
        self._pool = pool if pool is not None and pool.workers > 1 else None
        self._inline_left = inline_limit
        self._pending: deque[tuple[Future[list[StatusRowValues]], object]] = deque()

    def __enter__(self) -> SigningPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        for future, _ in self._pending:
            future.cancel()
        self._pending.clear()

    @property
    def depth(self) -> int:
        """How many batches may wait for a worker before ``submit`` waits for the oldest."""
        return 0 if self._pool is None else 2 * self._pool.workers

    def submit(
        self, states: Sequence[tuple[str, StateParts]], tree_size: int, tag: object = None
    ) -> None:
        """Sign each ``(structure id, parts)`` of ``states`` at ``tree_size``."""
        for start in range(0, len(states), _BATCH):
            self._sign(states[start : start + _BATCH], tree_size, tag)
        while self._pending and self._pending[0][0].done():
            self._write(*self._take())

    def finish(self) -> None:
        while self._pending:
            self._write(*self._take())

    def _take(self) -> tuple[list[StatusRowValues], object]:
        future, tag = self._pending.popleft()
        return future.result(), tag

    def _sign(self, batch: Sequence[tuple[str, StateParts]], tree_size: int, tag: object) -> None:
        if self._pool is None or self._inline_left > 0:
            self._inline_left -= len(batch)
            self._write(self._signer.rows(batch, tree_size), tag)
            return
        self._pending.append((self._pool.submit(_sign_in_worker, list(batch), tree_size), tag))
        while len(self._pending) > self.depth:
            self._write(*self._take())

    def _write(self, rows: list[StatusRowValues], tag: object) -> None:
        """Replace the records of these structures (on SQLite in one statement)."""
        connection = self._session.connection()
        if connection.dialect.name == "sqlite":
            driver = connection.connection.driver_connection
            assert driver is not None, "a live session has a driver connection"
            driver.executemany(
                "INSERT OR REPLACE INTO status_record (structure_id, tree_size, next_update, "
                "digest, envelope, map_bucket) VALUES (?, ?, ?, ?, ?, ?)",
                [(sid, size, sqlite_time(at), d, e, b) for sid, size, at, d, e, b in rows],
            )
        else:
            ids = [row[0] for row in rows]
            where = id_in(StatusRow.structure_id, ids, connection.dialect.name)
            self._session.execute(delete(StatusRow).where(where))
            insert_rows(self._session, table_of(StatusRow), rows)
        if self._written is not None:
            self._written(rows, tag)


def insert_rows(session: Session, table: Table, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (values in ``table``'s column order) inside the session's transaction by each
    backend's fastest path: a binary COPY on PostgreSQL (signed envelopes and event bodies go
    as they are, not as hex text), a driver-level executemany on SQLite, whose times must
    already be text (``sqlite_time``)."""
    if not rows:
        return
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert driver is not None, "a live session has a driver connection"
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    if connection.dialect.name == "postgresql":
        with (
            driver.cursor() as cursor,
            cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy,
        ):
            copy.set_types([_binary_type(c.type) for c in table.columns])
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(table.columns))
    driver.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', rows)


def _binary_type(kind: Any) -> str:
    """The PostgreSQL type a binary COPY writes for a column of SQLAlchemy type ``kind``."""
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, LargeBinary):
        return "bytea"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, String):
        return "text"
    raise TypeError(f"no binary COPY type for {kind!r}")


@lru_cache(maxsize=65536)
def sqlite_time(value: datetime) -> str:
    """A time as SQLAlchemy stores it in SQLite (naive UTC text, ``registry.storage``), so that
    what a bulk write stores reads back as the same time."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


_worker_signer: StatusSigner | None = None


def _start_worker(portable: tuple[Any, ...], parent: int) -> None:
    global _worker_signer
    _worker_signer = StatusSigner.from_portable(portable)
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker as soon as ``parent`` is gone (killed, even with SIGKILL): a worker
    whose parent died is adopted by another process, so its parent id changes."""
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL)
    os._exit(1)


def _sign_in_worker(batch: list[tuple[str, StateParts]], tree_size: int) -> list[StatusRowValues]:
    if _worker_signer is None:
        raise RuntimeError("status signing worker used before its initializer ran")
    return _worker_signer.rows(batch, tree_size)
