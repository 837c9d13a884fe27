"""The registry data a gate answers from: the head it holds and each structure's current record.

Nothing reaches this cache unverified: ``server.verifier`` checks every head against the
registry key and the head held before it, and every record by its SHA-256 against the status
map the head signs; the follower installs a head and its records together, on the event loop,
so a request never sees a record newer than the head it would cite.

A request costs a dictionary look-up. A record is kept as the envelope bytes it came in and
parsed the first time a check asks for it (so a million structures load in seconds and most
are never parsed); one that cannot be parsed as the status record of the structure it is filed
under answers RECORD_UNVERIFIED from then on. So does a structure the held head's map holds
but whose record in the database is not the one the map signs (*doubtful*): never an older
record as if current, never NOT_IN_REGISTRY.

The embedded cache also knows every case that names a party (Art. 22), from verified records
only: an index party key (``party_key``: a party however typed) -> structures (``PartyIndex``),
so that ``cases_naming`` is a dictionary
read plus those structures' records. The verifier keeps the index with the records it verified,
in its own thread, changing it for exactly the structures whose records it changed, and hands it
over with them: installing it is a swap, however many structures the registry holds, and the
cache holds an index only with the mapping it was made for. A record is looked into for a party
without being parsed when its payload cannot name one (no ``"party"`` member, no escape that
could spell it); one that could is parsed (and, if it cannot be read, is doubtful). A doubtful
structure's record may name any party, so ``cases_naming`` reports them all.

Freshness is the age of the held head's cosignature, on the wall clock: the data is fresh while
``now - cosigned_at <= max_staleness``. It is stale before any head is held, when the held head
carries no valid cosignature, and at once when a newer (or conflicting) genuine head was seen
that could not be adopted (*superseded*): the head held is then known not to be the newest.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson
from permitgate_client import (
    FromTheFutureError,
    MalformedError,
    VerificationError,
    WrongStructureError,
)
from permitgate_client._proofs import RegistryHead
from permitgate_client.formats import Checkpoint, parse_envelope

from registry.records import Case, StatusRecord
from registry.trust import STATUS_PAYLOAD_TYPE
from registry.vocabulary import party_key
from server.incidents import Incidents

__all__ = [
    "CachedStatus",
    "ChangeListener",
    "PartyCases",
    "PartyIndex",
    "RegistryCache",
    "WholeRegistryNeeded",
    "read_status_record",
]

ChangeListener = Callable[[int, Collection[str] | None], None]
"""Told, on the event loop, after a head is installed: the registry version (log size) now held,
and the structures whose records changed with it (None: any may have, as after a full load)."""

log = logging.getLogger(__name__)


class WholeRegistryNeeded(Exception):
    """The question needs every verified record (no record may name the party unseen), and this
    cache holds only those asked of it."""


@dataclass(frozen=True, slots=True)
class PartyCases:
    """What the verified registry says of a party: every case naming it, and what cannot be
    vouched for."""

    cases: tuple[Case, ...]
    """Every case of a verified current record that names the party, by structure then case."""
    unverified: Set[str]
    """The structures whose current record cannot be verified (it may name the party)."""
    next_update: datetime | None
    """The earliest ``next_update`` of the records those cases come from (None: no case)."""


def _base64_cores(needle: bytes) -> tuple[bytes, ...]:
    """What standard base64 of any bytes holding ``needle`` holds, at each of the three places
    it can fall in a 3-byte group: the characters made of ``needle``'s bits alone."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + needle + bytes(3))
        first = -(-8 * shift // 6)  # the first character whose bits all come from needle
        end = 8 * (shift + len(needle)) // 6
        cores.append(encoded[first:end])
    return tuple(cores)


_PARTY_MEMBER: Final = _base64_cores(b'"party"')
"""One of these is in a status envelope whose payload holds ``"party"`` (rarely in others)."""


def _may_name_party(envelope: bytes) -> bool:
    """Whether a status envelope's record could name a party, read without decoding it: its
    base64 payload could hold a ``"party"`` member, or the envelope holds an escape (which
    could hide one; then the record is parsed to find out). A record is signed as canonical
    JSON, in which a member name is never escaped."""
    first, second, third = _PARTY_MEMBER  # substring searches: faster than one regular expression
    return b"\\" in envelope or first in envelope or second in envelope or third in envelope


class CachedStatus:
    """One structure's current status record: its SHA-256 (the value the map signs), and the
    envelope until it is first read, then the parsed record."""

    __slots__ = ("digest", "envelope", "record")

    def __init__(self, envelope: bytes, digest: bytes, record: StatusRecord | None = None) -> None:
        self.envelope = envelope
        self.digest = digest
        self.record = record

    def __repr__(self) -> str:
        return f"CachedStatus(digest={self.digest.hex()[:16]}…, parsed={self.record is not None})"


def read_status_record(envelope: bytes, structure_id: str, size: int) -> StatusRecord:
    """The record in a status envelope already verified by its hash, checked against where it
    is filed: ``MalformedError``, ``WrongStructureError`` or ``FromTheFutureError`` otherwise.

    No signature is checked: the head's signature over the map covers the envelope's hash.
    """
    env = parse_envelope(envelope)
    if env.payload_type != STATUS_PAYLOAD_TYPE:
        raise MalformedError(f"envelope: payload type {env.payload_type!r}, not a status record")
    try:
        record = StatusRecord.from_json(orjson.loads(env.payload))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise MalformedError(f"status record: {exc}") from exc
    if record.structure.id != structure_id:
        raise WrongStructureError(
            f"status record: describes {record.structure.id!r} but is filed under {structure_id!r}"
        )
    if record.tree_size > size:
        raise FromTheFutureError(
            f"status record of {structure_id}: tree size {record.tree_size} is beyond the "
            f"head's {size}"
        )
    return record


_NO_PARTY: Final[frozenset[str]] = frozenset()


def _parties_named(
    held: CachedStatus | None, structure_id: str, size: int
) -> tuple[frozenset[str], str | None]:
    """The parties the record ``held`` names, and why it cannot be read (None: it can).

    A record that cannot name a party is not parsed; one parsed keeps its parsed record (so a
    request does not parse it again). Only records no request can see yet are looked into from
    another thread than the event loop's: those of a mapping not yet installed.
    """
    if held is None:
        return _NO_PARTY, None
    record = held.record
    if record is None:
        if not _may_name_party(held.envelope):
            return _NO_PARTY, None
        try:
            record = read_status_record(held.envelope, structure_id, size)
        except VerificationError as exc:
            return _NO_PARTY, str(exc)
        held.record, held.envelope = record, b""
    return frozenset(party_key(c.party) for c in record.cases if c.party is not None), None


@dataclass(frozen=True, slots=True)
class PartyIndex:
    """Which structures' verified records name each party (Art. 22), for one mapping of records.

    Made whole from a mapping (``of``) or from the index of the mapping before it and the
    structures whose records differ (``changed``), never altered afterwards: the verifier makes
    the next one in its thread while requests read the one installed, and the cache holds an
    index only with the very mapping it was made for (``records``).
    """

    records: Mapping[str, CachedStatus] = field(compare=False, repr=False)
    """The mapping of records this index is of."""
    size: int
    """The log size its records were read against (a record from beyond it cannot be read)."""
    structures: Mapping[str, frozenset[str]]
    """party key (``party_key``) -> the structures whose record names it."""
    parties: Mapping[str, frozenset[str]]
    """structure -> the party keys its record names (only structures whose record names one)."""
    unreadable: Mapping[str, str]
    """structure -> why its record, verified by hash, cannot be read (it may name any party)."""

    @classmethod
    def of(cls, records: Mapping[str, CachedStatus], size: int) -> PartyIndex:
        """The index of ``records`` made from nothing: each record looked into once."""
        structures: dict[str, set[str]] = {}
        parties: dict[str, frozenset[str]] = {}
        unreadable: dict[str, str] = {}
        may_name = _may_name_party
        for structure_id, held in records.items():
            if held.record is None and not may_name(held.envelope):
                continue  # the common case, kept to one test per record
            named, why = _parties_named(held, structure_id, size)
            if why is not None:
                unreadable[structure_id] = why
            elif named:
                parties[structure_id] = named
                for party in named:
                    structures.setdefault(party, set()).add(structure_id)
        frozen = {party: frozenset(sids) for party, sids in structures.items()}
        return cls(records, size, frozen, parties, unreadable)

    def changed(
        self, records: Mapping[str, CachedStatus], structure_ids: Iterable[str], size: int
    ) -> PartyIndex:
        """The index of ``records``, which differ from this index's only in the records of
        ``structure_ids`` (added, replaced, or removed: absent from ``records``).

        The work is that of the structures named; each part of the index that changes is
        copied (a dictionary copy, in C), the others are shared.
        """
        gained: dict[str, set[str]] = {}  # party -> structures whose record now names it
        lost: dict[str, set[str]] = {}  # party -> structures whose record no longer does
        parties_now: dict[str, frozenset[str]] = {}
        unreadable_now: dict[str, str | None] = {}
        for structure_id in structure_ids:
            named, why = _parties_named(records.get(structure_id), structure_id, size)
            before = self.parties.get(structure_id, _NO_PARTY)
            if named != before:
                parties_now[structure_id] = named
                for party in named - before:
                    gained.setdefault(party, set()).add(structure_id)
                for party in before - named:
                    lost.setdefault(party, set()).add(structure_id)
            if self.unreadable.get(structure_id) != why:
                unreadable_now[structure_id] = why
        structures, parties, unreadable = self.structures, self.parties, self.unreadable
        if gained or lost:
            structures = dict(structures)
            for party in gained.keys() | lost.keys():
                now = structures.get(party, _NO_PARTY).union(gained.get(party, ()))
                now = now.difference(lost.get(party, ()))
                if now:
                    structures[party] = now
                else:
                    structures.pop(party, None)
        if parties_now:
            parties = dict(parties)
            for structure_id, named in parties_now.items():
                if named:
                    parties[structure_id] = named
                else:
                    parties.pop(structure_id, None)
        if unreadable_now:
            unreadable = dict(unreadable)
            for structure_id, why in unreadable_now.items():
                if why is None:
                    unreadable.pop(structure_id, None)
                else:
                    unreadable[structure_id] = why
        return PartyIndex(records, size, structures, parties, unreadable)


class RegistryCache:
    holds_every_record = True
    """Whether every verified record is held (so a district or every structure can be listed)."""

    def __init__(self, *, max_staleness: float, incidents: Incidents | None = None) -> None:
        self.max_staleness = max_staleness
        self.incidents = Incidents() if incidents is None else incidents
        self.head: RegistryHead | None = None  # None until a head and its records are loaded
        self.superseded: str | None = None  # why the held head is known not to be the newest
        self._records: Mapping[str, CachedStatus] = {}
        self._doubtful: Set[str] = frozenset()  # held in the map, no verifiable record
        self._unreadable: set[str] = set()  # verified by hash, but not a readable record
        self._fresh_until: datetime | None = None
        self._cosigned: datetime | None = None  # the held head's cosigned time, as signed
        self._counted_from: datetime | None = None  # and as counted (never ahead of our clock)
        self.listeners: list[ChangeListener] = []  # told of each change installed
        # The map buckets the head last installed changed, where the structures told to the
        # listeners may not be all of those that changed in them (a shared cache knows its
        # changed buckets from verified data, the structures in them only from hints).
        self.changed_buckets: Collection[int] = ()
        # Art. 22: the index of the verified records held (made by the verifier, off the loop).
        self._parties = PartyIndex.of(self._records, 0)

    def __len__(self) -> int:
        return len(self._records)

    # --- what a request reads ------------------------------------------------------------

    @property
    def size(self) -> int:
        """The registry version (log size) held; 0 before any head."""
        return 0 if self.head is None else self.head.size

    @property
    def checkpoint(self) -> Checkpoint | None:
        return None if self.head is None else self.head.checkpoint

    @property
    def checkpoint_note(self) -> bytes:
        """The held head with its newest cosignature (what receipts and GetKeys carry)."""
        return b"" if self.head is None else self.head.note

    def get(self, structure_id: str) -> CachedStatus | None:
        """The structure's verified record, parsed; None when none is held (or it cannot be
        read: then the structure is doubtful from now on)."""
        held = self._records.get(structure_id)
        if held is None or held.record is not None:
            return held
        try:
            held.record = read_status_record(held.envelope, structure_id, self.size)
        except VerificationError as exc:
            self._unreadable.add(structure_id)
            self._doubtful = self._doubtful | {structure_id}
            self._report_unreadable(structure_id, held, str(exc))
            return None
        held.envelope = b""  # parsed: the bytes are no longer needed
        return held

    def _report_unreadable(self, structure_id: str, held: CachedStatus, why: str) -> None:
        self.incidents.report(
            "record_unverified",
            (structure_id, held.digest),
            "the status record of %s matches the signed map but cannot be read (%s): it "
            "answers RECORD_UNVERIFIED",
            structure_id,
            why,
        )

    async def ensure(self, structure_ids: Collection[str]) -> None:
        """Nothing to fetch: every verified record is held (``SharedCache`` fetches)."""

    def structure_ids(self) -> list[str]:
        """Every structure held, as of now (a copy: installs may follow while it is read)."""
        return list(self._records)

    @property
    def doubtful(self) -> Set[str]:
        """The structures the held map has whose current record cannot be verified."""
        return self._doubtful

    def is_doubtful(self, structure_id: str) -> bool:
        """The held map has the structure, but its current record cannot be verified."""
        return structure_id in self._doubtful

    def cases_naming(self, party_id: str) -> PartyCases:
        """Every case of a verified current record that names ``party_id`` (a dictionary read and
        those records), and the structures whose record cannot be verified."""
        key = party_key(party_id)
        cases: list[Case] = []
        next_update: datetime | None = None
        for structure_id in sorted(self._parties.structures.get(key, ())):
            held = self.get(structure_id)
            if held is None or held.record is None:  # unreadable now: doubtful, reported below
                continue
            record = held.record
            named = [c for c in record.cases if c.party is not None and party_key(c.party) == key]
            if named:
                cases.extend(named)
                if next_update is None or record.next_update < next_update:
                    next_update = record.next_update
        return PartyCases(tuple(cases), self._doubtful, next_update)

    def is_stale(self, now: datetime | None = None) -> bool:
        """True unless the held head was cosigned within ``max_staleness`` of ``now``."""
        until = self._fresh_until
        return until is None or (datetime.now(UTC) if now is None else now) > until

    def stale_because(self, now: datetime | None = None) -> str | None:
        """Why the data is stale now, in words; None while it is fresh."""
        if not self.is_stale(now):
            return None
        head = self.head
        if head is None:
            return "no verified registry data yet"
        if self.superseded is not None:
            return self.superseded
        if head.cosigned_at is None:
            return "the registry head held carries no valid cosignature"
        return (
            f"the registry head held was last cosigned at {head.cosigned_at:%Y-%m-%dT%H:%M:%SZ}, "
            f"more than {self.max_staleness:g} s ago"
        )

    def report_stale(self) -> None:
        """Count (and log once) each spell of stale data on a head held."""
        head = self.head
        why = self.stale_because()
        if head is None or why is None:
            return
        key = head.note if self.superseded is None else (head.checkpoint, self.superseded)
        self.incidents.report("stale", key, "data stale, no check is allowed: %s", why)

    # --- what the follower installs ------------------------------------------------------

    def install(
        self,
        head: RegistryHead | None,
        records: Mapping[str, CachedStatus],
        *,
        replace: bool,
        doubtful: Set[str],
        superseded: str | None,
        now: datetime | None = None,
        parties: PartyIndex | None = None,
        changed: Set[str] | None = None,
    ) -> None:
        """Hold ``head`` with ``records`` (all of them with ``replace``, else the ones that
        changed), ``doubtful`` the structures whose record cannot be verified, and ``parties``
        the index of the records then held (``PartyIndex``), made off the event loop. With
        ``replace``, ``changed`` names every structure whose record differs from those held
        before (None: any may), so that the listeners look at those only.

        Without ``parties`` made for the very mapping held, the index is made here: from the
        one held and the records changed, or (a new mapping without one) whole.
        """
        before = self._records
        size = 0 if head is None else head.size
        if replace:
            self._records = records
            # A record held again unchanged stays unreadable: read again, it would fail again.
            self._unreadable = {
                sid
                for sid in self._unreadable
                if (held := records.get(sid)) is before.get(sid) and held is not None
            }
        elif records:
            if isinstance(self._records, dict):
                self._records.update(records)
            else:  # a mapping the verifier made, never changed in place
                self._records = {**self._records, **records}
            self._unreadable -= records.keys()
        if parties is None or parties.records is not self._records:
            if not replace:
                parties = self._parties.changed(self._records, records.keys(), size)
            elif self._parties.records is records:
                parties = self._parties
            else:
                parties = PartyIndex.of(records, size)
        self._parties = parties
        if parties.unreadable:
            for sid in parties.unreadable.keys() - self._unreadable:
                self._unreadable.add(sid)
                self._report_unreadable(sid, self._records[sid], parties.unreadable[sid])
        self._doubtful = frozenset(doubtful | self._unreadable) if self._unreadable else doubtful
        self.head = head
        self.superseded = superseded
        cosigned_at = None if head is None else head.cosigned_at
        if cosigned_at != self._cosigned:
            self._cosigned = cosigned_at
            if cosigned_at is not None:
                # A cosignature dated ahead of this gate's clock counts from when it was seen.
                cosigned_at = min(cosigned_at, datetime.now(UTC) if now is None else now)
            self._counted_from = cosigned_at
        if self._counted_from is None or superseded is not None:
            self._fresh_until = None
        else:
            self._fresh_until = self._counted_from + timedelta(seconds=self.max_staleness)
        if self.listeners and (replace or records):
            told = changed if replace else records.keys()
            for listener in self.listeners:
                try:
                    listener(self.size, told)
                except Exception:  # a listener's fault must not keep the head from being held
                    log.exception("a change listener failed")
