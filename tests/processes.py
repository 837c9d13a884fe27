"""``permitgate`` commands run as real processes for end-to-end tests: the lines each writes to
stderr, as they come, to wait on; and a process killed at the end of its block whatever
happened."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from gate_helpers import stderr_lines

__all__ = ["PERMITGATE", "Served", "free_port", "spawn"]

PERMITGATE = str(Path(sys.executable).with_name("permitgate"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served:
    """A running ``permitgate`` command, and the lines it has written so far."""

    def __init__(self, process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        self.process = process
        self._lines = lines
        self.seen: list[str] = []

    def wait_for(self, pattern: str, times: int = 1, timeout: float = 30.0) -> re.Match[str]:
        """The ``times``-th line since the start matching ``pattern``, once written."""
        deadline = time.monotonic() + timeout
        while True:
            matches = [m for line in self.seen if (m := re.search(pattern, line))]
            if len(matches) >= times:
                return matches[times - 1]
            try:
                self.seen.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(
                    f"not {times} lines matching {pattern!r} in:\n{''.join(self.seen)}"
                ) from None

    def drain(self) -> str:
        """Every line written so far (without waiting for more)."""
        while True:
            try:
                self.seen.append(self._lines.get_nowait())
            except queue.Empty:
                return "".join(self.seen)

    def text(self) -> str:
        """Every line written, once the process has ended."""
        assert self.process.wait(timeout=30) is not None
        while True:
            try:
                self.seen.append(self._lines.get(timeout=1))
            except queue.Empty:
                return "".join(self.seen)


@contextmanager
def spawn(args: list[str], env: Mapping[str, str] | None = None) -> Iterator[Served]:
    """``permitgate *args`` (with ``env`` added to the environment) for the block; killed
    (SIGKILL) at its end if still running."""
    process = subprocess.Popen(
        [PERMITGATE, *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    lines, reader = stderr_lines(process)
    try:
        yield Served(process, lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)
