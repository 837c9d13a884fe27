"""The gate's trusted view of the registry: verified bytes in, typed records out.

Everything the gate answers from passes through ``RegistryCache``. It accepts only what the
registry key signed, and only when it fits what was already seen:

* a checkpoint must verify, have the registry's origin, and never shrink the tree (no rollback);
* a status record must verify, belong to the structure it is filed under, show a tree size no
  larger than the checkpoint held, and never replace a newer record of the same structure
  (larger tree size, or the same tree size re-signed later by ``registry refresh``).

Each refusal is a typed ``VerificationError`` (``RollbackError``, ``ForkError``,
``WrongOriginError``, ``BadSignatureError``, ``WrongStructureError``, ``FromTheFutureError``,
``MalformedError``): raised for a checkpoint, carried in a ``Rejected`` for a status record.

A structure whose newest record fails verification, or whose record does not show its latest
change in the log, is *doubtful*: it answers REVIEW, never from an older record as if current.
Records are verified once, when loaded, so a request costs a dictionary look-up. Freshness is
tracked apart from content: ``confirm_fresh`` is called after each successful poll of the
registry, and ``is_stale`` says when that was longer ago than the staleness bound.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from permitgate_client import ForkError, RollbackError, VerificationError, VerifierKey
from permitgate_client.formats import Checkpoint, verify_checkpoint

from registry.records import StatusRecord
from registry.trust import verify_status_record

__all__ = ["CachedStatus", "RegistryCache", "Rejected"]


@dataclass(frozen=True, slots=True)
class CachedStatus:
    """A verified status record and the SHA-256 of the envelope it came in (for receipts)."""

    record: StatusRecord
    digest: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A status record refused: the id it was filed under, and the typed failure."""

    structure_id: str
    error: VerificationError

    @property
    def why(self) -> str:
        return str(self.error)


class RegistryCache:
    def __init__(self, registry_key: VerifierKey, *, origin: str, max_staleness: float) -> None:
        self.registry_key = registry_key
        self.origin = origin
        self.max_staleness = max_staleness
        self.checkpoint: Checkpoint | None = None
        self.checkpoint_note: bytes = b""
        self._records: dict[str, CachedStatus] = {}
        self.newest_next_update: datetime | None = None  # to find records re-signed in place
        self._doubtful: set[str] = set()  # structures whose current record is missing or bad
        self._fresh_at: float | None = None  # time.monotonic() of the last confirmed poll

    def __len__(self) -> int:
        return len(self._records)

    @property
    def size(self) -> int:
        """The registry version (tree size) held; 0 before any checkpoint."""
        return 0 if self.checkpoint is None else self.checkpoint.size

    def get(self, structure_id: str) -> CachedStatus | None:
        return self._records.get(structure_id)

    def verify_checkpoint(self, note: bytes) -> Checkpoint:
        """Check a checkpoint note against the key, the origin and what is held (no rollback)."""
        checkpoint = verify_checkpoint(note, self.registry_key, origin=self.origin)
        if checkpoint.size < self.size:
            raise RollbackError(
                f"checkpoint: tree size {checkpoint.size} is older than {self.size}, held already"
            )
        held = self.checkpoint
        if (
            held is not None
            and held.size == checkpoint.size
            and held.root_hash != checkpoint.root_hash
        ):
            raise ForkError(f"checkpoint: two different roots for tree size {held.size}")
        return checkpoint

    def verify_records(
        self, rows: Iterable[tuple[str, bytes]], checkpoint: Checkpoint
    ) -> tuple[list[CachedStatus], list[Rejected]]:
        """Verify ``(structure_id, envelope)`` rows against ``checkpoint``; nothing is stored.

        A record is refused (``Rejected`` carrying the typed error) when it does not verify, is
        filed under another structure's id (``WrongStructureError``), shows a tree size beyond
        ``checkpoint`` (``FromTheFutureError``), or is older than the record held for that
        structure (``RollbackError``).
        """
        accepted: list[CachedStatus] = []
        rejected: list[Rejected] = []
        for structure_id, envelope in rows:
            held = self._records.get(structure_id)
            try:
                record = verify_status_record(
                    envelope,
                    self.registry_key,
                    structure_id=structure_id,
                    checkpoint_size=checkpoint.size,
                    held=None if held is None else held.record,
                )
            except VerificationError as exc:
                # The same type and message, without a traceback keeping the verifier's frames
                # (and their envelope bytes) alive while many rejections wait to be reported.
                rejected.append(Rejected(structure_id, type(exc)(str(exc))))
                continue
            accepted.append(CachedStatus(record, hashlib.sha256(envelope).digest()))
        return accepted, rejected

    def install(self, checkpoint: Checkpoint, note: bytes, records: Iterable[CachedStatus]) -> int:
        """Adopt a verified checkpoint and records (from ``verify_*``); returns records taken.

        Re-checks the no-rollback rules, since another update may have landed in between.
        """
        if checkpoint.size < self.size:
            return 0
        taken = 0
        for status in records:
            record = status.record
            held = self._records.get(record.structure.id)
            if held is None or (held.record.tree_size, held.record.this_update) <= (
                record.tree_size,
                record.this_update,
            ):
                self._records[record.structure.id] = status
                self._doubtful.discard(record.structure.id)
                taken += 1
            if self.newest_next_update is None or record.next_update > self.newest_next_update:
                self.newest_next_update = record.next_update
        self.checkpoint, self.checkpoint_note = checkpoint, note
        return taken

    def doubt(self, rejected: Iterable[str], last_events: Iterable[tuple[str, int]]) -> int:
        """Mark structures whose newest genuine record is not current; returns how many are.

        ``rejected`` failed verification; ``last_events`` says where each structure last
        changed in the log, and a record that does not show that change (withheld, or swapped
        for an older genuine one) is not current. Such structures answer REVIEW until a record
        that covers their last change arrives.
        """
        self._doubtful.update(rejected)
        for structure_id, last in last_events:
            held = self._records.get(structure_id)
            if held is None or held.record.tree_size <= last:
                self._doubtful.add(structure_id)
        return len(self._doubtful)

    def is_doubtful(self, structure_id: str) -> bool:
        return structure_id in self._doubtful

    def confirm_fresh(self, at: float | None = None) -> None:
        """The registry was just seen to hold nothing newer than what is cached."""
        self._fresh_at = time.monotonic() if at is None else at

    def is_stale(self, now: float | None = None) -> bool:
        """True when the data cannot be shown fresher than the staleness bound."""
        if self.checkpoint is None or self._fresh_at is None:
            return True
        return (time.monotonic() if now is None else now) - self._fresh_at > self.max_staleness
