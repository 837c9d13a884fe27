"""The registry service and a gate as separate processes with separate key directories.

The gate's key directory holds only ``registry.pub`` (and its own gate key); the registry
service alone holds the private key. With the service running, a clean structure keeps its ALLOW
long past ``--max-staleness`` (the heartbeat's cosignatures keep the unchanged data provably
fresh); a change made beside it reaches the gate signed and cosigned; with the service stopped
(a freeze), the gate turns to REVIEW with ``REGISTRY_STALE`` within ``--max-staleness``, and back
to ALLOW once the service runs again. A flagged structure is never ALLOW at any point.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gate_helpers import (
    GateRegistry,
    Wire,
    case,
    codes,
    connection,
    stderr_lines,
    urban_ok,
    verdict,
    wait_for,
)

PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
CLEAN, FLAGGED, LATER = "110101-0001-0001", "110101-0001-0002", "110101-0001-0003"
MAX_STALENESS = 3.0
HEARTBEAT = 0.5


@contextmanager
def process(args: list[str], pattern: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``permitgate args``; yield it and the address its start line names."""
    proc = subprocess.Popen(
        [PERMITGATE, *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines, reader = stderr_lines(proc)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(pattern, lines.get(timeout=30))
            if match:
                break
        else:
            raise AssertionError(f"no line matching {pattern!r}")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)


def service(registry: GateRegistry, state: Path) -> list[str]:
    return [
        "registry",
        "serve",
        "--db",
        registry.url,
        "--keys",
        str(registry.keys_dir),
        "--state",
        str(state),
        "--listen",
        "127.0.0.1:0",
        "--heartbeat",
        str(HEARTBEAT),
    ]


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[GateRegistry]:
    registry = GateRegistry(db_url, tmp_path / "registry-keys")
    registry.load([*urban_ok(CLEAN), *urban_ok(FLAGGED), case("C-stop", FLAGGED, "stop_order")])
    try:
        yield registry
    finally:
        registry.close()


def test_the_heartbeat_keeps_a_gate_fresh_and_a_freeze_turns_it_to_review(
    registry: GateRegistry, tmp_path: Path
) -> None:
    gate_keys = tmp_path / "gate-keys"
    gate_keys.mkdir()
    shutil.copy(registry.keys_dir / "registry.pub", gate_keys / "registry.pub")
    registry_state = registry.keys_dir.parent / "registry-state"  # where the loads kept it
    gate_args = [
        "serve",
        "--db",
        registry.url,
        "--keys",
        str(gate_keys),
        "--state",
        str(tmp_path / "gate-state"),
        "--listen",
        "127.0.0.1:0",
        "--max-staleness",
        str(MAX_STALENESS),
    ]
    service_line = r"registry service listening on (127\.0\.0\.1:\d+)"
    with (
        process(service(registry, registry_state), service_line) as (registry_proc, _),
        process(gate_args, r"listening on (127\.0\.0\.1:\d+)") as (_, target),
        Wire(target) as wire,
    ):
        assert not (gate_keys / "registry.key").exists()

        def answer(sid: str) -> tuple[str, set[str]]:
            decision = wire.ask(connection(sid))
            return verdict(decision), codes(decision)

        wait_for(lambda: True if answer(CLEAN)[0] == "ALLOW" else None, timeout=20)
        # Three times the staleness bound: the heartbeat keeps unchanged data fresh.
        until = time.monotonic() + 3 * MAX_STALENESS
        while time.monotonic() < until:
            assert answer(CLEAN)[0] == "ALLOW"
            assert answer(FLAGGED)[0] != "ALLOW"
            time.sleep(0.3)

        # A change beside the service: signed, cosigned, and at the gate within seconds.
        started = time.monotonic()
        registry.load([case("C-later", CLEAN, "stop_order")])
        wait_for(lambda: True if answer(CLEAN)[0] != "ALLOW" else None, timeout=10)
        reached = time.monotonic() - started
        assert reached < 5, reached
        registry.load([case("C-later", CLEAN, "closed")])
        wait_for(lambda: True if answer(CLEAN)[0] == "ALLOW" else None, timeout=10)

        # Freeze: the service stops; the gate's data ages past the bound.
        registry_proc.send_signal(signal.SIGTERM)
        assert registry_proc.wait(timeout=20) == 0
        stopped = time.monotonic()
        wait_for(lambda: True if answer(CLEAN)[0] == "REVIEW" else None, timeout=15)
        assert time.monotonic() - stopped <= MAX_STALENESS + HEARTBEAT + 3
        assert "REGISTRY_STALE" in answer(CLEAN)[1]
        assert answer(FLAGGED)[0] != "ALLOW"

        # The service again: fresh again.
        with process(service(registry, registry_state), service_line):
            wait_for(lambda: True if answer(CLEAN)[0] == "ALLOW" else None, timeout=20)
            assert answer(FLAGGED)[0] != "ALLOW"
