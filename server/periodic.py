"""A background task that runs a coroutine every few seconds until closed, and never dies silently.

A job that raises is logged with its traceback and run again after a backoff: ``interval`` after
the first failure, doubling with each further failure in a row, up to ``max_backoff``; the first
success after failures is logged too and brings the pace back to ``interval``. ``close`` either
cancels the job's await (the job itself must stop work it left to a thread: the registry
follower abandons its read) or lets the job finish (a decision-log write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[object]],
        *,
        at_once: bool = False,
        max_backoff: float = 60.0,
    ) -> None:
        self.name = name
        self._interval = interval
        self._job = job
        self._at_once = at_once  # run the job as soon as started, not after the first interval
        self._max_backoff = max(max_backoff, interval)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.failures = 0  # in a row, up to now

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped", self.name, exc_info=task.exception())

    async def _run(self) -> None:
        delay = 0.0 if self._at_once else self._interval
        while not await self._stopped_within(delay):
            try:
                await self._job()
            except Exception:
                self.failures += 1
                delay = min(self._interval * 2 ** (self.failures - 1), self._max_backoff)
                log.exception(
                    "%s failed (%d in a row); running it again in %.3g s",
                    self.name,
                    self.failures,
                    delay,
                )
            else:
                if self.failures:
                    log.info("%s ran again after %d failures", self.name, self.failures)
                self.failures = 0
                delay = self._interval

    async def _stopped_within(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True as soon as ``close`` asks to stop."""
        if self._stopping.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        return self._stopping.is_set()

    async def close(self, *, interrupt: bool = True) -> None:
        """Stop running the job; the await of a run under way is cancelled, or with
        ``interrupt=False`` the run is finished first."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        if interrupt:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
