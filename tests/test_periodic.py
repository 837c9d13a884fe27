"""Background jobs never die silently: a job that raises is logged with its traceback and run
again after a backoff that starts at the interval and doubles up to a cap; success restores the
normal pace."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from server.periodic import Periodic


class Flaky:
    """A job that raises its first ``failures`` runs, and records when each run started."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs: list[float] = []

    async def __call__(self) -> None:
        self.runs.append(time.monotonic())
        if len(self.runs) <= self.failures:
            raise RuntimeError(f"run {len(self.runs)} breaks")


def test_a_job_that_raises_is_logged_and_run_again_with_capped_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="server.periodic")
    job = Flaky(failures=5)

    async def scenario() -> None:
        periodic = Periodic("flaky", 0.01, job, at_once=True, max_backoff=0.05)
        periodic.start()
        deadline = time.monotonic() + 10
        while len(job.runs) < 8 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await periodic.close()

    asyncio.run(scenario())
    assert len(job.runs) >= 8, "the job was not run again after failing"
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == [
        f"flaky failed ({n} in a row); running it again in {delay:.3g} s"
        for n, delay in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (5, 0.05)]
    ]
    for record in failed:  # each with its traceback
        assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
        assert "Traceback" in caplog.text
    gaps = [b - a for a, b in zip(job.runs, job.runs[1:], strict=False)]
    for gap, delay in zip(gaps[:5], [0.01, 0.02, 0.04, 0.05, 0.05], strict=True):
        assert gap >= delay * 0.9  # backed off at least that long
    assert "flaky ran again after 5 failures" in caplog.messages


def test_close_can_let_a_running_job_finish() -> None:
    finished: list[bool] = []

    async def slow() -> None:
        await asyncio.sleep(0.2)
        finished.append(True)

    async def scenario(interrupt: bool) -> None:
        periodic = Periodic("slow", 0.01, slow, at_once=True)
        periodic.start()
        await asyncio.sleep(0.05)  # the first run is under way
        await periodic.close(interrupt=interrupt)

    asyncio.run(scenario(interrupt=True))
    assert finished == []
    asyncio.run(scenario(interrupt=False))
    assert finished == [True]
