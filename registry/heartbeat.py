"""The registry service's periodic jobs: the heartbeat that follows and cosigns the newest head,
and the refresh that re-signs status records before they lapse.

**Heartbeat**, every ``interval`` seconds (``--heartbeat``, default 10): compare the database's
newest head with the held one (``registry.service_state``). The same head: cosign it with the
current time, even when nothing changed, so that gates can show their data is fresh. A newer
head (an import or a refresh run beside the service): adopt it once it verifies, then cosign it,
so a change is cosigned by the service within one heartbeat. A database that disagrees (a head
deleted or rolled back, a row rewritten, records that do not give the signed map root): the
service stops answering (health NOT_SERVING, calls UNAVAILABLE saying why) and cosigns nothing,
so gates turn to REVIEW once their data ages, until the database agrees again.

**Follow**, on demand (``follow.run_soon()``, after the service's own department writes
commit): adopt the database's newer head at once, without cosigning (a head is cosigned when it
is signed), so the service answers and publishes it within the moment, and the writer's lock
is not taken between one group of writes and the next.

**Refresh**, once the registry is first verified and then every ``refresh_every`` seconds
(``--refresh-every``, default an hour): re-sign the records due; the new head is followed at once.

A job that fails is logged once per distinct reason (a traceback only for failures nobody
anticipated) and run again after a backoff that doubles with each failure in a row: the
heartbeat from its interval up to eight of them (at most a minute), the refresh from the
heartbeat's interval (at least a second) up to ten minutes. When the writer refuses the
database (``RegistryRefused``), the service stops answering as for a mismatch it found itself,
until a cosignature succeeds again.

With a publisher (``registry.publisher``, ``--redis``), each state adopted and each
cosignature is told to it, and a newer head is applied to the held state only while the
publisher is not reading it (its ``lock``).

Work that waits on the database runs in a daemon thread, so that a stop never waits for it: a
transaction left unfinished when the process exits is rolled back, nothing half written. Every
signature goes through ``open_registry_writer``, the one place that says which writer the
service signs with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

from permitgate_client import VerifierKey
from redis import RedisError
from sqlalchemy.exc import SQLAlchemyError

from registry.admin import RegistryRefused
from registry.errors import plain_error
from registry.service_state import RegistryMismatch, ServedState
from registry.signing import Signer
from registry.storage import Database, HeadRow, error_line
from registry.writer import open_writer, refresh_records

__all__ = [
    "Heartbeat",
    "Job",
    "NotServing",
    "Publisher",
    "RegistryWriter",
    "open_registry_writer",
    "run_blocking",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
_FOLLOW_ONLY_ON_DEMAND = 3600.0  # seconds: the follow job runs when asked (the beat follows too)


# --- The writer every signature goes through ------------------------------------------------------


class RegistryWriter(Protocol):
    """What the service signs through, each call in the registry's writer lock; a database
    that disagrees with the registry is refused with a ``RegistryRefused`` naming what."""

    def cosign(self, signed_note: bytes, now: datetime) -> bytes | None:
        """When the database's newest head is ``signed_note``, replace its cosignature with one
        dated ``now`` and return the cosigned note; None when the newest head is another."""
        ...

    def refresh(self, now: datetime) -> int:
        """Re-sign the status records due for it; how many were re-signed."""
        ...


class _StateWriter:
    """The registry's one writer (``registry.writer``): its locks, its verified state, its
    refusal of a database that disagrees with what the registry signed."""

    def __init__(self, db: Database, signer: Signer, state_dir: Path) -> None:
        self._db = db
        self._signer = signer
        self._state_dir = state_dir

    def cosign(self, signed_note: bytes, now: datetime) -> bytes | None:
        with open_writer(self._db, self._signer, self._state_dir) as writer:
            row = writer.session.get(HeadRow, writer.serial)
            if row is None or row.note != signed_note:
                return None
            note = writer.cosign_head(now).cosigned_note()
        return note  # committed, and the state holds it

    def refresh(self, now: datetime) -> int:
        return refresh_records(self._db, self._signer, state_dir=self._state_dir, now=now)


def open_registry_writer(db: Database, signer: Signer, state_dir: Path) -> RegistryWriter:
    """The writer the service's jobs sign through (``state_dir``: the registry's own verified
    state, ``--state``)."""
    return _StateWriter(db, signer, state_dir)


# --- Blocking work, and jobs that run every few seconds -------------------------------------------


async def run_blocking(work: Callable[[], T], name: str) -> T:
    """``work()`` in a daemon thread of its own; a cancelled await abandons it (the thread ends
    when ``work`` returns, and the process never waits for it at exit)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: Exception | None) -> None:
        if done.done():
            return  # the await was cancelled: nobody wants the outcome
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome: tuple[T | None, Exception | None] = (work(), None)
        except Exception as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop has closed: the service stopped
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await done


def _reason(exc: Exception) -> tuple[str, bool]:
    """A failure in one line, and whether it was anticipated (no traceback then)."""
    if isinstance(exc, (RegistryMismatch, NotServing)):
        return str(exc), True
    plain = plain_error(exc)
    if plain is not None:
        return str(plain), True
    if isinstance(exc, SQLAlchemyError):
        return f"database: {error_line(exc)}", True
    if isinstance(exc, RedisError):
        return f"redis: {type(exc).__name__}: {exc}", True
    return f"{type(exc).__name__}: {exc}", False


class Job:
    """``work`` every ``interval`` seconds (at once when started with ``at_once``, and whenever
    ``run_soon`` asks); after a failure, again in ``retry`` seconds (default ``interval``),
    doubling with each failure in a row up to ``max_backoff``; each distinct reason logged once."""

    def __init__(
        self,
        name: str,
        interval: float,
        work: Callable[[], Awaitable[object]],
        *,
        at_once: bool = True,
        retry: float | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        self.name = name
        self._interval = interval
        self._retry = interval if retry is None else retry
        self._work = work
        self._at_once = at_once
        self._max_backoff = max(self._retry, max_backoff)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # in a row, up to now
        self.runs = 0  # that ended, well or not
        self._reported: str | None = None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def run_soon(self) -> None:
        """Run now (or right after the run under way) instead of at the next interval."""
        self._wake.set()

    async def _run(self) -> None:
        delay = 0.0 if self._at_once else self._interval
        while await self._waited(delay):
            try:
                await self._work()
            except Exception as exc:
                self.failures += 1
                delay = min(self._retry * 2 ** (self.failures - 1), self._max_backoff)
                self._report(exc, delay)
            else:
                if self.failures:
                    log.info("%s works again after %d failures", self.name, self.failures)
                self.failures = 0
                self._reported = None
                delay = self._interval
            self.runs += 1

    def _report(self, exc: Exception, delay: float) -> None:
        reason, anticipated = _reason(exc)
        if reason == self._reported:
            log.debug("%s failed again (%d in a row): %s", self.name, self.failures, reason)
            return
        self._reported = reason
        log.error(
            "%s failed: %s (trying again in %.3g s, backing off up to %.3g s)",
            self.name,
            reason,
            delay,
            self._max_backoff,
            exc_info=None if anticipated else exc,
        )

    async def _waited(self, delay: float) -> bool:
        """Wait ``delay`` seconds or until woken; False once the job is closing."""
        if not self._stopping and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()
        return not self._stopping

    async def close(self, grace: float = 5.0) -> None:
        """Stop: a run under way may finish within ``grace`` seconds, then it is cancelled."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), grace)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- The heartbeat and the refresh ----------------------------------------------------------------


class NotServing(Exception):
    """The service cannot answer now; the message says why (health is NOT_SERVING)."""


Condition = Callable[[str | None], Awaitable[None]]
"""Told each change of what the service may do: None when it serves, else why it does not."""


class Publisher(Protocol):
    """Where the heartbeat's verified state is copied (``registry.publisher``), told each change."""

    lock: asyncio.Lock
    """Held while the publisher reads the state: no head is ``apply``-ed to it meanwhile."""

    def adopted(self, state: ServedState, changed: Iterable[str] | None) -> None:
        """The heartbeat holds ``state`` now; ``changed``: the structures whose records changed
        since the state held before (None: ``state`` was loaded afresh)."""
        ...

    def cosigned(self) -> None:
        """The held head has a newer cosignature."""
        ...


class Heartbeat:
    """Keeps the service's verified state (``ServedState``) in step with the database, cosigns
    its head every ``interval`` seconds, and refreshes records every ``refresh_every``."""

    def __init__(
        self,
        db: Database,
        key: VerifierKey,
        writer: RegistryWriter,
        *,
        interval: float,
        refresh_every: float,
        on_change: Condition,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        publisher: Publisher | None = None,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._key = key
        self._writer = writer
        self._on_change = on_change
        self._clock = clock
        self.state: ServedState | None = None
        self.refusal: str | None = f"loading the registry from {db} (not verified yet)"
        self.cosigned = 0  # cosignatures made
        self._writer_refusal: str | None = None  # why the writer refused, until it signs again
        self._following = asyncio.Lock()  # one _follow at a time: the beat's or follow's
        self.beat = Job("heartbeat", interval, self._beat, max_backoff=min(60.0, 8 * interval))
        self.follow = Job(
            "follow", _FOLLOW_ONLY_ON_DEMAND, self._follow_only, at_once=False, retry=interval
        )
        self.refresh = Job(
            "refresh",
            refresh_every,
            self._refresh,
            at_once=False,
            retry=max(interval, 1.0),
            max_backoff=min(600.0, refresh_every),
        )

    def start(self) -> None:
        self.beat.start()
        self.follow.start()
        self.refresh.start()

    async def close(self, grace: float = 5.0) -> None:
        await self.beat.close(grace)
        await self.follow.close(grace)
        await self.refresh.close(grace)

    def serving(self) -> ServedState:
        """The state to answer from; ``NotServing`` saying why there is none now."""
        if self.refusal is not None or self.state is None:
            raise NotServing(self.refusal or "the registry is not loaded")
        return self.state

    async def _set(self, refusal: str | None) -> None:
        if refusal != self.refusal:
            self.refusal = refusal
            await self._on_change(refusal)

    async def _beat(self) -> None:
        try:
            state = await self._follow()
        except RegistryMismatch as exc:
            await self._set(f"the database disagrees with the signed registry: {exc}")
            raise
        except Exception as exc:
            if self.state is None:  # nothing verified to answer from
                await self._set(f"cannot load the registry: {_reason(exc)[0]}")
            raise
        if self._writer_refusal is None:  # else only a cosignature shows the writer agrees now
            await self._set(None)
        now = self._clock()
        note = await self._signing(
            run_blocking(lambda: self._writer.cosign(state.signed_note, now), "cosign")
        )
        if note is None:  # a newer head came meanwhile: follow it now, cosign it then
            self.beat.run_soon()
            return
        state.cosigned(note)
        self.cosigned += 1
        if self._publisher is not None:
            self._publisher.cosigned()
        self._writer_refusal = None
        await self._set(None)

    async def _follow_only(self) -> None:
        """Adopt the database's newer head (the heartbeat loads the registry first)."""
        if self.state is None or self.refusal is not None:
            return
        try:
            await self._follow()
        except RegistryMismatch as exc:
            await self._set(f"the database disagrees with the signed registry: {exc}")
            raise

    async def _follow(self) -> ServedState:
        """Load the registry, or adopt the database's newer head; raise if they disagree."""
        async with self._following:
            return await self._follow_locked()

    async def _follow_locked(self) -> ServedState:
        held = self.state
        if held is None:
            started = time.monotonic()
            loaded = await run_blocking(lambda: ServedState.load(self._db, self._key), "load")
            self.state = loaded
            self._loaded(loaded, time.monotonic() - started)
            self._tell_publisher(loaded, None)
            self.refresh.run_soon()  # records due are re-signed at start
            return loaded
        step = await run_blocking(lambda: held.read_advance(self._db), "follow")
        if step is None:
            return held
        changed: list[str] | None = None  # None: a state loaded afresh
        if not isinstance(step, ServedState):
            advance = step
            try:
                async with self._publisher.lock if self._publisher else contextlib.nullcontext():
                    held.apply(advance)
            except RegistryMismatch as exc:
                log.warning("%s; reading the whole registry again", exc)
                step = await run_blocking(lambda: held.load_after(self._db), "load")
            else:
                step = held
                changed = [structure_id for structure_id, _ in advance.records]
        self.state = step
        self._loaded(step, None)
        self._tell_publisher(step, changed)
        return step

    def _tell_publisher(self, state: ServedState, changed: list[str] | None) -> None:
        """(Called with no await since the state changed: the publisher reads no state that it
        has not been told of.)"""
        if self._publisher is not None:
            self._publisher.adopted(state, changed)

    def _loaded(self, state: ServedState, seconds: float | None) -> None:
        took = "" if seconds is None else f" in {seconds:.3g} s"
        log.info(
            "registry: verified head serial %d: %d events, %d structures%s",
            state.serial,
            state.size,
            len(state),
            took,
        )

    async def _signing(self, work: Awaitable[T]) -> T:
        """``work`` through the writer. Its refusal (the database disagrees with the registry)
        stops the service answering, as a mismatch found here does, until it cosigns again."""
        try:
            return await work
        except RegistryRefused as exc:
            self._writer_refusal = f"the registry's writer refuses the database: {exc}"
            await self._set(self._writer_refusal)
            raise

    async def _refresh(self) -> None:
        self.serving()  # records are re-signed only while the database agrees with the registry
        count = await self._signing(
            run_blocking(lambda: self._writer.refresh(self._clock()), "refresh")
        )
        if count:
            log.info("refresh: %d status records re-signed", count)
            self.beat.run_soon()
