"""``permitgate serve --workers N``: N gate processes on one port, and the process that keeps them.

One Python process serves gRPC on one core at most; N processes serve on N. They listen on the
same address with ``SO_REUSEPORT``, and the kernel spreads incoming *connections* (not calls)
among them: a client on one connection always talks to the same worker.

The supervisor (the process the command started) forks every worker before any gRPC object
exists in it, and never creates one: gRPC's core runs threads once started and is not safe to
fork then. It checks options, forks, passes signals on and restarts; each worker builds its own
gate. Workers share the port and the database, nothing else: each has its own state directory
(``worker-K`` under ``--state``: its lock, its verified head, its decision-log files), so each
keeps its own anti-rollback state, and a worker restarted takes up exactly the state it left.

Supervision:

* SIGTERM or SIGINT is passed to every worker, and the supervisor waits until all have stopped
  (each finishes its calls in flight and writes its decision log); it exits 0 if every worker
  stopped cleanly, 1 otherwise.
* A worker that dies otherwise is logged (its exit status or signal) and started again: at once
  if it had served ``steady`` seconds, else after a pause doubling from ``first_backoff`` up to
  ``max_backoff``. One that dies ``max_failed_starts`` times in a row before serving ``steady``
  seconds makes the supervisor stop the others and exit 1: it cannot keep N serving.
* At the first start, a worker that fails before serving (a state directory it cannot use, an
  address it cannot bind: its own line says why) stops them all, exit 2, as a single gate that
  cannot start would.
* Each worker watches its link to the supervisor: should the supervisor die (SIGKILL), the
  workers stop as on SIGTERM rather than serve on unsupervised.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from registry.errors import PlainError
from server.listen import Servable

__all__ = ["Supervisor", "SupervisorLink", "hold_state", "linked", "worker_state_dir"]

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HANDLED = {*_STOP_SIGNALS, signal.SIGCHLD}
_SERVING = b"s"


def worker_state_dir(state_dir: Path, number: int) -> Path:
    """Worker ``number``'s own state directory, under the gate's."""
    return state_dir / f"worker-{number}"


@contextmanager
def hold_state(state_dir: Path) -> Iterator[None]:
    """Hold the gate's state directory (its ``gate.lock``, as a single gate does) while the
    workers run, so that no single gate or other set of workers takes it meanwhile.

    The workers inherit the lock: it is released when the last of them ends.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / "gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlainError(
                f"another gate uses the state directory {state_dir}: give each gate its own --state"
            ) from None
        yield
    finally:
        os.close(fd)


class SupervisorLink:
    """A worker's end of its link to the supervisor: it says when the worker serves, and shows
    when the supervisor is gone (the supervisor's end closes; it never writes)."""

    def __init__(self, end: socket.socket) -> None:
        self._end = end

    def serving(self) -> None:
        self._end.sendall(_SERVING)

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop this worker as SIGTERM does, should the supervisor die."""
        fd = self._end.fileno()

        def gone() -> None:
            loop.remove_reader(fd)
            log.warning("the supervisor is gone: stopping")
            os.kill(os.getpid(), signal.SIGTERM)

        loop.add_reader(fd, gone)


class _Linked:
    """A servable that tells the supervisor once it serves, and stops should the supervisor go."""

    def __init__(self, app: Servable, link: SupervisorLink) -> None:
        self._app = app
        self._link = link

    async def start(self) -> None:
        await self._app.start()
        self._link.serving()
        self._link.watch(asyncio.get_running_loop())

    def describe(self) -> str:
        return self._app.describe()

    async def stop(self) -> None:
        await self._app.stop()


def linked(app: Servable, link: SupervisorLink) -> Servable:
    """``app``, reporting to the supervisor through ``link``."""
    return _Linked(app, link)


Work = Callable[[int, SupervisorLink], int]
"""What a worker runs: its number (1 to N) and its link in; its exit status out."""


@dataclass
class _Worker:
    number: int
    pid: int | None = None
    end: socket.socket | None = None  # the supervisor's end of the link
    serving_since: float | None = None  # monotonic time it said it serves; None: not yet
    failed_starts: int = 0  # deaths in a row before serving ``steady`` seconds
    crashes: int = 0  # deaths in a row before serving ``steady`` seconds
    restart_at: float | None = None


class Supervisor:
    """Runs ``count`` workers, each ``work(number, link)`` in a forked process, and keeps them."""

    def __init__(
        self,
        count: int,
        work: Work,
        *,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
        steady: float = 10.0,
        max_failed_starts: int = 5,
    ) -> None:
        if count < 1:
            raise ValueError(f"count: {count} is not a positive number")
        self._workers = [_Worker(number) for number in range(1, count + 1)]
        self._work = work
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._steady = steady
        self._max_failed_starts = max_failed_starts
        self._selector = selectors.DefaultSelector()
        self._wakeup_read, self._wakeup_write = socket.socketpair()
        self._all_served = False  # every worker has served once: past the first start
        self._stopping = False
        self._status = 0

    def run(self) -> int:
        """Start the workers and keep them until stopped; the supervisor's exit status."""
        for end in (self._wakeup_read, self._wakeup_write):
            end.setblocking(False)
        self._selector.register(self._wakeup_read, selectors.EVENT_READ)
        previous = {sig: signal.signal(sig, _note) for sig in _HANDLED}
        signal.set_wakeup_fd(self._wakeup_write.fileno(), warn_on_full_buffer=False)
        try:
            for worker in self._workers:
                self._spawn(worker)
            while self._stopping is False or any(w.pid is not None for w in self._workers):
                self._turn()
        finally:
            signal.set_wakeup_fd(-1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._selector.close()
            self._wakeup_read.close()
            self._wakeup_write.close()
        return self._status

    def _turn(self) -> None:
        due = [w.restart_at for w in self._workers if w.restart_at is not None]
        timeout = None if not due else max(0.0, min(due) - time.monotonic())
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._wakeup_read:
                for signum in self._wakeup_read.recv(512):
                    if signum in _STOP_SIGNALS:
                        self._stop(signal.Signals(signum).name, signum)
            else:
                self._heard(key.data)
        self._reap()
        now = time.monotonic()
        for worker in self._workers:
            if worker.restart_at is not None and worker.restart_at <= now:
                self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        worker.restart_at = None
        worker.serving_since = None
        ours, theirs = socket.socketpair()
        # Signals wait until the child has dropped the supervisor's handlers: one that came
        # before would be read as the supervisor's own.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        pid = os.fork()
        if pid == 0:
            ours.close()
            self._become(worker.number, theirs, mask)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
        worker.pid, worker.end = pid, ours
        self._selector.register(ours, selectors.EVENT_READ, worker)
        log.info("worker %d started (pid %d)", worker.number, pid)

    def _become(self, number: int, end: socket.socket, mask: set[int | signal.Signals]) -> None:
        """In the forked child: drop the supervisor's files and signal handling, run the work."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self._selector.close()
            self._wakeup_read.close()
            self._wakeup_write.close()
            for other in self._workers:
                if other.end is not None:
                    other.end.close()  # so that each link ends when the supervisor does
            status = self._work(number, SupervisorLink(end))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _heard(self, worker: _Worker) -> None:
        assert worker.end is not None
        try:
            said = worker.end.recv(64)
        except OSError:
            said = b""
        if not said:  # the worker is gone; its exit is reaped
            self._selector.unregister(worker.end)
            return
        if worker.serving_since is None:
            worker.serving_since = time.monotonic()
            log.info("worker %d serving (pid %d)", worker.number, worker.pid)
            if not self._all_served and all(w.serving_since for w in self._workers):
                self._all_served = True
                log.info("all %d workers serving", len(self._workers))

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self._workers if w.pid == pid), None)
            if worker is not None:
                self._ended(worker, wait_status)

    def _ended(self, worker: _Worker, wait_status: int) -> None:
        how = _exit_words(wait_status)
        served = worker.serving_since
        if worker.end is not None:
            if worker.end.fileno() in self._selector.get_map():  # not yet seen at its end
                self._selector.unregister(worker.end)
            worker.end.close()
        worker.pid, worker.end, worker.serving_since = None, None, None
        if self._stopping:
            code = os.waitstatus_to_exitcode(wait_status)
            # one still starting dies of the signal itself: it had answered nothing
            clean = code == 0 or (served is None and -code in _STOP_SIGNALS)
            (log.info if clean else log.error)("worker %d stopped (%s)", worker.number, how)
            if not clean:
                self._status = max(self._status, 1)
            return
        # A worker listens before its registry is loaded: one that dies within ``steady`` of
        # serving (out of memory while loading, say) counts as failing to start.
        if served is None or time.monotonic() - served < self._steady:
            worker.failed_starts += 1
        else:
            worker.failed_starts = 0
        if not self._all_served and served is None:
            log.error("worker %d could not start (%s): stopping all", worker.number, how)
            self._stop("a worker that could not start", signal.SIGTERM, status=2)
            return
        if worker.failed_starts >= self._max_failed_starts:
            log.error(
                "worker %d failed to start %d times in a row (last: %s): stopping all",
                worker.number,
                worker.failed_starts,
                how,
            )
            self._stop("workers that cannot be kept serving", signal.SIGTERM, status=1)
            return
        if served is not None and time.monotonic() - served >= self._steady:
            worker.crashes = 0
            delay = 0.0
        else:
            worker.crashes += 1
            delay = min(self._max_backoff, self._first_backoff * 2 ** (worker.crashes - 1))
        log.error("worker %d died (%s); starting it again in %gs", worker.number, how, delay)
        worker.restart_at = time.monotonic() + delay

    def _stop(self, why: str, signum: int, *, status: int = 0) -> None:
        self._status = max(self._status, status)
        if self._stopping:
            return
        self._stopping = True
        running = [w for w in self._workers if w.pid is not None]
        log.info("stopping on %s: %d workers finishing calls in flight", why, len(running))
        for worker in self._workers:
            worker.restart_at = None
            if worker.pid is not None:
                with suppress(ProcessLookupError):  # it died meanwhile; its exit is reaped
                    os.kill(worker.pid, signum)


def _note(signum: int, frame: object) -> None:
    """The wakeup descriptor carries the signal; the handler need do nothing."""


def _exit_words(wait_status: int) -> str:
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"
