"""What a gate may believe of the registry: its own verified state, and the rules for changing it.

The gate trusts nothing it reads from the registry's database (or any feed) until it is
verified, and it keeps what it verified in its own state directory (``TrustedState(dir,
"gate")``): the head it holds, with its newest cosignature, and that head's status map (structure
id to record digest). At each poll (``RegistryVerifier.poll``, in a worker thread):

* **The head.** The feed's newest head must verify with the registry key
  (``verify_registry_head``; else ``bad_head``). One older than the head held (``order``) is
  refused (``rollback``); another one with the same serial is a fork (``fork``: both notes are
  kept as evidence); a newer one must extend the held log by the feed's consistency proof
  (``verify_consistency``; else ``fork`` or ``inconsistent``). The same head with a later
  cosignature replaces the held one's note (freshness moves on).
* **The records**, by hash, not by signature: the new map (held map plus the records changed
  since, or every record) must have the head's map root. Else every record is read and the
  map rebuilt; if that still does not give the root (``map_mismatch``), the new head is not
  adopted.
* **When a newer head cannot be adopted** (inconsistent, fork, map mismatch), the head held is
  *superseded*: the gate keeps it but answers REGISTRY_STALE at once, since a newer head
  exists. Rollbacks and unverifiable heads are refused without that: the held head simply
  ages until its cosignature is too old.
* **After a restart** the held head is the one persisted (never an older one from the feed),
  and its records are read back and checked by hash against the persisted entries (verified
  against the head when they were persisted; the map itself is rebuilt at the next poll). Those
  that match are served; the others answer RECORD_UNVERIFIED (``record_unverified``) until a
  record with the right hash appears (they are read again at every poll).
* **The parties named** (Art. 22): with its records the verifier keeps their ``PartyIndex``,
  changed in this thread for exactly the structures whose records it changes (made whole when
  every record is read again), and set with them as one pair (``verified``): the cache takes
  both at once, and the event loop does no work for the index however large the registry.
* **While nothing changes**, every ``audit_interval`` seconds all records are read and hashed
  again: one that differs from the verified record the gate holds is logged and counted
  (``database_altered``); the gate keeps answering from the verified one.

Every adopted head (and every newer cosignature) is persisted before the gate answers from it.
Each refusal is an ``Incidents`` kind, logged once and counted.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from permitgate_client import RollbackError, VerificationError, VerifierKey
from permitgate_client._proofs import RegistryHead, verify_consistency, verify_registry_head
from permitgate_client.formats import Checkpoint

from registry.errors import PlainError
from registry.feed import FeedError, FeedView
from registry.statusmap import StatusMap
from registry.trusted_state import TrustedState
from server.cache import CachedStatus, PartyIndex
from server.held_records import HeldRecords
from server.incidents import Incidents

__all__ = [
    "Abandoned",
    "GateStateError",
    "RegistryVerifier",
    "Update",
    "check_follows",
    "held_head",
]

log = logging.getLogger("server.follower")

_REREAD_DOUBTFUL = 10_000  # doubtful structures read again at each poll, at most
_EXAMPLES = 5  # structure ids named in a log line about many


class GateStateError(PlainError):
    """The gate's own state directory cannot be used; the message says what to do."""


class Abandoned(Exception):
    """The gate is stopping: the poll under way stops here, and nothing more is persisted."""


@dataclass(slots=True)
class Update:
    """What one poll leaves the gate holding, for ``RegistryCache.install``."""

    head: RegistryHead | None  # None while no head's records are loaded
    records: Mapping[str, CachedStatus] = field(default_factory=dict)
    replace: bool = False  # ``records`` is every record (else: the ones that changed)
    doubtful: frozenset[str] = frozenset()
    superseded: str | None = None
    adopted: bool = False  # a new head (not only a newer cosignature) was adopted


def _body(note: bytes) -> bytes:
    return note[: note.find(b"\n\n") + 1]


def _describe(head: RegistryHead) -> str:
    when = "never" if head.cosigned_at is None else f"{head.cosigned_at:%Y-%m-%dT%H:%M:%SZ}"
    return f"serial {head.map.serial}, log size {head.size}, cosigned {when}"


def _examples(ids: Iterable[str]) -> str:
    some = sorted(ids)
    more = f" and {len(some) - _EXAMPLES} more" if len(some) > _EXAMPLES else ""
    return ", ".join(some[:_EXAMPLES]) + more


class RegistryVerifier:
    """The gate's verified state and the rules for changing it; one poll at a time."""

    def __init__(
        self,
        key: VerifierKey,
        state: TrustedState,
        incidents: Incidents,
        *,
        audit_interval: float | None = None,
        closing: threading.Event | None = None,
    ) -> None:
        self.key = key
        self.state = state
        self.incidents = incidents
        self.audit_interval = audit_interval  # None: never
        self._audited_at = time.monotonic()
        self.closing = threading.Event() if closing is None else closing
        self.head = held_head(state, key)
        self.map: StatusMap | None = None  # the held head's map, once built
        self._pending: dict[str, bytes] | None = None  # entries the map is to be built from
        self._loaded = False  # the held head's records have been read
        # The verified records and their party index (Art. 22), always set together. Never
        # changed in place: each change makes a new mapping (copying only the shards it
        # touches, ``HeldRecords``) and a new index, which the cache takes whole, so the cache
        # never holds records (or an index) of one head under another.
        self._verified: tuple[HeldRecords, PartyIndex] = self._whole({}, 0)
        self.doubtful: set[str] = set()  # in the held map, without a record that has its hash
        self._doubtful_frozen: frozenset[str] = frozenset()
        self.mark: datetime | None = None  # next_update_after for the next incremental read
        self.superseded_by: RegistryHead | None = None
        self.superseded: str | None = None

    @property
    def records(self) -> HeldRecords:
        """The verified records held (never changed in place)."""
        return self._verified[0]

    @property
    def party_index(self) -> PartyIndex:
        """The index of the parties ``records`` name (made for that very mapping)."""
        return self._verified[1]

    @property
    def verified(self) -> tuple[HeldRecords, PartyIndex]:
        """The verified records with their party index, as one pair."""
        return self._verified

    @staticmethod
    def _whole(records: Mapping[str, CachedStatus], size: int) -> tuple[HeldRecords, PartyIndex]:
        """``records`` as held, with their party index made from nothing."""
        held = HeldRecords(records)
        return held, PartyIndex.of(held, size)

    def _with(
        self, changed: Mapping[str, CachedStatus], size: int
    ) -> tuple[HeldRecords, PartyIndex]:
        """The records held with ``changed`` set, and the held index changed for them."""
        held = self.records.changed(changed)
        return held, self.party_index.changed(held, changed.keys(), size)

    @property
    def loaded(self) -> bool:
        """The held head's records have been read (since this gate started)."""
        return self._loaded

    def _held_map(self) -> StatusMap:
        """The held head's map; after a restart it is built from the persisted entries when
        first needed (the records were checked against those entries already)."""
        if self.map is None:
            held, entries = self.head, self._pending
            assert held is not None and entries is not None
            status_map = StatusMap(entries.items())
            if not _gives(status_map, held):
                raise GateStateError(
                    f"{self.state.path}: its entries do not give the status map of the head it "
                    f"holds ({_describe(held)}): the gate's own state is damaged; move it aside "
                    "and the gate adopts the registry's head afresh"
                )
            self.map, self._pending = status_map, None
        return self.map

    # --- one poll --------------------------------------------------------------------------

    def poll(self, view: FeedView) -> Update:
        """Read ``view``, verify what it shows, persist what is adopted; returns what to hold."""
        update: Update | None = None
        read: tuple[dict[str, CachedStatus], StatusMap] | None = None
        candidate = self._candidate(view)
        held = self.head
        if candidate is not None and held is not None and candidate.same_head(held):
            self._hold_cosignature(candidate)
        elif candidate is not None:
            update, read = self._adopt(view, candidate)
        if update is None and self.head is not None and not self._loaded:
            update = self._load_held(view, read)
        if update is None:
            update = Update(self.head if self.loaded else None)
            if self._pending is not None:
                self._held_map()  # now that the gate serves: ready for the next head
            if self.doubtful:
                update.records = self._reread_doubtful(view)
            if self._audit_due():
                self._audit(view)
        else:
            self._audited_at = time.monotonic()
        update.head = self.head if self.loaded else None
        update.superseded = self.superseded
        if self._doubtful_frozen != self.doubtful:
            self._doubtful_frozen = frozenset(self.doubtful)
        update.doubtful = self._doubtful_frozen
        return update

    # --- the head --------------------------------------------------------------------------

    def _candidate(self, view: FeedView) -> RegistryHead | None:
        """The feed's newest head if it verifies and may follow the held one; None (the
        incident reported) when it is refused."""
        note = view.checkpoint_note()
        if note is None:
            raise FeedError("the registry has no head (is it initialised?)")
        try:
            new = verify_registry_head(note, self.key)
        except VerificationError as exc:
            self.incidents.report(
                "bad_head",
                hashlib.sha256(note).digest(),
                "the registry's newest head does not verify with %s (%s): refused; %s",
                self.key.keyid_text,
                exc,
                self._keeping(),
            )
            return None
        if new.cosigned_at is None:
            self.incidents.report(
                "bad_head",
                (_body(note), "no cosignature"),
                "the registry's newest head (%s) carries no cosignature by %s: it is never fresh",
                _describe(new),
                self.key.keyid_text,
            )
        held = self.head
        if held is None:
            return new
        if new.order < held.order:
            self.incidents.report(
                "rollback",
                _body(note),
                "the registry's newest head (%s) is older than the head this gate verified "
                "already (%s): refused, the registry was rolled back (a restored backup, or "
                "rows deleted); %s",
                _describe(new),
                _describe(held),
                self._keeping(),
            )
            return None
        if new.same_head(held):
            return new
        if new.map.serial == held.map.serial:
            self._fork(new, held, f"two different heads with serial {held.map.serial}")
            return None
        try:
            check_follows(
                held.checkpoint, new.checkpoint, view.consistency_proof(held.size, new.size)
            )
        except (FeedError, VerificationError) as exc:
            if new.size <= held.size:  # two roots for one size, or a log that shrank: signed
                self._fork(new, held, f"the log of the newer head does not extend ours ({exc})")
            else:
                self._supersede(
                    new,
                    "inconsistent",
                    f"the registry's newer head ({_describe(new)}) cannot be shown to extend "
                    f"the head held ({_describe(held)}): {exc}",
                    evidence=(held.note, new.note),
                )
            return None
        return new

    def _keeping(self) -> str:
        if self.head is None:
            return "no registry data is held: no check is allowed"
        return (
            f"the gate keeps the head it holds ({_describe(self.head)}), which turns stale "
            "when its cosignature is too old"
        )

    def _fork(self, new: RegistryHead, held: RegistryHead, why: str) -> None:
        self._supersede(
            new,
            "fork",
            f"the registry key signed a head ({_describe(new)}) that conflicts with the head "
            f"held ({_describe(held)}): {why}",
            evidence=(held.note, new.note),
        )

    def _supersede(
        self, new: RegistryHead, kind: str, why: str, *, evidence: tuple[bytes, ...] = ()
    ) -> None:
        """A genuine head the gate cannot adopt shows that the held one is not the newest."""
        if self.superseded_by is None or new.order >= self.superseded_by.order:
            self.superseded_by = new
            self.superseded = why
        key = (kind, _body(new.note))
        if not evidence:
            self.incidents.report(kind, key, "%s", why)
        elif not self.incidents.known(kind, key):
            path = self.state.keep_evidence(kind, *evidence)
            self.incidents.report(kind, key, "%s; both notes are kept in %s", why, path)

    def _clear_superseded(self, adopted: RegistryHead) -> None:
        if self.superseded_by is None or adopted.order >= self.superseded_by.order:
            self.superseded_by = None
            self.superseded = None

    def _hold_cosignature(self, same: RegistryHead) -> None:
        """The head held, maybe cosigned later: keep the newest cosignature (and persist it)."""
        held = self.head
        assert held is not None
        if same.cosigned_at is None or same.note == held.note:
            return
        if held.cosigned_at is not None and same.cosigned_at <= held.cosigned_at:
            if same.cosigned_at < held.cosigned_at:
                self.incidents.report(
                    "rollback",
                    same.note,
                    "the registry's head carries an older cosignature (%s) than the one held "
                    "(%s): the gate keeps the newer",
                    same.cosigned_at,
                    held.cosigned_at,
                )
            return
        self._check_closing()
        self.state.save_head(same.note)
        self.head = same

    # --- the records -----------------------------------------------------------------------

    def _adopt(
        self, view: FeedView, new: RegistryHead
    ) -> tuple[Update | None, tuple[dict[str, CachedStatus], StatusMap] | None]:
        """Adopt ``new`` (verified, newer, consistent) if the records give its map root: the
        update, or None and the records read (for ``_load_held``)."""
        held = self.head
        if held is not None and self._loaded:
            changed = self._collect(
                view.status_records(above=held.size, next_update_after=self.mark)
            )
            mark = view.newest_next_update()
            few = len(changed) <= max(1000, len(self.records) // 8)
            if few and self._try_changes(new, changed):
                # A new mapping and index: the cache swaps them whole.
                verified = self._with(changed, new.size)
                self._check_closing()
                self.state.save(
                    new.note, changed=[(sid, s.digest, None) for sid, s in changed.items()]
                )
                self._adopted(new, mark)
                self.doubtful.difference_update(changed)
                self._verified = verified
                return Update(new, changed, adopted=True), None
        started = time.monotonic()
        records = self._collect(view.status_records())
        mark = view.newest_next_update()
        read_at = time.monotonic()
        status_map = StatusMap((sid, s.digest) for sid, s in records.items())
        mapped_at = time.monotonic()
        if not _gives(status_map, new):
            self._supersede(
                new,
                "map_mismatch",
                f"the records in the database do not give the status map of the registry's "
                f"newest head ({_describe(new)})"
                + self._differing(records)
                + ": it is not adopted",
            )
            return None, (records, status_map)
        verified = self._whole(records, new.size)
        self._check_closing()
        self._persist_all(new, records)
        self.map, self._verified, self._pending, self._loaded = status_map, verified, None, True
        self.doubtful = set()
        self._adopted(new, mark)
        log.info(
            "registry: every record read and hashed in %.1f s, the status map rebuilt in %.1f s, "
            "persisted in %.1f s",
            read_at - started,
            mapped_at - read_at,
            time.monotonic() - mapped_at,
        )
        return Update(new, records, replace=True, adopted=True), None

    def _adopted(self, new: RegistryHead, mark: datetime | None) -> None:
        self.head = new
        self.mark = mark
        self._clear_superseded(new)

    def _try_changes(self, new: RegistryHead, changed: Mapping[str, CachedStatus]) -> bool:
        """Apply ``changed`` to the held map; True if it then gives ``new``'s root, else the
        map is put back as it was."""
        status_map = self._held_map()
        undo: list[tuple[str, bytes | None]] = []
        for sid, status in changed.items():
            undo.append((sid, status_map.get(sid)))
            status_map.set(sid, status.digest)
        if _gives(status_map, new):
            return True
        for sid, old in reversed(undo):
            if old is None:
                status_map.remove(sid)
            else:
                status_map.set(sid, old)
        return False

    def _differing(self, records: Mapping[str, CachedStatus]) -> str:
        """For a log line: the records that differ from the held map (when it is loaded)."""
        if not self._loaded:
            return ""
        status_map = self._held_map()
        differ = [sid for sid, s in records.items() if status_map.get(sid) != s.digest]
        if not differ:
            return " (they are the records of the head held)"
        return f" ({len(differ)} differ from those of the head held: {_examples(differ)})"

    def _load_held(
        self, view: FeedView, read: tuple[dict[str, CachedStatus], StatusMap] | None
    ) -> Update:
        """The records of the held head, after a restart: those the database holds with the
        hash the head's map gives (the entries persisted with it); the others are doubtful.

        When every record has its entry's hash, the map is built at the next poll, not now:
        the entries were verified against the head before they were persisted.
        """
        held = self.head
        assert held is not None
        mark = view.newest_next_update()
        doubtful: set[str] = set()
        if read is not None and _gives(read[1], held):
            records, self.map = read
        else:
            records = self._collect(view.status_records()) if read is None else read[0]
            entries = {sid: digest for sid, digest, _ in self.state.entries()}
            self.map, self._pending = None, entries
            if len(records) != len(entries) or any(
                entries.get(sid) != s.digest for sid, s in records.items()
            ):
                self._held_map()  # the entries checked against the head before relying on them
                records = {sid: s for sid, s in records.items() if entries.get(sid) == s.digest}
                doubtful = set(entries.keys() - records.keys())
            else:
                # The same entries, made of the records' own id and digest objects, so that
                # the map built from them shares those rather than holding copies.
                self._pending = {sid: s.digest for sid, s in records.items()}
        verified = self._whole(records, held.size)
        self._verified, self.doubtful, self.mark, self._loaded = verified, doubtful, mark, True
        self._report_doubtful(doubtful, held)
        return Update(held, records, replace=True)

    def _report_doubtful(self, doubtful: set[str], held: RegistryHead) -> None:
        if doubtful:
            self.incidents.count(
                "record_unverified",
                doubtful,
                "%d structures have no record in the database with the hash the head held (%s) "
                "signs: %s; they answer RECORD_UNVERIFIED",
                len(doubtful),
                _describe(held),
                _examples(doubtful),
            )

    def _reread_doubtful(self, view: FeedView) -> dict[str, CachedStatus]:
        """Read again (some of) the doubtful structures; returns those now verified."""
        status_map = self._held_map()
        ids = [sid for sid, _ in zip(self.doubtful, range(_REREAD_DOUBTFUL), strict=False)]
        found = {
            sid: status
            for sid, status in self._collect(view.status_records_of(ids)).items()
            if status_map.get(sid) == status.digest
        }
        if found:
            assert self.head is not None
            self._verified = self._with(found, self.head.size)
            self.doubtful.difference_update(found)
            log.info(
                "registry: %d structures have their verified record again: %s",
                len(found),
                _examples(found),
            )
        return found

    def _audit_due(self) -> bool:
        return (
            self.audit_interval is not None
            and self._loaded
            and time.monotonic() - self._audited_at >= self.audit_interval
        )

    def _audit(self, view: FeedView) -> None:
        """Hash every record in the database again and name those that differ from the
        verified records held (the gate goes on answering from the verified ones)."""
        status_map = self._held_map()
        sha256 = hashlib.sha256
        closing = self.closing
        seen: set[str] = set()
        altered: set[tuple[str, bytes]] = set()
        for n, (sid, envelope) in enumerate(view.status_records()):
            if not n & 1023 and closing.is_set():
                raise Abandoned
            seen.add(sid)
            digest = sha256(envelope).digest()
            if sid not in self.doubtful and status_map.get(sid) != digest:
                altered.add((sid, digest))
        gone = (self.records.keys() - seen) | (self.doubtful - seen)
        altered |= {(sid, b"") for sid in gone}
        self._audited_at = time.monotonic()
        if altered:
            self.incidents.count(
                "database_altered",
                altered,
                "the database's records of %d structures are not those the head held (%s) "
                "signs: %s; the gate answers from the records it verified",
                len(altered),
                _describe(self.head) if self.head is not None else "none",
                _examples(sid for sid, _ in altered),
            )

    def _persist_all(self, new: RegistryHead, records: Mapping[str, CachedStatus]) -> None:
        """Persist ``new`` with all its records: only what differs from the state held (in the
        order of the state's key, which SQLite writes twice as fast as any other)."""
        stored = self.state.head()
        if stored is not None and _body(stored) == _body(new.note):
            self.state.save_head(new.note)
            return
        if stored is None:
            changed = sorted((sid, s.digest, None) for sid, s in records.items())
            self.state.save(new.note, changed=changed, replace=True)
            return
        old = {sid: digest for sid, digest, _ in self.state.entries()}
        changed = sorted(
            (sid, s.digest, None) for sid, s in records.items() if old.pop(sid, None) != s.digest
        )
        self.state.save(new.note, changed=changed, removed=sorted(old))

    def _collect(self, rows: Iterable[tuple[str, bytes]]) -> dict[str, CachedStatus]:
        """``(id, envelope)`` rows hashed into unverified ``CachedStatus`` (checked by the map).

        The cyclic garbage collector is paused meanwhile: the objects made here hold no cycles,
        and a million of them would set off full collections over the whole heap.
        """
        sha256 = hashlib.sha256
        closing = self.closing
        out: dict[str, CachedStatus] = {}
        paused = gc.isenabled()
        gc.disable()
        try:
            for n, (sid, envelope) in enumerate(rows):
                if not n & 1023 and closing.is_set():
                    raise Abandoned
                out[sid] = CachedStatus(envelope, sha256(envelope).digest())
        finally:
            if paused:
                gc.enable()
        return out

    def _check_closing(self) -> None:
        if self.closing.is_set():
            raise Abandoned


def held_head(state: TrustedState, key: VerifierKey) -> RegistryHead | None:
    """The head the gate's state directory holds, verified with the registry key (None: none
    yet); ``GateStateError`` saying what to do when the key does not verify it."""
    note = state.head()
    if note is None:
        return None
    try:
        return verify_registry_head(note, key)
    except VerificationError as exc:
        raise GateStateError(
            f"{state.path} holds a registry head that the registry key "
            f"{key.keyid_text} does not verify ({exc}): if the registry's key changed, "
            f"move {state.path} aside and the gate adopts the registry's head afresh"
        ) from exc


def check_follows(held: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise unless ``new``'s log extends ``held``'s by ``proof``: ``RollbackError`` for a
    shorter log, ``ForkError`` for one that does not extend it (``MalformedError`` for a proof
    of the wrong shape)."""
    if new.size < held.size:
        raise RollbackError(
            f"checkpoint: tree size {new.size} is older than {held.size}, held already"
        )
    verify_consistency(held.size, held.root_hash, new.size, new.root_hash, proof)


def _gives(status_map: StatusMap, head: RegistryHead) -> bool:
    return status_map.root() == head.map.root and len(status_map) == head.map.count
