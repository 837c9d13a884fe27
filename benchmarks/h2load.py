"""Running ``h2load`` (nghttp2's HTTP/2 load generator) as a gRPC client, and reading its output.

gRPC is HTTP/2 with a fixed framing, so one load generator drives every server of the
benchmark alike (the gate, a bare ``grpc.aio`` server, a Go PDP) and none of them pays for a
Python client: each request is a ``POST /package.Service/Method`` with ``content-type:
application/grpc`` and ``te: trailers``, whose body is the 5-byte gRPC prefix (not compressed,
length) and one serialized request message (``grpc_frame``).

h2load sees HTTP status codes, never ``grpc-status`` (a trailer): a gRPC error is still HTTP
200. So a run is judged here by what h2load does see: every request done and succeeded (none
failed, errored or timed out), every status 2xx, and at least ``min_reply_bytes`` of DATA per
answer, since a gRPC error carries no message at all. The caller checks one answer's content
with a real gRPC client before timing.

Per-request times come from ``--log-file`` (start time, status, microseconds until the end of
the response), so p50/p99 are exact, not h2load's own rounded summary.
"""

from __future__ import annotations

import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "H2Load",
    "H2LoadError",
    "ensure_h2load",
    "grpc_frame",
    "h2load_version",
    "run_h2load",
]

_GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
_SUMMARY = ("requests:", "status codes:", "traffic:")


class H2LoadError(RuntimeError):
    """h2load failed, or its output shows requests that did not succeed."""


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: flag 0 (not compressed), 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_version() -> str:
    found = shutil.which("h2load")
    if found is None:
        return "missing"
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.strip() or out.stderr.strip()).removeprefix("h2load ")


@dataclass(frozen=True)
class H2Load:
    """What one h2load run did: counts from its summary, and per-request latencies."""

    seconds: float  # h2load's own "finished in"
    requests: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_other: int  # 3xx, 4xx and 5xx
    data_bytes: int
    latencies_us: tuple[int, ...]
    client_cpu: float  # h2load's user + system seconds

    @property
    def per_second(self) -> float:
        return self.succeeded / self.seconds

    def percentile_ms(self, p: float) -> float:
        """The p-th percentile of per-request latency, in ms (nearest rank)."""
        if not self.latencies_us:
            return float("nan")
        ordered = sorted(self.latencies_us)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] / 1000

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies_us) / 1000 if self.latencies_us else float("nan")


_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s),")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_DATA = re.compile(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data")


def _parse(text: str, latencies: tuple[int, ...], client_cpu: float) -> H2Load:
    finished, requests, status, data = (
        _FINISHED.search(text),
        _REQUESTS.search(text),
        _STATUS.search(text),
        _DATA.search(text),
    )
    if finished is None or requests is None or status is None or data is None:
        raise H2LoadError(f"cannot read h2load's output:\n{text}")
    seconds = float(finished[1]) / (1000 if finished[2] == "ms" else 1)
    counts = (int(x) for x in requests.groups())
    _total, _started, done, succeeded, failed, errored, timeout = counts
    return H2Load(
        seconds=seconds,
        requests=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=int(status[1]),
        status_other=int(status[2]) + int(status[3]) + int(status[4]),
        data_bytes=int(data[3]),
        latencies_us=latencies,
        client_cpu=client_cpu,
    )


def _read_log(path: Path) -> tuple[int, ...]:
    """Microseconds per request from h2load's --log-file (rows of start, status, duration)."""
    out: list[int] = []
    for line in path.read_text().splitlines():
        columns = line.split("\t")
        if len(columns) >= 3 and columns[1].startswith("2"):
            out.append(int(columns[2]))
    return tuple(out)


def run_h2load(
    url: str,
    body: Path,
    *,
    streams: int,
    min_reply_bytes: int,
    connections: int = 1,
    requests: int | None = None,
    seconds: float | None = None,
    cpu: str | None = None,
    warmup: bool = False,
    timeout: float = 300,
) -> H2Load:
    """POST ``body`` to ``url``, ``streams`` requests in flight over ``connections``: exactly
    ``requests`` of them, or as many as fit in ``seconds``; raise ``H2LoadError`` unless every
    request succeeded with a full answer.

    Measure with ``requests``: every request sent is answered and counted, so the server's CPU
    time divides exactly. A timed run (``seconds``) abandons the requests in flight when time
    is up, whose work the server has done or still does: with slow bulk requests, a large
    share. ``cpu``: a ``taskset -c`` list to run h2load on (None: wherever the scheduler puts
    it). ``warmup``: a run that may end before any answer arrives, but must see no failure.
    """
    if (requests is None) == (seconds is None):
        raise ValueError("give requests or seconds, not both")
    if streams % connections:
        raise ValueError(f"{streams} streams do not spread evenly over {connections} connections")
    amount = f"-n{requests}" if requests is not None else f"-D{round((seconds or 0) * 1000)}ms"
    with tempfile.TemporaryDirectory(prefix="permitgate-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        argv = [
            "h2load",
            f"-c{connections}",
            "-t1",
            f"-m{streams // connections}",
            amount,
            f"--log-file={log}",
            "-d",
            str(body),
        ]
        for header in _GRPC_HEADERS:
            argv += ["-H", header]
        argv.append(url)
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        before = _children_cpu()
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        wall = time.monotonic() - started
        client_cpu = _children_cpu() - before
        if done.returncode != 0:
            raise H2LoadError(f"h2load exited {done.returncode}: {done.stderr.strip()[-500:]}")
        result = _parse(done.stdout, _read_log(log), client_cpu)
    if result.seconds <= 0 or result.seconds > wall + 1:
        raise H2LoadError(f"h2load reports {result.seconds} s in {wall:.1f} s:\n{done.stdout}")
    problems = []
    if result.succeeded == 0 and not warmup:
        problems.append("no request succeeded")
    if requests is not None and result.succeeded != requests:
        problems.append(f"{result.succeeded} of {requests} requests succeeded")
    if result.failed or result.errored or result.timeout:
        problems.append(
            f"{result.failed} failed, {result.errored} errored, {result.timeout} timed out"
        )
    if result.status_other or (requests is not None and result.status_2xx != requests):
        problems.append(f"{result.status_other} answers with an HTTP status other than 2xx")
    if result.succeeded and result.data_bytes < result.succeeded * min_reply_bytes:
        problems.append(
            f"{result.data_bytes} bytes of answers for {result.succeeded} requests, under "
            f"{min_reply_bytes} each: some answers were gRPC errors"
        )
    if len(result.latencies_us) != result.succeeded:
        problems.append(
            f"the log holds {len(result.latencies_us)} requests, h2load counts {result.succeeded}"
        )
    if problems:
        counts = [line for line in done.stdout.splitlines() if line.startswith(_SUMMARY)]
        raise H2LoadError(f"{url}: {'; '.join(problems)} ({' / '.join(counts)})")
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ensure_h2load() -> None:
    """Install Debian's nghttp2-client (h2load) when it is missing."""
    if shutil.which("h2load") is not None:
        return
    print("h2load is missing: apt-get install nghttp2-client", flush=True)
    apt = ["apt-get", "install", "-y", "-q", "nghttp2-client"]
    if subprocess.run(apt, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(apt, check=True)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is still missing after installing nghttp2-client")
