"""What a party has verified, kept where only it writes: the registry's and each gate's state.

TUF's clients keep the metadata they verified in their own storage and accept from the network
only what is at least as new and chains to it; the same rule protects permitgate from whoever can
write the shared database. Each party (the registry, every gate) keeps in its own state
directory:

* ``head``: the newest head it verified (or signed), a cosigned note;
* ``frontier``: the log's compact Merkle state at that head (the registry appends from it);
* ``entries``: the status map at that head, structure id to record digest (and, for the
  registry, when each record lapses), so a record read back from the database can be checked
  one by one and a disagreement named;
* ``departments`` (the registry only): the departments enrolled in its log at that head, each
  with its current key and whether it is revoked (``registry.department_keys``). A department's
  key is believed from here, never from the database: a key row someone writes into the
  database means nothing.
* ``written`` (the registry only): the idempotency index of the departments' writes at that
  head, (department, request id) to the write's digest, the log index of its first event and
  the SHA-256 of the result JSON stored in its ``department_write`` row. A retry is answered
  from that row only when the row agrees with this index: a row someone writes into the
  database never makes a write answered as done. An index rebuilt from the log (the statement
  events) has no result digest (``None``): the result is not in the log.

The store is one SQLite file opened with the standard library's ``sqlite3``: a local file with
one writer needs no pool, no ORM and no migrations (``_SCHEMA`` is created when missing).
Writes are whole (one transaction) and durable (``synchronous=FULL``) before they return.
``lock()`` is an exclusive ``flock`` on a file beside it, which processes of one party sharing
the directory (the registry service and a one-off import) take around each write.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["DepartmentRow", "Entry", "StateLocked", "TrustedState", "WrittenRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS head (one INTEGER PRIMARY KEY CHECK (one = 1), note BLOB NOT NULL,
                                 frontier BLOB);
CREATE TABLE IF NOT EXISTS entry (structure_id TEXT PRIMARY KEY, digest BLOB NOT NULL,
                                  next_update REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS department (id TEXT PRIMARY KEY, role TEXT NOT NULL,
                                       name TEXT NOT NULL, key TEXT NOT NULL,
                                       state TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS written (department TEXT NOT NULL, request_id TEXT NOT NULL,
                                    digest BLOB NOT NULL, seq INTEGER NOT NULL, result BLOB,
                                    PRIMARY KEY (department, request_id)) WITHOUT ROWID;
"""

Entry = tuple[str, bytes, datetime | None]
DepartmentRow = tuple[str, str, str, str, str, int]
"""A department: id, role, name, verifier key text, state (active or revoked), and the log
index of the event that last changed it."""
WrittenRow = tuple[str, str, bytes, int, bytes | None]
"""A department's write: department, request id, the write's digest (``log.write_digest``),
the log index of its first event, and the SHA-256 of its stored result JSON (None when the
index was rebuilt from the log, which does not hold the result)."""


class StateLocked(Exception):
    """Another process holds the state directory's lock longer than we may wait."""


class TrustedState:
    """The verified state of one party, in ``directory/<name>.sqlite``."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.path = directory / f"{name}.sqlite"
        self._lock_path = directory / f"{name}.lock"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"TrustedState({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def lock(self, wait: float = 30.0) -> Iterator[None]:
        """Hold the directory's exclusive lock; ``StateLocked`` after ``wait`` seconds."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StateLocked(
                            f"{self._lock_path} is held by another process for over {wait:g} s"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def head(self) -> bytes | None:
        row = self._db.execute("SELECT note FROM head").fetchone()
        return None if row is None else bytes(row[0])

    def frontier(self) -> bytes | None:
        row = self._db.execute("SELECT frontier FROM head").fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def entries(self) -> Iterator[Entry]:
        for structure_id, digest, next_update in self._db.execute(
            "SELECT structure_id, digest, next_update FROM entry"
        ):
            yield structure_id, bytes(digest), _time(next_update)

    def entry(self, structure_id: str) -> Entry | None:
        row = self._db.execute(
            "SELECT structure_id, digest, next_update FROM entry WHERE structure_id = ?",
            (structure_id,),
        ).fetchone()
        return None if row is None else (row[0], bytes(row[1]), _time(row[2]))

    def departments(self) -> list[DepartmentRow]:
        """Every department enrolled, by id."""
        rows = self._db.execute(
            "SELECT id, role, name, key, state, seq FROM department ORDER BY id"
        ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows]

    def department(self, department_id: str) -> DepartmentRow | None:
        row = self._db.execute(
            "SELECT id, role, name, key, state, seq FROM department WHERE id = ?",
            (department_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4], int(row[5]))

    def written(self, department_id: str, request_id: str) -> WrittenRow | None:
        """The write a department made under ``request_id`` (one indexed lookup), or None."""
        row = self._db.execute(
            "SELECT department, request_id, digest, seq, result FROM written "
            "WHERE department = ? AND request_id = ?",
            (department_id, request_id),
        ).fetchone()
        if row is None:
            return None
        result = None if row[4] is None else bytes(row[4])
        return row[0], row[1], bytes(row[2]), int(row[3]), result

    def due(self, before: datetime) -> list[str]:
        """The structures whose record lapses before ``before`` (the registry's refresh list)."""
        rows = self._db.execute(
            "SELECT structure_id FROM entry WHERE next_update < ? ORDER BY structure_id",
            (before.timestamp(),),
        )
        return [row[0] for row in rows]

    def save(
        self,
        head: bytes,
        *,
        frontier: bytes | None = None,
        changed: Iterable[Entry] = (),
        removed: Iterable[str] = (),
        departments: Iterable[DepartmentRow] = (),
        written: Iterable[WrittenRow] = (),
        replace: bool = False,
    ) -> None:
        """Adopt ``head`` and the entries, departments and writes that changed with it, in one
        durable transaction.

        ``replace`` drops every entry, department and write first (a full load). ``frontier``
        None keeps none.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if replace:
                db.execute("DELETE FROM entry")
                db.execute("DELETE FROM department")
                db.execute("DELETE FROM written")
            db.executemany(
                "INSERT OR REPLACE INTO department VALUES (?, ?, ?, ?, ?, ?)", departments
            )
            db.executemany("INSERT OR REPLACE INTO written VALUES (?, ?, ?, ?, ?)", written)
            db.executemany(
                "INSERT OR REPLACE INTO entry VALUES (?, ?, ?)",
                ((sid, digest, None if t is None else t.timestamp()) for sid, digest, t in changed),
            )
            db.executemany("DELETE FROM entry WHERE structure_id = ?", ((s,) for s in removed))
            db.execute("INSERT OR REPLACE INTO head VALUES (1, ?, ?)", (head, frontier))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def save_head(self, head: bytes) -> None:
        """A newer cosignature of the same head: only the note changes."""
        self._db.execute("UPDATE head SET note = ?", (head,))

    def keep_evidence(self, what: str, *notes: bytes) -> Path:
        """Write signed notes that prove misbehaviour (a fork) to a file; returns its path."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = self.directory / f"evidence-{what}-{stamp}.txt"
        path.write_bytes(b"\n".join(notes))
        return path


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)
