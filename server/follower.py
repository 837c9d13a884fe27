"""Keeps the gate's cache in step with the registry, read through a ``RegistryFeed``.

Every ``interval`` seconds the follower reads, in one snapshot of the feed, the newest checkpoint
and the status records signed since its last look (a larger tree size, or re-signed later in
place), verifies them off the event loop, and installs checkpoint and records together on the
loop, so a request never sees a record newer than the checkpoint it would cite. A poll that
succeeds confirms freshness; one that fails does not, and after ``max_staleness`` the gate
answers REVIEW (``REGISTRY_STALE``). The first poll runs as soon as the follower starts; it is
the first load, which the gate serves during (answering REVIEW). Why a poll fails is logged
once per distinct reason, and when polls succeed again, not at every poll.

Each read runs in a daemon thread of its own, so that stopping never waits for it: ``close``
sets a flag that the read checks between records, asks the feed to cancel the statement it is
running (one blocked on a lock, say), logs that the read was abandoned, and returns; a thread
still blocked on the database cannot keep the process from exiting either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from permitgate_client import VerificationError
from permitgate_client.formats import Checkpoint

from registry.feed import FeedError, RegistryFeed
from server.cache import CachedStatus, RegistryCache
from server.periodic import Periodic

__all__ = ["RegistryFollower"]


@dataclass(frozen=True, slots=True)
class _Update:
    checkpoint: Checkpoint
    note: bytes
    records: list[CachedStatus]
    rejected: list[str]  # structure ids whose new record failed verification
    last_events: list[tuple[str, int]]  # (structure id, index of its last event) since held


log = logging.getLogger(__name__)

T = TypeVar("T")

_INTERRUPT_WAIT = 2.0  # seconds a stop waits for the feed to cancel the read under way


class _Abandoned(Exception):
    """The follower is closing: the read under way stops here."""


async def _in_daemon_thread(read: Callable[[], T], name: str) -> T:
    """``read()`` in a daemon thread of its own, awaited; cancelling the await leaves the thread
    to end by itself (its outcome dropped), and interpreter exit does not wait for it."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if outcome.done():  # the await was cancelled
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = read()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await outcome


class RegistryFollower:
    def __init__(self, feed: RegistryFeed, cache: RegistryCache, *, interval: float = 1.0) -> None:
        self._feed = feed
        self._cache = cache
        self._poller = Periodic("registry-follower", interval, self._poll_logged, at_once=True)
        self._closing = threading.Event()  # read by the reading thread between records
        self._reading = False  # a read is under way
        self.rejected = 0
        self._reported: set[tuple[str, str]] = set()
        self.failure: str | None = None  # why the last poll failed; None after a success
        self.failed = 0  # polls failed in a row
        self.attempted = asyncio.Event()  # set once the first poll has ended, loaded or not

    def _read(self, held: int, newest: datetime | None) -> _Update | None:
        """In a worker thread: the newest checkpoint and the records signed since the last look.

        That is records showing a tree size above ``held``, and records re-signed in place
        (``registry refresh``), whose ``next_update`` is later than the ``newest`` held; and, for
        each structure the log changed since ``held``, the index of its last event, so that a
        record withheld or swapped for an older one is noticed.
        """
        with self._feed.snapshot() as view:
            note = view.checkpoint_note()
            if note is None:
                raise FeedError("the registry has no checkpoint (is it initialised?)")
            checkpoint = self._cache.verify_checkpoint(note)
            accepted, rejected = self._cache.verify_records(
                self._until_closing(view.status_records(above=held, next_update_after=newest)),
                checkpoint,
            )
            last_events: list[tuple[str, int]] = []
            if checkpoint.size > held:
                last_events = list(
                    self._until_closing(view.last_events(since=held, before=checkpoint.size))
                )
        if self._closing.is_set():
            raise _Abandoned
        if (
            not accepted
            and not rejected
            and checkpoint.size == held
            and self._cache.checkpoint is not None
        ):
            return None
        for item in rejected:
            key = (item.structure_id, item.why)
            if key not in self._reported:  # say it once, not at every poll
                self._reported.add(key)
                log.error("registry: rejected status record of %s: %s", *key)
        self.rejected += len(rejected)
        return _Update(checkpoint, note, accepted, [r.structure_id for r in rejected], last_events)

    def _until_closing(self, rows: Iterable[T]) -> Iterator[T]:
        """``rows``, until ``close`` is called: then the read stops at the next row."""
        for row in rows:
            if self._closing.is_set():
                raise _Abandoned
            yield row

    async def poll(self) -> int:
        """One round; returns how many records were installed. Raises when the poll failed."""
        started = time.monotonic()
        first = self._cache.checkpoint is None
        held, newest = self._cache.size, self._cache.newest_next_update
        self._reading = True
        try:
            update = await _in_daemon_thread(
                lambda: self._read(held, newest), name="registry-follower"
            )
        finally:
            self._reading = False
        taken = 0
        if update is not None:
            taken = self._cache.install(update.checkpoint, update.note, update.records)
            doubtful = self._cache.doubt(update.rejected, update.last_events)
            if first:
                log.info(
                    "registry: loaded version %d, %d structures, verified in %.1f s",
                    update.checkpoint.size,
                    len(self._cache),
                    time.monotonic() - started,
                )
            else:
                log.info(
                    "registry: version %d, %d status records updated", update.checkpoint.size, taken
                )
            if doubtful:
                log.error(
                    "registry: %d structures lack a genuine, current status record; "
                    "they answer REVIEW until one arrives",
                    doubtful,
                )
        self._cache.confirm_fresh(started)
        return taken

    async def _poll_logged(self) -> None:
        try:
            await self.poll()
        except _Abandoned:  # closing: said once by close
            return
        except (FeedError, VerificationError) as exc:  # keep following; staleness speaks too
            self._failed(f"{exc}", traceback=False)
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}", traceback=True)
        else:
            if self.failure is not None:
                log.info("registry: read and verified again (after: %s)", self.failure)
                self.failure = None
            self.failed = 0
        finally:
            self.attempted.set()

    def _failed(self, reason: str, *, traceback: bool) -> None:
        if reason != self.failure:
            log.error(
                "registry: poll failed: %s (%s)",
                reason,
                "no data loaded yet: no check is allowed"
                if self._cache.checkpoint is None
                else "keeping the data held: no check is allowed once it is older than "
                f"{self._cache.max_staleness:g} s",
                exc_info=traceback,
            )
        self.failure = reason
        self.failed += 1

    def start(self) -> None:
        self._poller.start()

    async def close(self) -> None:
        """Stop following, at once: a read under way is abandoned, not waited for."""
        self._closing.set()
        if self._reading:
            # The feed's cancel is a network round trip: waited for a moment only, so that the
            # database stops the statement before the process exits, yet never holds up a stop.
            try:
                await asyncio.wait_for(
                    _in_daemon_thread(self._feed.interrupt, name="registry-feed-interrupt"),
                    _INTERRUPT_WAIT,
                )
            except TimeoutError:
                pass
            except Exception:  # the read is abandoned all the same
                log.exception("registry: the feed could not cancel the read under way")
            log.warning(
                "registry: stopping; %s under way is abandoned",
                "the first load" if self._cache.checkpoint is None else "the poll",
            )
        await self._poller.close()
