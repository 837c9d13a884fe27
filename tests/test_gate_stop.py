"""A gate stops promptly even while its first registry load is blocked on the database.

The load is held by a lock another PostgreSQL session keeps on ``status_record``: stopping the
gate (``GateApp.stop``, and ``permitgate serve`` on SIGINT) returns within seconds, says in the
log that the load was abandoned, and cancels the statement that waited on the lock, so no
backend keeps waiting for the lock on the gate's behalf.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from gate_helpers import GateRegistry, start_gate, stderr_lines, urban_ok, wait_for

PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
ABANDONED = "registry: stopping; the first load under way is abandoned"


def _waiting_on_lock(pg_url: str) -> int:
    """Backends of the test database waiting for a lock (seen from a session of its own: the
    holder's transaction would keep seeing its first view of the activity)."""
    with psycopg.connect(pg_url, autocommit=True) as observer:
        row = observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _locked(pg_url: str) -> psycopg.Connection[tuple[object, ...]]:
    lock = psycopg.connect(pg_url)
    lock.execute("LOCK TABLE status_record IN ACCESS EXCLUSIVE MODE")
    return lock


def test_gate_stops_at_once_while_its_first_load_waits_on_a_lock(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.follower")
    registry = GateRegistry(pg_url, tmp_path / "keys")
    registry.load(urban_ok("S-1"))
    lock = _locked(pg_url)
    try:
        gate = start_gate(pg_url, tmp_path / "keys", poll_interval=0.1, wait_first_poll=False)
        try:
            wait_for(lambda: True if _waiting_on_lock(pg_url) == 1 else None, timeout=10)
            assert not gate.app.follower.attempted.is_set()
        finally:
            started = time.monotonic()
            gate.stop()
            took = time.monotonic() - started
        assert took < 3.0, f"stop took {took:.1f} s"
        assert ABANDONED in caplog.messages
        # The statement waiting on the lock was cancelled: nothing waits any more, lock held.
        wait_for(lambda: True if _waiting_on_lock(pg_url) == 0 else None, timeout=5)
        assert gate.app.cache.checkpoint is None  # nothing was installed on the way out
    finally:
        lock.close()
        registry.close()


def test_serve_process_exits_at_once_on_sigint_during_a_blocked_first_load(
    pg_url: str, tmp_path: Path
) -> None:
    registry = GateRegistry(pg_url, tmp_path / "keys")
    registry.load(urban_ok("S-1"))
    lock = _locked(pg_url)
    process = subprocess.Popen(
        [
            PERMITGATE,
            "serve",
            "--db",
            pg_url,
            "--keys",
            str(tmp_path / "keys"),
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines, reader = stderr_lines(process)
    try:
        try:
            wait_for(lambda: True if _waiting_on_lock(pg_url) == 1 else None, timeout=20)
        except AssertionError:
            raise AssertionError("".join(lines.queue)) from None
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        took = time.monotonic() - started
        assert took < 5.0, f"exited {took:.1f} s after SIGINT"
        reader.join(5)
        said = "".join(lines.queue)
        assert ABANDONED in said, said
        assert "Traceback" not in said, said
        wait_for(lambda: True if _waiting_on_lock(pg_url) == 0 else None, timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        lock.close()
        registry.close()
