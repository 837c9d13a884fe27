"""What the registry service answers from: the newest head it verified, and everything under it.

Whoever can write the database holds no key, so the service never answers from the database as
it reads it. At start it reads the newest head, every event and every status record in one
snapshot, and keeps them only when they agree with the head's signatures: the note verifies with
the registry key, the events hash to the log root it signs, the records' SHA-256 digests make
the status map root and count it signs. Afterwards it follows the database head by head: a newer
head is adopted only when it verifies, its serial is larger, its log extends the held one (the
new events appended to the held leaves give its root) and the records changed since, applied to
the held map, give its map root. A database that disagrees (a head deleted or rolled back, a
head row rewritten, events or records that do not give the signed roots) raises
``RegistryMismatch`` naming what disagrees, and the held state stays as it was.

Held in memory: the log's leaf hashes (32 bytes an event) with a frontier every ``_STEP``
leaves, so a consistency proof from any size starts at a stored frontier; the status map; each
structure's envelope (about 1.4 KB), so that GetStatus reads nothing from the database.

``ServedState.load`` and ``read_advance`` block on the database (run them in a thread);
``apply``, ``status`` and ``cosigned`` run on the service's event loop, so a proof is always
taken from one state; ``consistency`` reads only what never changes (leaves are only appended).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from permitgate_client import VerificationError, VerifierKey
from permitgate_client._proofs import MapProof, RegistryHead, verify_registry_head
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from registry.merkle import CompactTree, consistency_proof, leaf_hash
from registry.statusmap import StatusMap
from registry.storage import Database, EventRow, HeadRow, StatusRow

__all__ = ["Advance", "RegistryMismatch", "ServedState", "StoredHead", "read_newest_head"]

_STEP = 1024
"""Leaves between two stored frontiers: a proof from size m appends at most this many first."""
_APPLY_LIMIT = 2000
"""Changed records beyond which a newer head is loaded afresh (in a thread) rather than applied
to the held map on the event loop (each change costs about 90 µs there)."""
_HASH = 32


class RegistryMismatch(Exception):
    """The database disagrees with the signed heads; the message names what, and where."""


@dataclass(frozen=True, slots=True)
class StoredHead:
    """The newest ``head`` row as stored: the signed note and its newest cosignature line."""

    serial: int
    note: bytes
    cosignature: bytes | None

    def cosigned_note(self) -> bytes:
        return self.note + (self.cosignature or b"")


def _newest_head(session: Session) -> StoredHead | None:
    row = session.execute(
        select(HeadRow.serial, HeadRow.note, HeadRow.cosignature)
        .order_by(HeadRow.serial.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    serial, note, cosignature = row
    return StoredHead(serial, bytes(note), None if cosignature is None else bytes(cosignature))


def read_newest_head(db: Database) -> StoredHead | None:
    """The database's newest head (largest serial), or None when it holds none."""
    with db.snapshot() as session:
        return _newest_head(session)


def _verified(stored: StoredHead, key: VerifierKey) -> RegistryHead:
    """The head of ``stored``, once its signature and cosignature verify with ``key``."""
    try:
        head = verify_registry_head(stored.cosigned_note(), key)
    except VerificationError as exc:
        raise RegistryMismatch(f"head row of serial {stored.serial}: {exc}") from exc
    if head.map.serial != stored.serial:
        raise RegistryMismatch(
            f"head row of serial {stored.serial} holds the signed head of serial {head.map.serial}"
        )
    return head


@dataclass(frozen=True)
class Advance:
    """A newer head read from the database, its log already checked against the held one:
    what ``ServedState.apply`` adds once the changed records give its map root."""

    head: RegistryHead
    signed_note: bytes
    leaves: bytes  # the leaf hashes of the events after the held size
    frontiers: list[bytes]  # tree states at each multiple of _STEP passed
    records: list[tuple[str, bytes]]  # (structure id, envelope) signed since the held head
    newest_next_update: datetime | None


class ServedState:
    """The verified head, log leaves, status map and envelopes the service answers from."""

    def __init__(
        self,
        key: VerifierKey,
        head: RegistryHead,
        signed_note: bytes,
        leaves: bytearray,
        frontiers: list[bytes],
        status_map: StatusMap,
        envelopes: dict[str, bytes],
        newest_next_update: datetime | None,
    ) -> None:
        self.key = key
        self.head = head
        self.signed_note = signed_note  # the note as signed, without its cosignature
        self._leaves = leaves
        self._frontiers = frontiers  # _frontiers[i]: the tree's state at size i * _STEP
        self._map = status_map
        self._envelopes = envelopes
        self._newest_next_update = newest_next_update

    def __len__(self) -> int:
        return len(self._envelopes)

    @property
    def size(self) -> int:
        return self.head.size

    @property
    def serial(self) -> int:
        return self.head.map.serial

    # --- loading and following the database ------------------------------------------------------

    @classmethod
    def load(cls, db: Database, key: VerifierKey) -> ServedState:
        """Read the newest head, the whole log and every record in one snapshot, and keep them
        if they give the head's signed roots; ``RegistryMismatch`` naming what does not."""
        with db.snapshot() as session:
            stored = _newest_head(session)
            if stored is None:
                raise RegistryMismatch(
                    "the database holds no signed head (was the head table emptied?)"
                )
            head = _verified(stored, key)
            where = f"the head of serial {stored.serial}"
            tree = CompactTree()
            frontiers = [tree.state]
            leaves = _replay(session, tree, frontiers)
            if tree.size != head.size:
                raise RegistryMismatch(
                    f"the log holds {tree.size} events; {where} covers {head.size}"
                )
            if tree.root() != head.checkpoint.root_hash:
                raise RegistryMismatch(f"the events do not hash to the log root {where} signs")
            envelopes: dict[str, bytes] = {}
            newest: datetime | None = None
            for structure_id, envelope, next_update in session.execute(
                select(StatusRow.structure_id, StatusRow.envelope, StatusRow.next_update),
                execution_options={"yield_per": 5000},
            ):
                envelopes[structure_id] = bytes(envelope)
                newest = next_update if newest is None else max(newest, next_update)
        status_map = StatusMap((sid, _digest(e)) for sid, e in envelopes.items())
        _check_map(status_map, head, where, len(envelopes))
        return cls(key, head, stored.note, leaves, frontiers, status_map, envelopes, newest)

    def read_advance(self, db: Database) -> Advance | ServedState | None:
        """What the database holds beyond the held head: None when its newest head is the held
        one; an ``Advance`` to ``apply``; or, when many records changed, a fresh ``load``.

        ``RegistryMismatch`` when the database's newest head is older than the held one or
        missing (rolled back), has the held serial but another body, does not verify, or its
        log does not extend the held log."""
        with db.snapshot() as session:
            stored = _newest_head(session)
            if not self._is_newer(stored):
                return None
            assert stored is not None
            head = _verified(stored, self.key)
            if head.size < self.size:
                raise RegistryMismatch(
                    f"the head of serial {stored.serial} covers {head.size} events, fewer than "
                    f"the {self.size} of the held head serial {self.serial}"
                )
            tree = self._frontier(self.size)
            frontiers: list[bytes] = []
            leaves = _replay(session, tree, frontiers)
            if tree.size != head.size:
                raise RegistryMismatch(
                    f"the log holds {tree.size} events; the head of serial {stored.serial} "
                    f"covers {head.size}"
                )
            if tree.root() != head.checkpoint.root_hash:
                raise RegistryMismatch(
                    f"the log of the head of serial {stored.serial} does not extend the held "
                    f"log of serial {self.serial}: events {self.size} to {head.size - 1} do "
                    "not give its root"
                )
            changed = StatusRow.tree_size > self.size
            if self._newest_next_update is not None:  # records re-signed in place (refresh)
                changed = or_(changed, StatusRow.next_update > self._newest_next_update)
            records: list[tuple[str, bytes]] = []
            newest = self._newest_next_update
            for structure_id, envelope, next_update in session.execute(
                select(StatusRow.structure_id, StatusRow.envelope, StatusRow.next_update).where(
                    changed
                ),
                execution_options={"yield_per": 5000},
            ):
                records.append((structure_id, bytes(envelope)))
                newest = next_update if newest is None else max(newest, next_update)
                if len(records) > _APPLY_LIMIT:
                    break
        if len(records) > _APPLY_LIMIT:
            return self.load_after(db)
        return Advance(head, stored.note, bytes(leaves), frontiers, records, newest)

    def load_after(self, db: Database) -> ServedState:
        """``load`` afresh, accepting only a head newer than the held one whose log extends the
        held log (or the held head itself)."""
        fresh = ServedState.load(db, self.key)
        if not self._is_newer(StoredHead(fresh.serial, fresh.signed_note, None)):
            return fresh  # the held head itself, read again
        if (
            fresh.size < self.size
            or fresh._frontier(self.size).root() != self.head.checkpoint.root_hash
        ):
            raise RegistryMismatch(
                f"the log of the head of serial {fresh.serial} does not extend the held log of "
                f"serial {self.serial}: its first {self.size} events give another root"
            )
        return fresh

    def _is_newer(self, stored: StoredHead | None) -> bool:
        """True when ``stored`` is newer than the held head, False when it is the held head;
        ``RegistryMismatch`` when it is older, missing, or the held serial with another body."""
        held = f"the held head serial {self.serial} (last cosigned {self._cosigned_text()})"
        if stored is None:
            raise RegistryMismatch(f"the database holds no head; {held}")
        if stored.serial < self.serial:
            raise RegistryMismatch(
                f"the database was rolled back: its newest head is serial {stored.serial}, "
                f"older than {held} (restore the newest backup)"
            )
        if stored.serial == self.serial:
            if stored.note != self.signed_note:
                raise RegistryMismatch(
                    f"head row of serial {stored.serial} differs from {held} (it was rewritten)"
                )
            return False
        return True

    def _cosigned_text(self) -> str:
        at = self.head.cosigned_at
        return "an unknown time" if at is None else at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def apply(self, advance: Advance) -> None:
        """Adopt ``advance`` once its records give its signed map root and count; otherwise
        ``RegistryMismatch``, and the held state is as before."""
        previous = [(sid, self._envelopes.get(sid)) for sid, _ in advance.records]
        for structure_id, envelope in advance.records:
            self._map.set(structure_id, _digest(envelope))
        where = f"the head of serial {advance.head.map.serial}"
        try:
            _check_map(self._map, advance.head, where, len(self._map))
        except RegistryMismatch:
            for structure_id, old in previous:
                if old is None:
                    self._map.remove(structure_id)
                else:
                    self._map.set(structure_id, _digest(old))
            raise
        self._envelopes.update(advance.records)
        self._leaves += advance.leaves
        self._frontiers += advance.frontiers
        self._newest_next_update = advance.newest_next_update
        self.head = advance.head
        self.signed_note = advance.signed_note

    def cosigned(self, note: bytes) -> None:
        """Hold ``note``, a newer cosignature of the held head (checked before it is held)."""
        head = verify_registry_head(note, self.key)
        if not head.same_head(self.head):
            raise RegistryMismatch("the cosigned note is not the held head")
        self.head = head

    # --- answers ---------------------------------------------------------------------------------

    def status(self, structure_id: str) -> tuple[bytes | None, MapProof]:
        """The current envelope of ``structure_id`` (None: it has none) and its map proof."""
        return self._envelopes.get(structure_id), self._map.prove(structure_id)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 ``PROOF(old_size, D[new_size])`` from the held leaves (0 <= old <= new <=
        size, checked by the caller). Reads only leaves below ``size``, which never change."""
        if not 0 <= old_size <= new_size <= self.size:
            raise ValueError(f"sizes {old_size} and {new_size} outside 0 to {self.size}")
        old = self._frontier(old_size)
        added = [self._leaf(i) for i in range(old_size, new_size)]
        return consistency_proof(old, added)

    # --- what the Redis publisher copies (``registry.publisher``) ---------------------------------

    @property
    def status_map(self) -> StatusMap:
        """The verified status map (read it only while nothing ``apply``s a head)."""
        return self._map

    def envelope(self, structure_id: str) -> bytes | None:
        """The current envelope of ``structure_id``, exactly as signed (None: it has none)."""
        return self._envelopes.get(structure_id)

    def structure_ids(self) -> list[str]:
        """Every structure with a record (a copy, taken at once)."""
        return list(self._envelopes)

    def leaves(self, start: int = 0) -> bytes:
        """The leaf hashes of events ``start`` to ``size - 1``, 32 bytes each."""
        return bytes(self._leaves[start * _HASH : self.size * _HASH])

    def tree_state(self) -> bytes:
        """The log's compact tree state at the held size (``CompactTree.state``)."""
        return self._frontier(self.size).state

    def _frontier(self, size: int) -> CompactTree:
        """The log's compact tree at ``size`` (at most ``size``), from the stored frontier below."""
        start = (size // _STEP) * _STEP
        tree = CompactTree.from_state(start, self._frontiers[start // _STEP])
        for i in range(start, size):
            tree.append(self._leaf(i))
        return tree

    def _leaf(self, index: int) -> bytes:
        return bytes(self._leaves[index * _HASH : (index + 1) * _HASH])


def _replay(session: Session, tree: CompactTree, frontiers: list[bytes]) -> bytearray:
    """Append the database's events after ``tree`` to it, in order and without a gap; their
    leaf hashes, concatenated. ``frontiers`` gets the tree's state at each multiple of
    ``_STEP`` passed."""
    leaves = bytearray()
    for seq, body in _events(session, since=tree.size):
        if seq != tree.size:
            raise RegistryMismatch(_gap(seq, tree.size))
        leaf = leaf_hash(body)
        leaves += leaf
        tree.append(leaf)
        if tree.size % _STEP == 0:
            frontiers.append(tree.state)
    return leaves


def _events(session: Session, *, since: int) -> Iterator[tuple[int, bytes]]:
    rows = session.execute(
        select(EventRow.seq, EventRow.body).where(EventRow.seq >= since).order_by(EventRow.seq),
        execution_options={"yield_per": 5000},
    )
    for seq, body in rows:
        yield seq, bytes(body)


def _gap(seq: int, expected: int) -> str:
    return f"event rows: found seq {seq} where seq {expected} was due (rows removed or added)"


def _digest(envelope: bytes) -> bytes:
    return hashlib.sha256(envelope).digest()


def _check_map(status_map: StatusMap, head: RegistryHead, where: str, records: int) -> None:
    if len(status_map) != head.map.count or status_map.root() != head.map.root:
        raise RegistryMismatch(
            f"the status records ({records}) do not give the map root {where} signs "
            f"({head.map.count} records): status_record rows were changed, added or removed"
        )
