"""The gate's command line: ``permitgate serve`` as a real process, and ``permitgate check``
against a real gate (exit codes 0 answered, 2 invalid check, 3 unreachable).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from gate_helpers import GateRegistry, RunningGate, served_registry, start_gate, stderr_lines
from permitgate_client import Client

from permitgate.cli import main
from registry.demo import SCENARIOS, demo_lines, structure_id

OK = structure_id(0)
TEMP_ONLY = structure_id(5)  # temporary construction planning permit only
PAST = "2020-01-01T00:00:00Z"
PERMITGATE = str(Path(sys.executable).with_name("permitgate"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("cli"), demo_lines(len(SCENARIOS))) as served:
        yield served


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_check_prints_verdict_reasons_and_validity(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    result = _cli(
        "check", "connection", TEMP_ONLY, "--utility", "power", "--target", served[1].target
    )
    assert result.exit_code == 0, result.output
    first, reason, until = result.stdout.splitlines()
    assert first.startswith(
        f"ALLOW_TEMPORARY  {TEMP_ONLY}  (registry version {served[0].version()}"
    )
    assert reason.startswith("  - TEMPORARY_ONLY [Art. 23] temporary_construction_planning: ")
    assert until.startswith("  valid until ")


def test_check_json(served: tuple[GateRegistry, RunningGate]) -> None:
    result = _cli(
        "check",
        "premises",
        OK,
        "--office",
        "culture",
        "--use",
        "bar",
        "--application",
        "C-1",
        "--json",
        "--target",
        served[1].target,
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["verdict"] == "NOTIFY" and answer["notification_id"]
    assert [(r["code"], r["article"], r["permit_kind"]) for r in answer["reasons"]] == [
        ("USE_MISMATCH", 13, "construction_planning"),
        ("USE_MISMATCH", 13, "property_ownership"),
    ]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["connection", "", "--utility", "water"], "structure_id"),
        (
            ["connection", OK, "--utility", "water", "--kind", "temporary", "--until", PAST],
            "requested_until",
        ),
        (["premises", OK, "--office", "fire", "--use", "  "], "declared_use"),
    ],
    ids=["empty-id", "past-end", "blank-use"],
)
def test_check_invalid_exits_2(
    served: tuple[GateRegistry, RunningGate], args: list[str], field: str
) -> None:
    result = _cli("check", *args, "--target", served[1].target)
    assert result.exit_code == 2
    assert f"invalid check: {field}:" in result.stderr


def test_check_unreachable_exits_3(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    gate = start_gate(registry.url, registry.keys_dir)
    target = gate.target
    gate.stop()
    registry.close()
    result = _cli("check", "registration", OK, "--kind", "initial", "--target", target)
    assert result.exit_code == 3
    assert "did not answer" in result.stderr


def test_serve_needs_cert_and_key_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    result = _cli("serve", "--tls-cert", str(cert), "--keys", str(tmp_path))
    assert result.exit_code == 2 and "--tls-cert and --tls-key go together" in result.output


def test_serve_process_logs_where_it_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    try:
        version = registry.load(demo_lines(len(SCENARIOS)))
        state = tmp_path / "gate-state"
        args = ["serve", "--db", registry.url, "--keys", str(registry.keys_dir)]
        args += ["--state", str(state)]
        process = subprocess.Popen(
            [PERMITGATE, *args, "--listen", "127.0.0.1:0", "--max-staleness", "5"],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines, _ = stderr_lines(process)
        try:
            while "listening on" not in (line := lines.get(timeout=20)):
                pass
            match = re.search(r"listening on (127\.0\.0\.1:\d+) \(plaintext\)", line)
            assert match, line
            assert "max staleness 5s" in line
            assert f"registry key {registry.signer.verifier.keyid_text}," in line
            assert f"state {state} (no head verified before)" in line
            while "registry: loaded" not in (line := lines.get(timeout=20)):
                pass
            assert f"loaded version {version} (head serial 2), {len(SCENARIOS)} structures" in line
            with Client(match.group(1)) as client:
                assert client.check_connection(OK, utility="water").verdict == "ALLOW"
            # a second gate on the same state directory does not start
            second = _cli("serve", *args[1:], "--listen", "127.0.0.1:0")
            assert second.exit_code == 2
            assert f"another gate uses the state directory {state}" in second.stderr
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        served = registry.sql("SELECT count(*) FROM decision_log")
        assert served == [(1,)]  # the log was written on the way out
        # the head it verified is in its state; --state-dir names the same directory
        held = sqlite3.connect(state / "gate.sqlite").execute("SELECT note FROM head").fetchone()
        assert bytes(held[0]) == registry.checkpoint_note()
        restarted = _cli("serve", *args[1:5], "--state-dir", str(state), "--listen", "x")
        assert restarted.exit_code == 2 and "--listen" in restarted.stderr  # options checked
    finally:
        registry.close()
