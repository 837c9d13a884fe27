"""Keeps the gate's cache in step with the registry, read through a ``RegistryFeed``.

Every ``interval`` seconds the follower opens one snapshot of the feed and hands it to the
``RegistryVerifier`` (off the event loop), which decides what may be believed and persists it;
the result is installed on the loop, head and records (with their party index) together, so a
request never sees a record newer than the head it would cite; installing costs no work per
structure. The first poll runs as soon as the follower starts; it is the
first load, which the gate serves during (answering REVIEW).

Freshness does not depend on polls succeeding: it is the age of the held head's cosignature
(``server.cache``). A poll that fails changes nothing; why is logged once per distinct reason,
and again when polls succeed, not at every poll. What the verifier refuses (a rolled-back or
forged head, records that do not match the map) is logged and counted in ``incidents``.

Each read runs in a daemon thread of its own, so that stopping never waits for it: ``close``
sets a flag that the read checks between records (and before persisting anything), asks the
feed to cancel the statement it is running (one blocked on a lock, say), logs that the read was
abandoned, and returns; a thread still blocked on the database cannot keep the process from
exiting either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from permitgate_client import VerificationError

from registry.feed import FeedError, RegistryFeed
from server.cache import RegistryCache
from server.periodic import Periodic
from server.verifier import Abandoned, GateStateError, RegistryVerifier, Update

__all__ = ["RegistryFollower"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_INTERRUPT_WAIT = 2.0  # seconds a stop waits for the feed to cancel the read under way


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
    def __init__(
        self,
        feed: RegistryFeed,
        cache: RegistryCache,
        verifier: RegistryVerifier,
        *,
        interval: float = 1.0,
    ) -> None:
        self._feed = feed
        self._cache = cache
        self._verifier = verifier
        self._poller = Periodic("registry-follower", interval, self._poll_logged, at_once=True)
        self._closing = verifier.closing  # read by the reading thread between records
        self._reading = False  # a read is under way
        self.incidents = verifier.incidents
        self.failure: str | None = None  # why the last poll failed; None after a success
        self.failed = 0  # polls failed in a row
        self.attempted = asyncio.Event()  # set once the first poll has ended, loaded or not

    def _read(self) -> Update:
        """In a worker thread: one snapshot of the feed, verified (and persisted)."""
        with self._feed.snapshot() as view:
            update = self._verifier.poll(view)
        if self._closing.is_set():
            raise Abandoned
        return update

    async def poll(self) -> Update:
        """One round; returns what was installed. Raises when the poll failed."""
        started = time.monotonic()
        before = self._cache.head
        base = self._verifier.head  # the verifier's changes are counted from its head
        self._reading = True
        try:
            update = await _in_daemon_thread(self._read, name="registry-follower")
        finally:
            self._reading = False
        # The cache takes the verifier's records whole, not this poll's changes: a poll whose
        # outcome was lost after the verifier adopted a head (the snapshot's end failing, say)
        # is made good by the next one, never leaving one head's records under another head.
        # The party index comes with them, made in the verifier's thread: installing is a swap.
        records, parties = self._verifier.verified
        # The structures changed, when they are all the difference from what the cache holds:
        # the verifier's changes since its head, which the cache holds too. The listeners
        # then look at those only (a watch of a district, at each head), not at every one.
        changed: frozenset[str] | None = None
        if (
            not update.replace
            and (update.adopted or update.records)
            and before is not None
            and base is not None
            and before.same_head(base)
        ):
            changed = frozenset(update.records)
        self._cache.install(
            update.head,
            records,
            replace=True,
            doubtful=update.doubtful,
            superseded=update.superseded,
            parties=parties,
            changed=changed,
        )
        head = update.head
        if head is not None and (before is None or not head.same_head(before)):
            if before is None:
                log.info(
                    "registry: loaded version %d (head serial %d), %d structures, verified in "
                    "%.1f s",
                    head.size,
                    head.map.serial,
                    len(self._cache),
                    time.monotonic() - started,
                )
            else:
                log.info(
                    "registry: version %d (head serial %d), %d status records updated",
                    head.size,
                    head.map.serial,
                    len(update.records),
                )
        return update

    async def _poll_logged(self) -> None:
        try:
            await self.poll()
        except Abandoned:  # closing: said once by close
            return
        except (FeedError, VerificationError, GateStateError) as exc:  # staleness speaks too
            if self._closing.is_set():  # the read was cancelled on the way out: said by close
                return
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
            self._cache.report_stale()

    def _failed(self, reason: str, *, traceback: bool) -> None:
        if reason != self.failure:
            log.error(
                "registry: poll failed: %s (%s)",
                reason,
                "no data loaded yet: no check is allowed"
                if self._cache.head is None
                else "keeping the data held: no check is allowed once its cosignature is "
                f"older than {self._cache.max_staleness:g} s",
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
                "the first load" if self._cache.head is None else "the poll",
            )
        await self._poller.close()
