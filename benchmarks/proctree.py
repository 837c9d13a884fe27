"""Wall time, memory and CPU of a subprocess and every process it starts, read from ``/proc``.

``/usr/bin/time -v`` reports the peak RSS of one process (the largest of its waited-for
children at best), which misses a process pool whose workers live alongside the parent. Here a
thread samples the whole tree every ``interval`` seconds:

* ``peak_tree_rss``: the largest sum of ``VmRSS`` over the tree seen at one sample (what the
  tree held at once; shared pages, such as the interpreter's libraries, count once per process);
* ``peak_tree_pss``: the same with ``Pss`` from ``smaps_rollup`` (shared pages split between
  the processes sharing them, so the sum is what the tree really costs the machine);
* ``hwm``: each process's own ``VmHWM`` (its peak RSS, kept by the kernel, so it is exact even
  between samples); their sum is an upper bound of the tree's peak;
* ``cpu``: user + system seconds per process, from ``/proc/<pid>/stat``, as last seen.

``watch`` also follows processes outside the tree whose command line contains one of some
strings (the PostgreSQL backend serving the run, say), for the CPU time they use while the run
lasts; they are not in the tree's sums.

Linux only. Processes that start and end between two samples are not seen.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MIB",
    "ProcessTreeSampler",
    "TreeRun",
    "cpu_seconds",
    "machine_busy_seconds",
    "run_measured",
    "tree_of",
]

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")
_KIB = 1024
MIB = 1024 * 1024


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` file)."""
    out: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(x) for x in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def tree_of(root: int) -> list[int]:
    """``root`` and every process under it (children, their children, ...)."""
    seen: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def _status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` in bytes (empty when the process is gone or a zombie)."""
    out: dict[str, int] = {}
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * _KIB
    return out


def _pss(pid: int) -> int:
    try:
        text = (_PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * _KIB
    return 0


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _name(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if not words:
        return "?"
    if "-c" in words and any("spawn_main" in w for w in words):
        return "spawn worker"
    if " " in words[0]:  # a process title (a PostgreSQL backend, say), not a path
        return words[0].strip()
    return " ".join(Path(words[0]).name if i == 0 else w for i, w in enumerate(words[:4]))


def _matching(needles: tuple[str, ...]) -> list[int]:
    """Every process whose command line (arguments joined by spaces) contains a needle."""
    out: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(needle.encode() in cmdline for needle in needles):
            out.append(int(entry.name))
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, over all cores (``/proc/stat``).

    The difference across a run, less what the measured processes used, is what *other*
    processes took meanwhile: a benchmark on a shared machine should say how shared it was.
    """
    fields = (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


@dataclass
class ProcessTreeSampler:
    """Samples the tree under ``root`` in a thread until ``stop``."""

    root: int
    interval: float = 0.1
    peak_tree_rss: int = 0
    peak_tree_pss: int = 0
    peak_processes: int = 0
    hwm: dict[int, int] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    samples: int = 0
    watch: tuple[str, ...] = ()
    watched_cpu: dict[int, float] = field(default_factory=dict)
    watched_names: dict[int, str] = field(default_factory=dict)
    _cpu_before: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="proctree", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def sample(self) -> None:
        rss = pss = alive = 0
        tree = tree_of(self.root)
        for pid in tree:
            status = _status(pid)
            if not status:
                continue
            alive += 1
            rss += status.get("VmRSS", 0)
            pss += _pss(pid)
            self.hwm[pid] = max(self.hwm.get(pid, 0), status.get("VmHWM", 0))
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.cpu[pid] = cpu
            if pid not in self.names:
                self.names[pid] = _name(pid)
        self.peak_tree_rss = max(self.peak_tree_rss, rss)
        self.peak_tree_pss = max(self.peak_tree_pss, pss)
        self.peak_processes = max(self.peak_processes, alive)
        self.samples += 1
        if self.watch:
            for pid in _matching(self.watch):
                if pid in tree:
                    continue
                cpu = cpu_seconds(pid)
                if cpu is None:
                    continue
                # a process already running at the first sample counts from there
                before = self._cpu_before.setdefault(pid, cpu if self.samples == 1 else 0.0)
                self.watched_cpu[pid] = cpu - before
                if pid not in self.watched_names:
                    self.watched_names[pid] = _name(pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def watched_cpu_where(self, *words: str) -> float:
        """CPU seconds of the watched processes whose name contains one of ``words``."""
        return sum(
            cpu
            for pid, cpu in self.watched_cpu.items()
            if any(word in self.watched_names.get(pid, "") for word in words)
        )

    @property
    def hwm_sum(self) -> int:
        return sum(self.hwm.values())

    @property
    def root_hwm(self) -> int:
        return self.hwm.get(self.root, 0)


@dataclass(frozen=True)
class TreeRun:
    """One measured subprocess run."""

    argv: tuple[str, ...]
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    sampler: ProcessTreeSampler
    machine_cpu: float  # busy CPU seconds of the whole machine during the run

    @property
    def tree_cpu(self) -> float:
        return sum(self.sampler.cpu.values())

    @property
    def others_cpu(self) -> float:
        """CPU seconds used meanwhile by processes neither in the tree nor watched."""
        return max(0.0, self.machine_cpu - self.tree_cpu - sum(self.sampler.watched_cpu.values()))

    def cpu_by_process(self) -> list[tuple[int, str, float, int]]:
        """(pid, name, cpu seconds, VmHWM bytes) for every process seen, the root first."""
        s = self.sampler
        pids = sorted(set(s.hwm) | set(s.cpu), key=lambda p: (p != s.root, p))
        return [(p, s.names.get(p, "?"), s.cpu.get(p, 0.0), s.hwm.get(p, 0)) for p in pids]


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    interval: float = 0.1,
    watch: tuple[str, ...] = (),
) -> TreeRun:
    """Run ``argv`` to completion, sampling its process tree; output is captured."""
    busy = machine_busy_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = ProcessTreeSampler(proc.pid, interval=interval, watch=watch)
    sampler.start()
    try:
        stdout, stderr = proc.communicate()
    finally:
        sampler.stop()
    seconds = time.perf_counter() - started
    busy = machine_busy_seconds() - busy
    return TreeRun(tuple(argv), proc.returncode, seconds, stdout, stderr, sampler, busy)
