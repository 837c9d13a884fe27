"""The registry's one way to write: ``open_writer`` signs only what the registry signed before.

Whoever can write the database (any row, any table, a restored backup) but holds no key must not
be able to make the registry sign anything derived from what they wrote. So the registry keeps
its own verified state beside its key (``registry.trusted_state``: the last head it signed, the
log's frontier at that head, each structure's record digest, and the departments enrolled in
its log with their keys) and trusts the database only where it agrees with that state. Every
writer (import, refresh, the registry service, a department's write) comes through
``open_writer``, which:

1. takes the state directory's lock, then the database's writer lock;
2. loads the state; an empty one (the first run with this directory) is rebuilt from the
   database after the full check ``registry verify`` makes (``registry.audit``), with a warning;
3. compares the database's newest head with the state's: the same head is fine; an older one,
   or none, means the database was rolled back (``RegistryRolledBack``); a newer one is adopted
   only when it verifies with the registry's key, its log extends the state's frontier and the
   stored records give its map root (another writer, with another state directory, signed it);
   anything else is ``RegistryDamaged``, naming the row;
4. checks that the log holds exactly the events the head covers;

and hands out a ``Writer``. The log continues from the state's frontier (never from a stored
``tree_state``); a structure's current state is its previous record as read back from the
database and checked against the state's digest (``verified_records``); what is due for
refresh comes from the state too, and so does each department's current key (``department``;
a department event appended through ``change_department`` reaches the state with the head that
signs it; a head adopted from another writer brings the department events it covers). After the
database transaction commits, the new head, the frontier, the changed digests and departments
are saved to the state: the database first, so a crash between
the two leaves a database one head ahead, which step 3 adopts next time. The departments'
writes made (their idempotency index, ``Writer.written``) are saved with the head too; a state
rebuilt after the full check, or a head adopted from another writer, takes them from the
statement events it covers (without the result's digest, which the log does not hold).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from permitgate_client import VerificationError, VerifierKey
from permitgate_client._proofs import RegistryHead, verify_registry_head
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.admin import (
    NOT_INITIALISED,
    REPAIR_ADVICE,
    STATE_NAME,
    NotInitialised,
    RegistryDamaged,
    RegistryRefused,
    RegistryRolledBack,
    WrongKey,
    newest_head,
)
from registry.audit import audit_session
from registry.errors import RegistryBusy
from registry.heads import cosign_head, sign_head
from registry.log import (
    DepartmentChange,
    DepartmentEntry,
    decode_event,
    fold_department,
    statement_write,
)
from registry.merkle import CompactTree, leaf_hash
from registry.records import StatusRecord, format_time
from registry.signing import Signer
from registry.status import (
    RECORD_VALIDITY,
    SigningPipeline,
    StatusRowValues,
    StatusSigner,
    WorkerPool,
    state_parts,
)
from registry.statusmap import StatusMap
from registry.storage import Database, EventRow, HeadRow, MetaRow, StatusRow, id_in
from registry.trusted_state import StateLocked, TrustedState, WrittenRow

__all__ = ["STATE_LOCK_WAIT", "HeldMap", "Writer", "open_writer", "refresh_records"]

log = logging.getLogger(__name__)

STATE_LOCK_WAIT = 30.0
"""Seconds a writer waits for the state directory's lock (held by another import or refresh, or
for a moment by the registry service) before giving up."""
_READ_BATCH = 5000
_LOOKUPS_BEFORE_LOADING = 2000  # single digest lookups before all entries are read at once


class HeldMap:
    """A status map a long-running writer (the service) keeps between its writes, so that a
    head over a few changed records costs those records' hashes, not a rebuild of the whole map
    (at least 65,536 bucket hashes, and every entry's at a million structures).

    It is used only while its root and count are the trusted head's (the state's): a write that
    changed it and then did not commit leaves it at another root, and the next head rebuilds it
    from the state's entries."""

    def __init__(self) -> None:
        self.status_map: StatusMap | None = None


class Writer:
    """The registry's write locks, held, and what it trusts: its last head, the log's frontier
    (``tree``, which the writer appends to) and each structure's record digest.

    Sign records through ``signed`` (a ``SigningPipeline``'s ``written`` hook), then the head
    with ``sign_head``; ``open_writer`` refuses to commit records or events without a head.
    """

    def __init__(
        self,
        session: Session,
        signer: Signer,
        origin: str,
        state: TrustedState,
        head: RegistryHead,
        tree: CompactTree,
        entries: dict[str, bytes] | None,
        held_map: HeldMap | None = None,
    ) -> None:
        self.session = session
        self._held_map = held_map
        self.signer = signer
        self.origin = origin
        self.head = head
        self.tree = tree
        self._state = state
        self._entries = entries  # read from the state when first needed
        self._lookups = 0
        self._new: dict[str, tuple[bytes, datetime]] = {}
        self._departments: dict[str, DepartmentEntry] = {}  # changed in this write
        self._written: dict[tuple[str, str], WrittenRow] = {}  # departments' writes made here
        self._signed_head: HeadRow | None = None
        self._cosigned: HeadRow | None = None

    @property
    def _trusted(self) -> dict[str, bytes]:
        """Each structure's record digest, as the state holds it."""
        if self._entries is None:
            self._entries = {sid: digest for sid, digest, _ in self._state.entries()}
        return self._entries

    @property
    def serial(self) -> int:
        """The serial of the last head the registry signed."""
        return self.head.map.serial

    def knows(self, structure_id: str) -> bool:
        """Whether the registry holds a signed record of ``structure_id`` (signed before, or
        in this write)."""
        return structure_id in self._new or self._trusted_digest(structure_id) is not None

    def _trusted_digest(self, structure_id: str) -> bytes | None:
        """The digest the state holds for ``structure_id``: looked up one by one for a write
        that touches a few structures, from all the entries, read once, for one that touches
        many (an import)."""
        if self._entries is None and self._lookups < _LOOKUPS_BEFORE_LOADING:
            self._lookups += 1
            entry = self._state.entry(structure_id)
            return None if entry is None else entry[1]
        return self._trusted.get(structure_id)

    def structure_ids(self) -> list[str]:
        """Every structure with a signed record, sorted."""
        return sorted(self._trusted.keys() | self._new.keys())

    def due(self, before: datetime) -> list[str]:
        """The structures whose signed record lapses before ``before``, from the state."""
        return self._state.due(before)

    def department(self, department_id: str) -> DepartmentEntry | None:
        """The department as the registry's state holds it (with this write's changes): its
        current key and whether it is revoked; None when it is not enrolled."""
        changed = self._departments.get(department_id)
        if changed is not None:
            return changed
        row = self._state.department(department_id)
        return None if row is None else DepartmentEntry(*row)

    def departments(self) -> list[DepartmentEntry]:
        """Every department enrolled, by id (with this write's changes)."""
        held = {row[0]: DepartmentEntry(*row) for row in self._state.departments()}
        held.update(self._departments)
        return [held[d] for d in sorted(held)]

    def change_department(self, change: DepartmentChange, seq: int) -> DepartmentEntry:
        """Note a department event appended at ``seq`` (the caller writes its row); it is saved
        to the state with the head. ``ValueError`` when it does not follow from the department
        as it is (``registry.log.fold_department``)."""
        entry = fold_department(self.department(change.id), change, seq)
        self._departments[change.id] = entry
        return entry

    def written(self, department_id: str, request_id: str) -> WrittenRow | None:
        """The write ``department_id`` made under ``request_id`` as the registry's state holds
        it (with this write's): its digest, first event and result digest; None when none."""
        made = self._written.get((department_id, request_id))
        return made if made is not None else self._state.written(department_id, request_id)

    def note_written(self, row: WrittenRow) -> None:
        """Note a department's write made in this write (its events appended, its
        ``department_write`` row written by the caller); saved to the state with the head."""
        self._written[(row[0], row[1])] = row

    @property
    def signed_records(self) -> int:
        """How many structures' records this write has signed."""
        return len(self._new)

    def signed(self, rows: Iterable[StatusRowValues]) -> None:
        """Note records this write signed (and wrote): their digests go into the next head."""
        for structure_id, _, next_update, digest, _, _ in rows:
            self._new[structure_id] = (digest, next_update)

    def verified_records(self, structure_ids: Collection[str]) -> dict[str, StatusRecord]:
        """The current signed record of each of ``structure_ids`` the registry knows, read from
        the database and checked against the digest the registry signed (before, or in this
        write); unknown ids are left out. ``RegistryDamaged`` names a row that differs."""
        expected: dict[str, bytes] = {}
        for sid in structure_ids:
            new = self._new.get(sid)
            digest = new[0] if new is not None else self._trusted_digest(sid)
            if digest is not None:
                expected[sid] = digest
        found: dict[str, StatusRecord] = {}
        dialect = self.session.get_bind().dialect.name
        wanted = list(expected)
        for start in range(0, len(wanted), _READ_BATCH):
            batch = wanted[start : start + _READ_BATCH]
            query = select(StatusRow.structure_id, StatusRow.envelope).where(
                id_in(StatusRow.structure_id, batch, dialect)
            )
            for sid, stored in self.session.execute(query):
                envelope = bytes(stored)
                if hashlib.sha256(envelope).digest() != expected[sid]:
                    raise RegistryDamaged(
                        f"status_record row of {sid}: not the record the registry signed (its "
                        f"SHA-256 differs from the one in {self._state.path}): {REPAIR_ADVICE}"
                    )
                found[sid] = _record_of(envelope, sid)
        missing = sorted(expected.keys() - found.keys())
        if missing:
            raise RegistryDamaged(
                f"status_record row of {missing[0]}: missing (the registry signed a record of "
                f"it){_and_more(missing)}: {REPAIR_ADVICE}"
            )
        return found

    def sign_head(self, now: datetime) -> HeadRow:
        """Sign the next head: the log as appended to ``tree``, and the map of the registry's
        records with those signed in this write (serial: the last one's plus 1)."""
        if self._signed_head is not None or self._cosigned is not None:
            raise RuntimeError("a write signs or cosigns one head")
        row = sign_head(
            self.signer,
            origin=self.origin,
            tree=self.tree,
            status_map=self._status_map(),
            serial=self.serial + 1,
            now=now,
        )
        self.session.add(row)
        self._signed_head = row
        return row

    def _status_map(self) -> StatusMap:
        """The map of the registry's records with those signed in this write."""
        held = self._held_map
        status_map = None if held is None else held.status_map
        if status_map is not None and (status_map.root(), len(status_map)) == (
            self.head.map.root,
            self.head.map.count,
        ):
            for sid, (digest, _) in self._new.items():
                status_map.set(sid, digest)
            return status_map
        entries = dict(self._trusted)
        for sid, (digest, _) in self._new.items():
            entries[sid] = digest
        status_map = StatusMap(entries.items())
        if held is not None:
            held.status_map = status_map
        return status_map

    def cosign_head(self, now: datetime) -> HeadRow:
        """Cosign the registry's last head again, dated ``now`` (the heartbeat that keeps
        gates' data provably fresh): its row's cosignature is replaced, and the state's copy of
        the head after the commit. The head is the one ``open_writer`` found both in the state
        and in the database."""
        if self._signed_head is not None or self._cosigned is not None:
            raise RuntimeError("a write signs or cosigns one head")
        row = self.session.get(HeadRow, self.serial)
        assert row is not None, "open_writer found this head in the database"
        cosign_head(self.signer, row, now)
        self._cosigned = row
        return row

    def _check_complete(self) -> None:
        if self._signed_head is None and (self.tree.size != self.head.size or self._new):
            raise RuntimeError("records or events were written without signing a head")

    def _save(self) -> None:
        """After the commit: the state adopts the head this write signed (or cosigned)."""
        if self._cosigned is not None:
            self._state.save_head(self._cosigned.cosigned_note())
        if self._signed_head is None:
            return
        self._state.save(
            self._signed_head.cosigned_note(),
            frontier=self.tree.state,
            changed=[(sid, digest, at) for sid, (digest, at) in self._new.items()],
            departments=list(self._departments.values()),
            written=list(self._written.values()),
        )


@contextmanager
def open_writer(
    db: Database, signer: Signer, state_dir: Path, *, held_map: HeldMap | None = None
) -> Iterator[Writer]:
    """Hold the registry's write locks and hand out a ``Writer`` over what it trusts; commit
    when the block ends, then save the state. Raises ``RegistryRolledBack`` or
    ``RegistryDamaged`` (nothing written) when the database is not what the registry signed.
    ``held_map``: the status map a writer that writes often keeps between writes."""
    if not db.is_initialised():
        raise NotInitialised(NOT_INITIALISED)
    state = TrustedState(state_dir, STATE_NAME)
    try:
        with _locked(state):
            with db.writer() as session:
                origin = session.scalar(select(MetaRow.value).where(MetaRow.key == "origin"))
                public_key = session.scalar(
                    select(MetaRow.value).where(MetaRow.key == "public_key")
                )
                if origin is None:
                    raise NotInitialised(NOT_INITIALISED)
                if public_key != signer.verifier.text:
                    raise WrongKey(
                        f"this registry is signed by {public_key}, not by {signer.verifier.text}"
                    )
                writer = _open(session, signer, origin, state, held_map)
                yield writer
                writer._check_complete()
            # The transaction committed as the block above ended. The state is saved before the
            # lock is let go, so the next writer never reads a state older than the database.
            writer._save()
    finally:
        state.close()


@contextmanager
def _locked(state: TrustedState) -> Iterator[None]:
    try:
        with state.lock(STATE_LOCK_WAIT):
            yield
    except StateLocked as exc:
        raise RegistryBusy(
            f"the registry's state {state.directory} is locked by another writer: another "
            "import or refresh is running; try again when it has finished"
        ) from exc


def _open(
    session: Session,
    signer: Signer,
    origin: str,
    state: TrustedState,
    held_map: HeldMap | None = None,
) -> Writer:
    key = signer.verifier
    if state.head() is None:
        _adopt_after_full_check(session, key, origin, state)
    head, tree = _trusted_head(key, state)
    entries: dict[str, bytes] | None = None
    row = newest_head(session)
    rollback = (
        f"restore the newest backup; or move {state.directory} aside to re-adopt the "
        "database after a full check"
    )
    ours = f"serial {head.map.serial} (log size {head.size}){_cosigned(head)}"
    if row is None:
        raise RegistryRolledBack(
            f"the database holds no head at all, but this registry signed head {ours}: {rollback}"
        )
    if row.serial < head.map.serial:
        raise RegistryRolledBack(
            f"the database was rolled back: its newest head is serial {row.serial} (log size "
            f"{row.size}), but this registry signed head {ours}: {rollback}"
        )
    stored = _verified_row(row, key)
    if row.serial == head.map.serial:
        if not stored.same_head(head):
            raise RegistryDamaged(
                f"head row serial {row.serial}: not the head this registry signed (its state "
                f"in {state.directory} holds another head of that serial): {REPAIR_ADVICE}"
            )
    else:
        trusted = {sid: digest for sid, digest, _ in state.entries()}
        head, tree, entries = _catch_up(session, state, head, tree, trusted, row, stored)
    if row.tree_state != tree.state:
        raise RegistryDamaged(
            f"head row serial {row.serial}: its tree_state is not the log's frontier the "
            f"registry signed: {REPAIR_ADVICE}"
        )
    _check_event_count(session, head)
    return Writer(session, signer, origin, state, head, tree, entries, held_map)


def _cosigned(head: RegistryHead) -> str:
    return "" if head.cosigned_at is None else f", cosigned {format_time(head.cosigned_at)}"


def _trusted_head(key: VerifierKey, state: TrustedState) -> tuple[RegistryHead, CompactTree]:
    """The state's head and frontier, which must agree (the state is the registry's own)."""
    note = state.head()
    assert note is not None
    damaged = (
        f"the registry's state {state.path} is damaged: restore it from its backup, or move "
        f"{state.directory} aside to re-adopt the database after a full check"
    )
    try:
        head = verify_registry_head(note, key)
        tree = CompactTree.from_state(head.size, state.frontier() or b"")
    except (VerificationError, ValueError) as exc:
        raise RegistryRefused(f"{damaged} ({exc})") from exc
    if tree.root() != head.checkpoint.root_hash:
        raise RegistryRefused(f"{damaged} (its frontier is not its head's log)")
    return head, tree


def _verified_row(row: HeadRow, key: VerifierKey) -> RegistryHead:
    """A stored head, verified with the registry's key, whose columns say what its note says."""
    try:
        head = verify_registry_head(row.cosigned_note(), key)
    except VerificationError as exc:
        raise RegistryDamaged(f"head row serial {row.serial}: {exc}: {REPAIR_ADVICE}") from exc
    if (head.map.serial, head.size, head.checkpoint.root_hash, head.map.root) != (
        row.serial,
        row.size,
        bytes(row.root_hash),
        bytes(row.map_root),
    ):
        raise RegistryDamaged(
            f"head row serial {row.serial}: its columns differ from its signed note: "
            f"{REPAIR_ADVICE}"
        )
    return head


def _catch_up(
    session: Session,
    state: TrustedState,
    head: RegistryHead,
    tree: CompactTree,
    entries: dict[str, bytes],
    row: HeadRow,
    stored: RegistryHead,
) -> tuple[RegistryHead, CompactTree, dict[str, bytes]]:
    """Adopt ``stored``, a newer head another writer of this registry signed, once its log
    extends ours and the stored records give its map root; save it to the state."""
    where = f"head row serial {row.serial}"
    if stored.size < head.size:
        raise RegistryDamaged(
            f"{where}: a later head over a shorter log ({stored.size} events) than the "
            f"{head.size} of serial {head.map.serial}, which this registry signed: {REPAIR_ADVICE}"
        )
    extended = CompactTree.from_state(tree.size, tree.state)
    departments: dict[str, DepartmentEntry] = {}
    written: dict[tuple[str, str], WrittenRow] = {}
    events = select(EventRow.seq, EventRow.body).where(
        EventRow.seq >= head.size, EventRow.seq < stored.size
    )
    for seq, body in session.execute(events.order_by(EventRow.seq)):
        if seq != extended.size:
            raise RegistryDamaged(f"event {extended.size}: missing ({where} covers it)")
        try:
            event = decode_event(bytes(body))
        except ValueError as exc:
            raise RegistryDamaged(f"event {seq}: {exc}: {REPAIR_ADVICE}") from exc
        if event.seq != seq:
            raise RegistryDamaged(f"event {seq}: its bytes say it is event {event.seq}")
        if event.department is not None:  # trusted once the head's root covers it (below)
            change = event.department
            held = departments.get(change.id)
            if held is None and (row_now := state.department(change.id)) is not None:
                held = DepartmentEntry(*row_now)
            try:
                departments[change.id] = fold_department(held, change, seq)
            except ValueError as exc:
                raise RegistryDamaged(f"event {seq}: {exc}: {REPAIR_ADVICE}") from exc
        if event.statement is not None:
            _note_statement(state, written, seq, event.statement)
        extended.append(leaf_hash(bytes(body)))
    if extended.size != stored.size:
        raise RegistryDamaged(f"event {extended.size}: missing ({where} covers it)")
    if extended.root() != stored.checkpoint.root_hash:
        raise RegistryDamaged(
            f"{where}: the events {head.size} to {stored.size - 1} do not extend the log this "
            f"registry signed at serial {head.map.serial} to its root: {REPAIR_ADVICE}"
        )
    digests: dict[str, bytes] = {}
    changed: list[tuple[str, bytes, datetime | None]] = []
    records = select(StatusRow.structure_id, StatusRow.envelope)
    for sid, envelope in session.execute(records, execution_options={"yield_per": _READ_BATCH}):
        envelope = bytes(envelope)
        digest = hashlib.sha256(envelope).digest()
        digests[sid] = digest
        if entries.get(sid) != digest:
            changed.append((sid, digest, _record_of(envelope, sid).next_update))
    status_map = StatusMap(digests.items())
    if (status_map.root(), len(status_map)) != (stored.map.root, stored.map.count):
        raise RegistryDamaged(
            f"{where}: the stored status records do not give its map root ({len(status_map)} "
            f"records against {stored.map.count} signed): {REPAIR_ADVICE}"
        )
    removed = entries.keys() - digests.keys()
    state.save(
        row.cosigned_note(),
        frontier=extended.state,
        changed=changed,
        removed=removed,
        departments=list(departments.values()),
        written=list(written.values()),
    )
    log.info(
        "adopted head serial %d (log size %d) from the database: signed by another writer of "
        "this registry after serial %d",
        stored.map.serial,
        stored.size,
        head.map.serial,
    )
    return stored, extended, digests


def _adopt_after_full_check(
    session: Session, key: VerifierKey, origin: str, state: TrustedState
) -> None:
    """An empty state: rebuild it from the database once the full check passes."""
    report = audit_session(session, key, origin, tables=False)
    if not report.ok or report.newest is None or report.frontier is None:
        shown = "; ".join(report.problems[:5])
        raise RegistryDamaged(
            f"the registry's state in {state.directory} is empty, and the database fails the "
            f"full check it must pass to be adopted: {shown}{_and_more(report.problems, 5)}: "
            "run 'permitgate registry verify' to see every difference, and restore the "
            "database from a backup"
        )
    state.save(
        report.newest.cosigned_note(),
        frontier=report.frontier.state,
        changed=report.entries,
        departments=list(report.departments.values()),
        written=list(report.written.values()),
        replace=True,
    )
    log.warning(
        "the registry's state in %s was empty: it was rebuilt from the database after a full "
        "check (head serial %d, %d events, %d status records)",
        state.directory,
        report.newest.serial,
        report.frontier.size,
        len(report.entries),
    )


def _note_statement(
    state: TrustedState,
    written: dict[tuple[str, str], WrittenRow],
    seq: int,
    statement: dict[str, object],
) -> None:
    """A statement event of a head adopted from another writer: its write enters the
    idempotency index at its first event (a write of several records has several events). The
    result's digest is not in the log: None (the row's digest and event are still checked)."""
    said = statement_write(statement)
    if said is None:
        raise RegistryDamaged(f"event {seq}: its statement is not a write statement")
    department, request_id, _, digest = said
    if (department, request_id) in written or state.written(department, request_id):
        return
    written[(department, request_id)] = (department, request_id, digest, seq, None)


def _check_event_count(session: Session, head: RegistryHead) -> None:
    """The log must hold exactly the events ``head`` covers, numbered 0 to size - 1."""
    size = head.size
    count, first, last = session.execute(
        select(func.count(), func.min(EventRow.seq), func.max(EventRow.seq))
    ).one()
    if count == size and (size == 0 or (first == 0 and last == size - 1)):
        return
    raise RegistryDamaged(
        f"the newest checkpoint covers {size} events but the log holds {count}"
        f"{'' if last is None else f' (the last numbered {last})'}"
        f"{_event_rows(session, size)}: {REPAIR_ADVICE}"
    )


def _event_rows(session: Session, size: int) -> str:
    """Which event rows were added or are missing, named (the first few of each)."""
    added = list(
        session.scalars(
            select(EventRow.seq)
            .where((EventRow.seq >= size) | (EventRow.seq < 0))
            .order_by(EventRow.seq)
            .limit(4)
        )
    )
    missing: list[int] = []
    expected = 0
    covered = select(EventRow.seq).where(EventRow.seq >= 0, EventRow.seq < size)
    for seq in session.scalars(covered.order_by(EventRow.seq)):
        missing.extend(range(expected, min(seq, expected + 4 - len(missing))))
        expected = seq + 1
        if len(missing) >= 4:
            break
    if len(missing) < 4:
        missing.extend(range(expected, min(size, expected + 4 - len(missing))))
    said = []
    if missing:
        said.append("missing: " + _seqs(missing))
    if added:
        said.append("added: " + _seqs(added))
    return "; " + "; ".join(said) if said else ""


def _seqs(seqs: list[int]) -> str:
    shown = ", ".join(f"event {s}" for s in seqs[:3])
    return shown + (" and more" if len(seqs) > 3 else "")


def _and_more(items: Collection[object], shown: int = 1) -> str:
    more = len(items) - shown
    return f" (and {more} more)" if more > 0 else ""


def _record_of(envelope: bytes, structure_id: str) -> StatusRecord:
    """The record in an envelope whose digest the registry signed (so its signature need not
    be checked again)."""
    try:
        payload = base64.b64decode(orjson.loads(envelope)["payload"], validate=True)
        record = StatusRecord.from_json(orjson.loads(payload))
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryDamaged(
            f"status_record row of {structure_id}: not a status record ({exc}): {REPAIR_ADVICE}"
        ) from exc
    if record.structure.id != structure_id:
        raise RegistryDamaged(
            f"status_record row of {structure_id}: describes {record.structure.id!r}: "
            f"{REPAIR_ADVICE}"
        )
    return record


def refresh_records(
    db: Database,
    signer: Signer,
    *,
    state_dir: Path,
    now: datetime | None = None,
    within: timedelta = RECORD_VALIDITY / 2,
    everything: bool = False,
) -> int:
    """Re-sign the status records that lapse within ``within`` (all with ``everything``).

    A record is good until its ``next_update``; gates answer REVIEW after that. Run this
    periodically (daily, say) so that structures nobody changes keep current records. What is
    due comes from the registry's state, and each record is re-signed from its previous signed
    record, unchanged but for the current log size and the new dates. Returns how many records
    were re-signed.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with open_writer(db, signer, state_dir) as writer:
        ids = writer.structure_ids() if everything else writer.due(now + within)
        if not ids:
            return 0
        status_signer = StatusSigner(signer, now=now)
        with (
            WorkerPool(status_signer) as pool,
            SigningPipeline(
                writer.session,
                status_signer,
                written=lambda rows, _tag: writer.signed(rows),
                pool=pool,
            ) as pipeline,
        ):
            for start in range(0, len(ids), _READ_BATCH):
                batch = ids[start : start + _READ_BATCH]
                records = writer.verified_records(batch)
                parts = [
                    (sid, state_parts(r.structure, r.permits, r.cases))
                    for sid, r in records.items()
                ]
                pipeline.submit(parts, writer.tree.size)
            pipeline.finish()
        writer.sign_head(now)
    return len(ids)
