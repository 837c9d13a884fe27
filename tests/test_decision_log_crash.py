"""What a killed gate loses of its decision log, on both backends, with a real ``permitgate
serve`` process: SIGKILL after answers, then count the rows.

The README's claim: answers written before the kill are all there, and what is lost is exactly
the answers given after the last write began (the log writes whatever waits, in answer order,
every 0.5 s), never part of a row or of a write.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from gate_helpers import GateRegistry, Wire, batch_check, connection, stderr_lines, wait_for
from permitgate_client.v1 import gate_pb2 as pb

from registry.demo import SCENARIOS, demo_lines, structure_id
from server.decision_log import UNWRITTEN_FILE

PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
BATCH = 500


def _batch(wire: Wire) -> list[str]:
    checks = [
        batch_check(str(i), connection(structure_id(i % len(SCENARIOS)))) for i in range(BATCH)
    ]
    [answers] = wire.batches([pb.CheckBatch(checks=checks)])
    assert not any(d.error for d in answers.decisions)
    return [d.decision_id for d in answers.decisions]


def _stored(registry: GateRegistry) -> set[str]:
    return {str(d) for (d,) in registry.sql("SELECT decision_id FROM decision_log")}


def test_sigkill_loses_exactly_the_answers_after_the_last_write(
    db_url: str, keys_dir: Path, tmp_path: Path
) -> None:
    registry = GateRegistry(db_url, keys_dir)
    try:
        registry.load(demo_lines(len(SCENARIOS)))
        state = tmp_path / "gate-state"
        args = ["serve", "--db", registry.url, "--keys", str(keys_dir), "--state", str(state)]
        process = subprocess.Popen(
            [PERMITGATE, *args, "--listen", "127.0.0.1:0"],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines, _ = stderr_lines(process)
        try:
            while not (found := re.search(r"listening on (\S+) ", lines.get(timeout=20))):
                pass
            while "registry: loaded" not in lines.get(timeout=20):
                pass
            with Wire(found.group(1)) as wire:
                written = _batch(wire)
                wait_for(lambda: True if _stored(registry) >= set(written) else None, timeout=5)
                answered = written + _batch(wire) + _batch(wire)
                process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=20) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stored = _stored(registry)
        kept = len(stored)
        assert set(written) <= stored
        assert stored == set(answered[:kept])  # the answers lost are the last ones given
        assert not (state / UNWRITTEN_FILE).exists()
    finally:
        registry.close()
