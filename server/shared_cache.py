"""The registry data a gate answers from when many gates share one cache: the verified map top
of the head held, and a bounded L1 of verified records and verified absences.

Why this can be believed: the follower (``server.shared_follower``) installs a head only with
its map *top* (the node of each of the 65,536 buckets), and only once that top gives the head's
signed map root and entry count. A bucket's node then proves the bucket's entries (``key ||
value`` pairs, ``bucket_node``), and the entries prove each record (its envelope's SHA-256 is
its entry's value) and each absence (a key not among them). So a record fetched from Redis, or
from the database when Redis fails, is held only if

1. its bucket's entries hash to the bucket's node in the top held (else ``redis_entries``, or
   ``database_bucket``),
2. the structure's entry is there and its envelope's SHA-256 is that entry's value (else
   ``redis_record``), and
3. the envelope reads as the status record of that very structure, no newer than the head
   (``read_status_record``; else ``record_unverified``).

A structure whose key is not among its bucket's verified entries is held as a verified absence.
Whatever is neither proved present nor proved absent is *doubtful* (``is_doubtful``): the gate
answers RECORD_UNVERIFIED / REVIEW for it, never ALLOW, never NOT_IN_REGISTRY. Each lie is an
``Incidents`` kind, logged once; then the database is asked the same way.

A record proved under one top stays proved under the next for as long as its bucket's node is
unchanged: the follower drops the L1 entries of every changed bucket when it installs a new top
(``install_top``), and a fetch whose bucket changed while it was under way is not held.

L1 is a dict in insertion order, bounded by ``size``: beyond it the oldest entries are evicted,
a sixteenth of ``size`` at a time. Not LRU: moving an entry on every hit would put a dict write
on every request, while a hot structure evicted costs one Redis round trip to come back; and
evicting a batch at a time keeps iteration from the front from scanning the slots freed there
of the dict at every eviction. An entry holds the parsed record and its digest (the envelope is
dropped once parsed), rebuilt on values shared among records (``_Values``: times, districts,
uses), keyed by the record's own id string; an absence is one int. Measured (tracemalloc) at about
1,080 bytes per structure of the demo's (a record of four permits), dict slot and bucket index
included; fewer permits, less.

Redis (or the database) can be a head ahead of the gate: a publisher writes a new head's
buckets before its ``head``. Entries that do not give the top held are therefore judged a lie
only when, ``_LIE_GRACE`` seconds later, they do not give the top then held either; and a miss
that finds the registry at a newer head wakes the follower and waits (``_AHEAD_WAIT``) to be
proved by the newer top. When a Redis read fails, misses go straight to the database for a
second (``_REDIS_REST``) rather than each waiting out Redis's timeout first.

Freshness is exactly ``RegistryCache``'s (this class extends it): the age of the held head's
cosignature against ``max_staleness``, and stale at once when the head is superseded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from functools import partial
from itertools import islice
from typing import TypeVar

from permitgate_client import VerificationError
from permitgate_client._proofs import RegistryHead, map_key

from registry.feed import FeedError, RegistryFeed
from registry.records import StatusRecord
from registry.redis_feed import RedisFeed, RedisFeedError
from registry.statusmap import BUCKETS, MapTop, bucket_node, bucket_of, entry_in
from server.cache import (
    CachedStatus,
    PartyCases,
    RegistryCache,
    WholeRegistryNeeded,
    read_status_record,
)
from server.incidents import Incidents

__all__ = ["DEFAULT_CACHE_SIZE", "SharedCache", "SharedStatus"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CACHE_SIZE = 100_000
"""Structures (records or absences) a gate holds in L1 unless told otherwise."""

_INDEXES = tuple(range(BUCKETS))  # one int object per bucket index, shared by every entry
_AHEAD_WAIT = 1.0  # seconds a miss waits for the follower when Redis is at a newer head
_LIE_GRACE = 2.0  # seconds before entries refused are judged a lie (see _judge_entries)
_REDIS_REST = 1.0  # seconds misses go straight to the database after a failed Redis read
_SHARED_LIMIT = 65_536  # distinct values (times, short strings) shared among cached records
_DATABASE_READS = 4  # database fallbacks under way at once, at most
_DATABASE_TIMEOUT = 5.0  # seconds a database fallback may take


class _Values:
    """One object per distinct value among the cached records' times and repeated strings
    (the same ``issued`` time, district or use in many records): a parsed record holds its
    own copy of each, which would double what L1 costs per structure."""

    def __init__(self) -> None:
        self._values: dict[object, object] = {}

    def one(self, value: T) -> T:
        if value is None:
            return value
        held = self._values.get(value)
        if held is None:
            if len(self._values) >= _SHARED_LIMIT:
                self._values.clear()
            self._values[value] = held = value
        return held  # type: ignore[return-value]

    def record(self, record: StatusRecord) -> StatusRecord:
        """``record`` rebuilt on shared values (equal to it, field by field)."""
        one = self.one
        sid = record.structure.id
        structure = record.structure
        return replace(
            record,
            structure=replace(
                structure,
                district=one(structure.district),
                declared_use=one(structure.declared_use),
            ),
            permits=tuple(
                replace(
                    p,
                    structure=sid,
                    issued=one(p.issued),
                    expires=one(p.expires),
                    use=one(p.use),
                )
                for p in record.permits
            ),
            cases=tuple(replace(c, structure=sid, opened=one(c.opened)) for c in record.cases),
            this_update=one(record.this_update),
            next_update=one(record.next_update),
        )


class SharedStatus(CachedStatus):
    """A verified record in L1, with the bucket whose node proved it."""

    __slots__ = ("bucket",)

    def __init__(self, digest: bytes, record: StatusRecord, bucket: int) -> None:
        super().__init__(b"", digest, record)
        self.bucket = bucket


_Held = SharedStatus | int  # a record, or a verified absence (its bucket index)


def _bucket(held: _Held) -> int:
    return held if isinstance(held, int) else held.bucket


_Names = str | list[str] | None  # the ids filed under one bucket: one id alone, or a list


def _file(named: list[_Names], index: int, sid: str) -> None:
    names = named[index]
    if names is None:
        named[index] = sid
    elif isinstance(names, str):
        named[index] = [names, sid]
    else:
        names.append(sid)


def _serial_of_note(note: bytes | None) -> int | None:
    """The map serial in a head note's map line, unverified (only to tell "behind" from a lie)."""
    if note is None:
        return None
    for line in note.split(b"\n", 4)[:4]:
        if line.startswith(b"map "):
            try:
                return int(line.split(b" ")[1])
            except (IndexError, ValueError):
                return None
    return None


class SharedCache(RegistryCache):
    """``RegistryCache``'s interface over a bounded L1, filled on demand by ``ensure``."""

    holds_every_record = False

    def __init__(
        self,
        *,
        max_staleness: float,
        redis: RedisFeed,
        database: RegistryFeed | None,
        size: int = DEFAULT_CACHE_SIZE,
        incidents: Incidents | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"cache size: {size} is not a positive number")
        super().__init__(max_staleness=max_staleness, incidents=incidents)
        self.redis = redis
        self.database = database
        self.bound = size  # L1 holds at most this many structures
        self.top: MapTop | None = None
        self._l1: dict[str, _Held] = {}
        # The ids filed in L1 by bucket, so that a new top drops its changed buckets' entries
        # without a scan of L1 (a scan of 100,000 entries holds the event loop for 20 ms).
        # Evicted ids are not taken out (nothing is dropped for them); the index is built
        # again once it names twice as many ids as L1 can hold.
        self._named: list[_Names] = [None] * BUCKETS
        self._names = 0
        self._values = _Values()
        self._redis_resting_until = 0.0  # a failed read is not retried by every miss at once
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._top_installed = asyncio.Event()  # set (and replaced) at each top installed
        self._database_slots = asyncio.Semaphore(_DATABASE_READS)
        self.behind: Callable[[], None] | None = None  # told when Redis is ahead of the top
        self.fetches = {"redis": 0, "database": 0}  # structures proved from each
        self._judging: set[asyncio.TimerHandle] = set()  # refused entries awaiting judgement

    def close(self) -> None:
        """Drop the judgements still pending: a stopped gate reports nothing more."""
        for handle in self._judging:
            handle.cancel()
        self._judging.clear()

    def __len__(self) -> int:
        return len(self._l1)

    def __contains__(self, structure_id: str) -> bool:
        return structure_id in self._l1

    # --- what a request reads ------------------------------------------------------------

    def get(self, structure_id: str) -> CachedStatus | None:
        held = self._l1.get(structure_id)
        return held if held.__class__ is SharedStatus else None

    def is_doubtful(self, structure_id: str) -> bool:
        """Neither a verified record nor a verified absence is held (REVIEW, never ALLOW)."""
        return structure_id not in self._l1

    def cases_naming(self, party_id: str) -> PartyCases:
        """Refused: L1 holds only the structures asked of it, so no absence of a case naming
        ``party_id`` can be proved here (never an ALLOW for want of looking)."""
        raise WholeRegistryNeeded(
            "CheckApplicant needs a gate that holds the whole registry: a gate over the shared "
            "Redis cache holds only the structures asked of it and cannot prove that no record "
            "names the party; ask a gate served without --redis"
        )

    async def ensure(self, structure_ids: Collection[str]) -> None:
        """Prove the records (or absences) of ``structure_ids`` not in L1: from Redis in one
        round trip, else from the database; those proved neither way stay doubtful."""
        l1 = self._l1
        missing = [sid for sid in structure_ids if sid not in l1]
        if not missing or self.top is None:
            return
        mine: list[str] = []
        waits: set[asyncio.Future[None]] = set()
        for sid in dict.fromkeys(missing):
            under_way = self._inflight.get(sid)
            if under_way is None:
                mine.append(sid)
            else:
                waits.add(under_way)
        if mine:
            # A task of its own: the requests waiting on it are not left without an answer
            # when the one that started it is cancelled (its caller went away).
            fetch = asyncio.get_running_loop().create_task(self._fetch(mine, retry=True))
            for sid in mine:
                self._inflight[sid] = fetch
            fetch.add_done_callback(partial(self._fetched, mine))
            waits.add(fetch)
        await asyncio.wait(waits)  # not cancelled with this request

    def _fetched(self, ids: Sequence[str], fetch: asyncio.Future[None]) -> None:
        for sid in ids:
            if self._inflight.get(sid) is fetch:
                del self._inflight[sid]
        if not fetch.cancelled() and (error := fetch.exception()) is not None:
            log.error("proving %d structures failed: %r", len(ids), error)

    # --- proving ---------------------------------------------------------------------------

    async def _fetch(self, ids: Sequence[str], *, retry: bool) -> None:
        top, head = self.top, self.head
        if top is None or head is None:
            return
        wanted = [(bucket_of(sid), sid) for sid in ids]
        proved: dict[str, _Held] = {}
        failed: list[tuple[int, str]] = []
        try:
            if time.monotonic() < self._redis_resting_until:
                raise RedisFeedError(f"redis {self.redis.where}: resting after a failed read")
            rows = await self.redis.buckets(wanted)
        except RedisFeedError as exc:
            if time.monotonic() >= self._redis_resting_until:
                self._redis_resting_until = time.monotonic() + _REDIS_REST
                self.incidents.report("redis_unavailable", ("read", str(exc)), "%s", exc)
            failed = wanted
        else:
            mismatched: list[tuple[int, bytes, str]] = []
            for (index, sid), (entries, envelope) in zip(wanted, rows, strict=True):
                held = self._from_redis(sid, index, entries, envelope, top, head)
                if isinstance(held, str):
                    mismatched.append((index, entries or b"", held))
                if held is None or isinstance(held, str):
                    failed.append((index, sid))
                else:
                    proved[sid] = held
            self.fetches["redis"] += len(proved)
            ahead = bool(mismatched) and await self._entries_refused(mismatched, head)
            if ahead and retry and await self._new_top(top, _AHEAD_WAIT):
                # The follower installed the newer top Redis holds: prove the rest by it.
                self._hold(proved, top)
                await self._fetch(self._not_held(ids), retry=False)
                return
        if failed and self.database is not None:
            from_db, database_serial = await self._from_database(failed, top, head)
            self.fetches["database"] += len(from_db)
            proved.update(from_db)
            ahead = database_serial is not None and database_serial > head.map.serial
            if ahead and retry and len(proved) < len(ids) and self.top is top:
                # The registry is at a newer head than this gate (Redis being published to,
                # or behind): the follower is woken, and what is left is proved by its top.
                if self.behind is not None:
                    self.behind()
                await self._new_top(top, _AHEAD_WAIT)
        self._hold(proved, top)
        if retry and self.top is not top and (left := self._not_held(ids)):
            # A new top arrived meanwhile: what failed may be proved by it, and what was proved
            # in a bucket it changed (not held) is proved again.
            await self._fetch(left, retry=False)

    def _not_held(self, ids: Sequence[str]) -> list[str]:
        return [sid for sid in ids if sid not in self._l1]

    def _from_redis(
        self,
        sid: str,
        index: int,
        entries: bytes | None,
        envelope: bytes | None,
        top: MapTop,
        head: RegistryHead,
    ) -> _Held | str | None:
        """The record or absence Redis proves; None (the reason reported), or why the bucket's
        entries are refused (reported by ``_entries_refused``)."""
        if entries is None and envelope is None and top.bucket(index)[0]:
            self.incidents.report(
                "redis_unavailable",
                ("lacks", head.map.serial),
                "redis %s lacks bucket %d of head serial %d (flushed, or not yet published): "
                "reading the database instead",
                self.redis.where,
                index,
                head.map.serial,
            )
            return None
        entries = entries or b""
        try:
            node = bucket_node(entries, index)
        except ValueError as exc:
            node, why = (-1, b""), str(exc)
        else:
            why = "they do not hash to its node in the verified map top"
        if node[1] != top.bucket(index)[1]:  # the node binds the entries (and their number)
            return why
        value = entry_in(entries, map_key(sid))
        if value is None:
            return _INDEXES[index]
        if envelope is None:
            self.incidents.report(
                "redis_record",
                (sid, value, b""),
                "redis %s: no status record of %s beside its bucket's entries: reading the "
                "database instead",
                self.redis.where,
                sid,
            )
            return None
        digest = hashlib.sha256(envelope).digest()
        if digest != value:
            self.incidents.report(
                "redis_record",
                (sid, value, digest),
                "redis %s: the status record of %s is not the one head serial %d signs "
                "(SHA-256 %s…, signed %s…): refused, reading the database instead",
                self.redis.where,
                sid,
                head.map.serial,
                digest.hex()[:16],
                value.hex()[:16],
            )
            return None
        return self._parsed(sid, index, envelope, digest, head)

    def _parsed(
        self, sid: str, index: int, envelope: bytes, digest: bytes, head: RegistryHead
    ) -> SharedStatus | None:
        try:
            record = read_status_record(envelope, sid, head.size)
        except VerificationError as exc:
            self.incidents.report(
                "record_unverified",
                (sid, digest),
                "the status record of %s matches the signed map but cannot be read (%s): it "
                "answers RECORD_UNVERIFIED",
                sid,
                exc,
            )
            return None
        return SharedStatus(digest, self._values.record(record), _INDEXES[index])

    async def _new_top(self, top: MapTop, wait: float) -> bool:
        """Whether a top other than ``top`` is installed within ``wait`` seconds."""
        try:
            async with asyncio.timeout(wait):
                while self.top is top:
                    await self._top_installed.wait()
        except TimeoutError:
            return False
        return True

    async def _entries_refused(
        self, mismatched: list[tuple[int, bytes, str]], head: RegistryHead
    ) -> bool:
        """Report bucket entries that do not give their node in the top held when Redis says it
        holds the head this gate holds (after ``_LIE_GRACE``: ``_judge_entries``). Redis at
        another head is not lying: its buckets are ahead of this gate's top (the follower is
        woken, and what the newer top proves is tried then) or behind it (the database
        answers). Someone who rewrites ``published`` as well goes uncounted, but is believed no
        more for it. True when Redis is ahead."""
        try:
            published = await self.redis.published()
        except RedisFeedError:
            published = None
        if published != head.map.serial:
            # Redis is at another head: ahead (the follower is woken, to follow it) or behind
            # (the database answers): not a lie, as far as can be told.
            ahead = published is not None and published > head.map.serial
            if ahead and self.behind is not None:
                self.behind()
            return ahead
        loop = asyncio.get_running_loop()
        for index, entries, why in mismatched:
            handle = loop.call_later(_LIE_GRACE, self._judge_entries, index, entries, why, head)
            self._judging.add(handle)
        return False

    def _judge_entries(self, index: int, entries: bytes, why: str, head: RegistryHead) -> None:
        """Report refused entries as a lie unless the top held now gives them: a publisher
        writes a new head's buckets first and its ``head`` and ``published`` last, so for a
        moment Redis's buckets are ahead of what it says it holds."""
        now = asyncio.get_running_loop().time()
        self._judging = {handle for handle in self._judging if handle.when() > now}
        top = self.top
        try:
            node = bucket_node(entries, index)
        except ValueError:
            node = (-1, b"")
        if top is not None and node[1] == top.bucket(index)[1]:
            return
        self.incidents.report(
            "redis_entries",
            (index, hashlib.sha256(entries).digest()),
            "redis %s: the entries of bucket %d are not those head serial %d signs (%s), nor "
            "those of any head since: refused, the database read instead",
            self.redis.where,
            index,
            head.map.serial,
            why,
        )

    async def _from_database(
        self, wanted: list[tuple[int, str]], top: MapTop, head: RegistryHead
    ) -> tuple[dict[str, _Held], int | None]:
        """What the database's buckets prove, and the serial of its newest head (unverified:
        only to tell a database ahead of this gate from a lying one)."""
        database = self.database
        assert database is not None
        indexes = sorted({index for index, _ in wanted})

        def read() -> tuple[int | None, dict[int, list[tuple[str, bytes]]]]:
            with database.snapshot() as view:
                serial = _serial_of_note(view.checkpoint_note())
                return serial, {i: list(view.bucket_records(i)) for i in indexes}

        async with self._database_slots:
            try:
                serial, buckets = await asyncio.wait_for(asyncio.to_thread(read), _DATABASE_TIMEOUT)
            except (FeedError, TimeoutError) as exc:
                why = str(exc) or f"no answer within {_DATABASE_TIMEOUT:g} s"
                log.warning("registry database: bucket read failed: %s", why)
                return {}, None
        proved: dict[str, _Held] = {}
        for index, sid in wanted:
            held = self._from_bucket(sid, index, buckets[index], top, head, serial)
            if held is not None:
                proved[sid] = held
        return proved, serial

    def _from_bucket(
        self,
        sid: str,
        index: int,
        rows: list[tuple[str, bytes]],
        top: MapTop,
        head: RegistryHead,
        database_serial: int | None,
    ) -> _Held | None:
        sha256 = hashlib.sha256
        pairs = sorted((map_key(s), sha256(e).digest(), s, e) for s, e in rows)
        entries = b"".join(key + value for key, value, _, _ in pairs)
        try:
            node = bucket_node(entries, index)
        except ValueError:
            node = (-1, b"")
        if node[1] != top.bucket(index)[1]:
            if database_serial is None or database_serial <= head.map.serial:
                self.incidents.report(
                    "database_bucket",
                    (index, sha256(entries).digest()),
                    "the database's records of bucket %d are not those head serial %d signs: "
                    "%s answers RECORD_UNVERIFIED",
                    index,
                    head.map.serial,
                    sid,
                )
            return None
        for _, digest, filed_as, envelope in pairs:
            if filed_as == sid:
                return self._parsed(sid, index, envelope, digest, head)
        if entry_in(entries, map_key(sid)) is None:
            return _INDEXES[index]
        return None

    def _hold(self, proved: dict[str, _Held], top: MapTop) -> None:
        if not proved:
            return
        current = self.top
        if current is None:
            return
        l1 = self._l1
        named = self._named
        for sid, held in proved.items():
            index = _bucket(held)
            if current is not top and current.bucket(index) != top.bucket(index):
                continue  # its bucket changed with the top installed meanwhile
            if isinstance(held, SharedStatus):  # keyed by the record's own id string, shared
                assert held.record is not None
                sid = held.record.structure.id
            l1[sid] = held
            _file(named, index, sid)
            self._names += 1
        if self._names > 2 * self.bound + BUCKETS:
            self._index_again()
        if len(l1) > self.bound:
            excess = len(l1) - self.bound + max(1, self.bound // 16)
            for sid in list(islice(l1, min(excess, len(l1)))):
                del l1[sid]

    def _index_again(self) -> None:
        """``_named`` rebuilt from L1 (it also names entries evicted since it was built)."""
        named: list[_Names] = [None] * BUCKETS
        for sid, held in self._l1.items():
            _file(named, _bucket(held), sid)
        self._named, self._names = named, len(self._l1)

    # --- what the follower installs ------------------------------------------------------

    def install_top(
        self,
        head: RegistryHead,
        top: MapTop,
        changed: Collection[int] | None,
        *,
        superseded: str | None,
        hints: Collection[str] | None,
    ) -> set[str]:
        """Hold ``head`` with its verified ``top``: drop the L1 entries of the ``changed``
        buckets (None: every entry), then tell the listeners; returns the ids dropped.

        ``hints``: structures said to have changed (None: unknown); those in changed buckets,
        and every id dropped, are what the listeners are told.
        """
        l1 = self._l1
        dropped: set[str] = set()
        if changed is None:
            dropped = set(l1)
            l1.clear()
            self._index_again()
        elif changed:
            named = self._named
            for index in changed:
                names = named[index]
                for sid in (names,) if isinstance(names, str) else names or ():
                    held = l1.get(sid)
                    if held is not None and _bucket(held) == index:
                        del l1[sid]
                        dropped.add(sid)
                named[index] = None
        self.top = top
        self._top_installed.set()  # wakes the fetches waiting for a newer top
        self._top_installed = asyncio.Event()
        self.hold_head(head, superseded=superseded)
        self.changed_buckets = () if changed is None else frozenset(changed)
        if self.listeners:
            told: Collection[str] | None = None
            if hints is not None and changed is not None:
                buckets = set(changed)
                told = dropped | {sid for sid in hints if bucket_of(sid) in buckets}
            for listener in self.listeners:
                try:
                    listener(head.size, told)
                except Exception:  # a listener's fault must not keep the head from being held
                    log.exception("a change listener failed")
        return dropped

    def hold_head(self, head: RegistryHead | None, *, superseded: str | None) -> None:
        """Hold ``head`` (the same checkpoint as the top held, maybe cosigned later) and say
        whether a newer one is known: freshness as ``RegistryCache`` counts it."""
        self.install(head, {}, replace=False, doubtful=frozenset(), superseded=superseded)
