"""Keeps a shared-mode gate's head and map top in step with the registry, read from Redis (the
database when Redis fails or lies).

What is believed, and why (the same rules as ``server.verifier``, with the same incident kinds
for what the registry key signed: ``bad_head``, ``rollback``, ``fork``, ``inconsistent``):

1. **The head.** Redis's ``head`` (else the database's ``checkpoint_note``) must verify with
   the registry key. One older than the head held is refused; another with the same serial is
   a fork (both notes kept as evidence). The head held is persisted in the gate's state
   directory (``TrustedState(dir, "gate")``) before the gate answers from it, with the log's
   frontier at it, so a restarted gate never goes back to an older head.
2. **The log.** A newer head's log must extend the held one: the leaves Redis's ``log`` holds
   after the held size, appended to the held frontier, must give the new head's root (else the
   database's consistency proof, ``check_follows``). A newer head that cannot be shown to
   extend the held one is not adopted and makes the held head *superseded* (stale at once).
3. **The map top.** ``diff:<serial>`` applied to the held top must give the new head's map root
   and count, which proves that exactly those buckets changed; else ``top:<serial>`` whole must
   give them (the changed buckets are then found by comparing the two tops); else the
   database's ``map_top()``. A newer head whose top cannot be had is not adopted either.
4. **Installing.** Head and top are installed together on the event loop
   (``SharedCache.install_top``), which drops the L1 entries of the changed buckets first.
5. **After a restart** the persisted head is the one held (an older head from Redis or the
   database is refused: ``redis_head``, ``rollback``), with the frontier persisted with it;
   its top is read again (Redis's ``top:<serial>``, else the database's while the database is
   still at that head), and until it is the gate answers REVIEW.

The ``changes`` stream only wakes the follower (a blocking ``XREAD`` of about a second) and
names structures for the change listeners; nothing is believed for being in it. The follower
also polls every ``interval`` seconds, so a stream that is silent, trimmed or lying delays
nothing by more than that. Freshness is the held head's cosignature age (``server.cache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from permitgate_client import VerificationError, VerifierKey
from permitgate_client._proofs import RegistryHead, verify_registry_head

from registry.feed import FeedError, RegistryFeed
from registry.merkle import CompactTree
from registry.redis_feed import RedisFeed, RedisFeedError
from registry.redis_layout import serial_of
from registry.statusmap import BUCKETS, MapTop, parse_diff
from registry.trusted_state import TrustedState
from server.incidents import Incidents
from server.shared_cache import SharedCache
from server.verifier import GateStateError, check_follows, held_head

__all__ = ["SharedFollower"]

log = logging.getLogger("server.follower")

T = TypeVar("T")

_DATABASE_TIMEOUT = 30.0  # seconds a database read of the follower may take (map_top is slow)
_HINTS_KEPT = 1000  # heads whose stream hints are kept, at most


class _Refused(Exception):
    """A head that is not adopted (the incident reported)."""


def _body(note: bytes) -> bytes:
    return note[: note.find(b"\n\n") + 1]


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as what orders it; a malformed one first."""
    ms, _, seq = entry_id.partition(b"-")
    try:
        return int(ms), int(seq or b"0")
    except ValueError:
        return (-1, -1)


def _describe(head: RegistryHead) -> str:
    when = "never" if head.cosigned_at is None else f"{head.cosigned_at:%Y-%m-%dT%H:%M:%SZ}"
    return f"serial {head.map.serial}, log size {head.size}, cosigned {when}"


def _frontier(head: RegistryHead, state: bytes | None) -> CompactTree | None:
    """The compact tree ``state`` if it gives ``head``'s root (None otherwise)."""
    if state is None:
        return None
    try:
        tree = CompactTree.from_state(head.size, state)
    except ValueError:
        return None
    return tree if tree.root() == head.checkpoint.root_hash else None


def _changed_buckets(old: MapTop, new: MapTop) -> set[int]:
    return {i for i in range(BUCKETS) if old.bucket(i) != new.bucket(i)}


class SharedFollower:
    """Follows the registry's heads for a ``SharedCache``; one poll at a time."""

    def __init__(
        self,
        redis: RedisFeed,
        database: RegistryFeed | None,
        cache: SharedCache,
        key: VerifierKey,
        state: TrustedState,
        incidents: Incidents,
        *,
        interval: float = 1.0,
        block: float = 1.0,
    ) -> None:
        self.redis = redis
        self.database = database
        self.cache = cache
        self.key = key
        self.state = state
        self.incidents = incidents
        self.interval = interval
        self.block = block
        self.head: RegistryHead | None = None  # the head held (persisted), top or not
        self.frontier: CompactTree | None = None  # the log at the head held, when known
        self.top: MapTop | None = None  # the head held's top, once verified
        self.superseded: str | None = None
        self._superseded_by: RegistryHead | None = None
        self.failure: str | None = None  # why the last poll failed; None after a success
        self.failed = 0  # polls failed in a row
        self.attempted = asyncio.Event()  # set once the first poll has ended
        self._wake = asyncio.Event()
        self._partial: dict[int, set[str]] = {}  # stream hints of heads not yet announced
        self._hints: dict[int, set[str]] = {}  # every hint of each head announced
        self._tasks: list[asyncio.Task[None]] = []
        self.head = held_head(state, key)
        if self.head is not None:
            self.frontier = _frontier(self.head, state.frontier())
        cache.behind = self.wake

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(), name="shared-follower"),
            loop.create_task(self._watch(), name="shared-follower-changes"),
        ]

    def wake(self) -> None:
        """Poll now (a new head was announced, or Redis holds data newer than the top)."""
        self._wake.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.cache.close()
        await self.redis.close()

    async def _follow(self) -> None:
        while True:
            self._wake.clear()
            await self._poll_logged()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def _watch(self) -> None:
        """Read the changes stream: wake at each head, keep each head's structure hints."""
        after: bytes | None = None
        continuous = False  # every entry since the last head entry was read
        interrupted = False  # a read failed: a head may have been announced meanwhile
        polled = False  # the follower was woken for this outage already
        while True:
            try:
                if after is None or interrupted:
                    newest, last = await self.redis.last_change()
                    if after is None or _entry_order(newest) < _entry_order(after):
                        # Reading from the newest entry on (at the start, or in a stream begun
                        # again below where it was left: a flushed or failed-over Redis): every
                        # hint of the next head is seen if that entry is a head's own (a
                        # head's hints come before it).
                        after, continuous = newest, last is None or b"head" in last
                    if interrupted:
                        # Back after a failed read, resumed from the last entry read: a head
                        # announced meanwhile (or its entry trimmed) would wait for the
                        # interval's poll: poll now instead (once an outage).
                        interrupted = False
                        if not polled:
                            polled = True
                            self.wake()
                entries = await self.redis.changes(after, self.block)
                polled = False
            except RedisFeedError:
                # The hints are not trusted whole again until the next head entry.
                continuous, interrupted = False, True
                await asyncio.sleep(min(self.interval, 1.0))
                continue
            for entry_id, fields in entries:
                after = entry_id
                try:
                    if b"head" in fields:
                        serial = int(fields[b"head"])
                        hints = self._partial.pop(serial, set())
                        if continuous:
                            self._hints[serial] = hints
                        continuous = True
                        self.wake()
                    elif b"structure" in fields:
                        serial = int(fields[b"serial"])
                        structure = fields[b"structure"].decode()
                        self._partial.setdefault(serial, set()).add(structure)
                except (KeyError, ValueError, UnicodeDecodeError):
                    continue  # a hint that is not one: ignored
            for kept in (self._partial, self._hints):
                while len(kept) > _HINTS_KEPT:
                    del kept[min(kept)]

    async def _poll_logged(self) -> None:
        try:
            await self.poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"{exc}" if isinstance(exc, FeedError | GateStateError) else repr(exc)
            if reason != self.failure:
                log.error(
                    "registry (shared): poll failed: %s", reason, exc_info=self.failure is None
                )
            self.failure = reason
            self.failed += 1
        else:
            if self.failure is not None:
                log.info("registry (shared): followed again (after: %s)", self.failure)
                self.failure = None
            self.failed = 0
        finally:
            self.attempted.set()
            self.cache.report_stale()

    # --- one poll --------------------------------------------------------------------------

    async def poll(self) -> None:
        """Read the newest head, verify it, and install it with its top when it may be."""
        new = await self._candidate()
        held = self.head
        if new is None:
            if held is not None and self.top is None:
                await self._load_held_top(held)
            return
        if held is not None and new.same_head(held):
            await self._hold_cosignature(new)
            if self.top is None:
                await self._load_held_top(self.head or held)
            return
        try:
            frontier = await self._extends(held, new)
            top, changed = await self._new_top(held, new)
        except _Refused:
            self.cache.hold_head(self.cache.head, superseded=self.superseded)
            return
        await self._in_thread(
            lambda: self.state.save(new.note, frontier=None if frontier is None else frontier.state)
        )
        hints = self._hints_between(held, new)
        self.head, self.frontier, self.top = new, frontier, top
        if self._superseded_by is None or new.order >= self._superseded_by.order:
            self._superseded_by, self.superseded = None, None
        dropped = self.cache.install_top(new, top, changed, superseded=self.superseded, hints=hints)
        for serial in [s for s in self._hints if s <= new.map.serial]:
            del self._hints[serial]
        log.info(
            "registry (shared): version %d (head serial %d), %s buckets changed, %d cached "
            "structures dropped",
            new.size,
            new.map.serial,
            "all" if changed is None else len(changed),
            len(dropped),
        )

    async def _candidate(self) -> RegistryHead | None:
        """The newest head that verifies and does not go back on the one held: Redis's, else
        the database's; None when neither offers one (the reasons reported).

        The database is read too when Redis's head was cosigned more than half the staleness
        bound ago (a publisher that stopped): the newer of the two is taken."""
        redis_head: RegistryHead | None = None
        try:
            note = await self.redis.head()
        except RedisFeedError as exc:
            self.incidents.report("redis_unavailable", ("head", str(exc)), "%s", exc)
            note = None
        if note is not None:
            redis_head = self._check_head(note, "redis_head", f"redis {self.redis.where}")
            if redis_head is not None and not self._aging(redis_head):
                return redis_head
        if self.database is None:
            return redis_head
        database = self.database

        def read() -> bytes | None:
            with database.snapshot() as view:
                return view.checkpoint_note()

        try:
            note = await self._in_thread(read)
        except (FeedError, TimeoutError) as exc:
            if redis_head is not None:
                return redis_head
            raise FeedError(f"no head from Redis, and the database: {exc}") from exc
        if note is None:
            if redis_head is not None:
                return redis_head
            raise FeedError("the registry has no head (is it initialised?)")
        database_head = self._check_head(note, None, "the database")
        if redis_head is None or database_head is None:
            return redis_head or database_head
        if database_head.order > redis_head.order or (
            database_head.same_head(redis_head) and not self._aging(database_head)
        ):
            return database_head
        return redis_head

    def _aging(self, head: RegistryHead) -> bool:
        """``head`` carries no cosignature, or one older than half the staleness bound."""
        if head.cosigned_at is None:
            return True
        age = (datetime.now(UTC) - head.cosigned_at).total_seconds()
        return age > self.cache.max_staleness / 2

    def _check_head(self, note: bytes, kind: str | None, source: str) -> RegistryHead | None:
        """``note`` verified and not older than the head held, else None (reported as
        ``kind``, or as the embedded gate's kinds when None)."""
        try:
            new = verify_registry_head(note, self.key)
        except VerificationError as exc:
            self.incidents.report(
                kind or "bad_head",
                hashlib.sha256(note).digest(),
                "%s: the newest head does not verify with %s (%s): refused",
                source,
                self.key.keyid_text,
                exc,
            )
            return None
        held = self.head
        if held is not None and new.order < held.order:
            self.incidents.report(
                kind or "rollback",
                _body(note),
                "%s: the newest head (%s) is older than the head this gate verified already "
                "(%s): refused",
                source,
                _describe(new),
                _describe(held),
            )
            return None
        return new

    async def _hold_cosignature(self, same: RegistryHead) -> None:
        held = self.head
        assert held is not None
        if same.cosigned_at is None or same.note == held.note:
            return
        if held.cosigned_at is not None and same.cosigned_at <= held.cosigned_at:
            return
        await self._in_thread(lambda: self.state.save_head(same.note))
        self.head = same
        if self.top is not None:
            self.cache.hold_head(same, superseded=self.superseded)

    async def _load_held_top(self, held: RegistryHead) -> None:
        """After a restart: the held head's top (Redis's ``top:<serial>``, else the
        database's when it is still at that head)."""
        top = await self._whole_top(held)
        if top is None:
            return
        self.top = top
        self.cache.install_top(held, top, None, superseded=self.superseded, hints=None)
        log.info(
            "registry (shared): holding version %d (head serial %d), its map top verified",
            held.size,
            held.map.serial,
        )

    # --- the log -------------------------------------------------------------------------

    async def _extends(self, held: RegistryHead | None, new: RegistryHead) -> CompactTree | None:
        """The frontier at ``new`` once its log is shown to extend the held one's (None when
        no frontier can be had: the database's proof serves next time); ``_Refused`` else."""
        if held is None:
            return await self._frontier_at(new)
        if new.map.serial == held.map.serial:
            self._supersede(new, "fork", f"two different heads with serial {held.map.serial}")
            raise _Refused
        if self.frontier is not None and new.size >= held.size:
            try:
                leaves = await self.redis.leaves(held.size, new.size)
            except RedisFeedError as exc:
                log.debug("registry (shared): %s", exc)
            else:
                tree = CompactTree.from_state(held.size, self.frontier.state)
                for leaf in leaves:
                    tree.append(leaf)
                if tree.root() == new.checkpoint.root_hash:
                    return tree
                self.incidents.report(
                    "redis_log",
                    (held.size, new.size, hashlib.sha256(b"".join(leaves)).digest()),
                    "redis %s: the log's leaves %d..%d do not give the root of head serial %d: "
                    "refused, asking the database for a consistency proof",
                    self.redis.where,
                    held.size,
                    new.size,
                    new.map.serial,
                )
        database = self.database
        why = "no database to ask for a consistency proof"
        if database is not None:

            def read() -> list[bytes]:
                with database.snapshot() as view:
                    return view.consistency_proof(held.size, new.size)

            try:
                proof = await self._in_thread(read)
                check_follows(held.checkpoint, new.checkpoint, proof)
            except (FeedError, TimeoutError, VerificationError) as exc:
                why = str(exc) or type(exc).__name__
            else:
                return await self._frontier_at(new)
        if new.size <= held.size:
            self._supersede(new, "fork", f"the log of the newer head does not extend ours ({why})")
        else:
            self._supersede(
                new,
                "inconsistent",
                f"the registry's newer head ({_describe(new)}) cannot be shown to extend the "
                f"head held ({_describe(held)}): {why}",
            )
        raise _Refused

    async def _frontier_at(self, head: RegistryHead) -> CompactTree | None:
        try:
            tree = _frontier(head, await self.redis.frontier(head.size))
        except RedisFeedError:
            tree = None
        if tree is not None or self.database is None:
            return tree
        database = self.database

        def read() -> bytes | None:
            with database.snapshot() as view:
                return view.frontier(head.size)

        try:
            return _frontier(head, await self._in_thread(read))
        except (FeedError, TimeoutError):
            return None

    # --- the map top -----------------------------------------------------------------------

    async def _new_top(
        self, held: RegistryHead | None, new: RegistryHead
    ) -> tuple[MapTop, set[int] | None]:
        """``new``'s verified top and the buckets that changed (None: unknown)."""
        old = self.top
        if old is not None and held is not None:
            try:
                raw = await self.redis.diff(new.map.serial)
            except RedisFeedError:
                raw = None
            if raw is not None:
                try:
                    from_serial, rest = serial_of(raw)
                    changes = parse_diff(rest)
                except ValueError:  # not a diff, or an item that cannot be its bucket's
                    self._top_refused(new, "diff")
                    from_serial, changes = -1, {}
                if from_serial == held.map.serial:
                    applied = old.with_buckets(changes)
                    if applied.gives(new.map.root, new.map.count):
                        return applied, set(changes)
                    self._top_refused(new, "diff")
        top = await self._whole_top(new)
        if top is None:
            self._supersede(
                new,
                "map_mismatch",
                f"the registry's newer head ({_describe(new)}) has no map top that gives its "
                "map root in Redis or the database: it is not adopted",
            )
            raise _Refused
        if old is None:
            return top, None
        return top, await self._in_thread(lambda: _changed_buckets(old, top))

    async def _whole_top(self, head: RegistryHead) -> MapTop | None:
        try:
            raw = await self.redis.top(head.map.serial)
        except RedisFeedError:
            raw = None
        if raw is not None:
            top = await self._in_thread(lambda: self._top_of(raw, head))
            if top is not None:
                return top
            self._top_refused(head, "top")
        if self.database is None:
            return None
        database = self.database

        def read() -> MapTop | None:
            with database.snapshot() as view:
                return self._top_of(view.map_top(), head)

        try:
            return await self._in_thread(read)
        except (FeedError, TimeoutError) as exc:
            log.warning("registry (shared): the database's map top: %s", exc)
            return None

    @staticmethod
    def _top_of(raw: bytes, head: RegistryHead) -> MapTop | None:
        try:
            top = MapTop.from_bytes(raw)
        except ValueError:
            return None
        return top if top.gives(head.map.root, head.map.count) else None

    def _top_refused(self, head: RegistryHead, what: str) -> None:
        self.incidents.report(
            "redis_top",
            (what, head.map.serial),
            "redis %s: %s:%d does not give the map root and count of head serial %d: refused",
            self.redis.where,
            what,
            head.map.serial,
            head.map.serial,
        )

    # --- helpers -------------------------------------------------------------------------

    def _hints_between(self, held: RegistryHead | None, new: RegistryHead) -> set[str] | None:
        """The structures the stream named for every head after ``held`` up to ``new``; None
        when it missed any of them."""
        if held is None:
            return None
        hints: set[str] = set()
        for serial in range(held.map.serial + 1, new.map.serial + 1):
            named = self._hints.get(serial)
            if named is None:
                return None
            hints |= named
        return hints

    def _supersede(self, new: RegistryHead, kind: str, why: str) -> None:
        """A genuine head the gate cannot adopt shows that the held one is not the newest."""
        if self._superseded_by is None or new.order >= self._superseded_by.order:
            self._superseded_by, self.superseded = new, why
        key = (kind, _body(new.note))
        if kind == "fork" and self.head is not None and not self.incidents.known(kind, key):
            path = self.state.keep_evidence(kind, self.head.note, new.note)
            self.incidents.report(kind, key, "%s; both notes are kept in %s", why, path)
        else:
            self.incidents.report(kind, key, "%s", why)

    async def _in_thread(self, read: Callable[[], T]) -> T:
        work: Awaitable[T] = asyncio.to_thread(read)
        return await asyncio.wait_for(work, _DATABASE_TIMEOUT)
