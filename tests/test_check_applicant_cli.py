"""CheckApplicant (Art. 22) from the command line (``permitgate check applicant``) and its
refusal as a WatchStatus question, over a real gate on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from gate_helpers import GateRegistry, RunningGate, Wire, verdict, wait_for
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc
from test_check_applicant import OTHER, PARTY, _applicant, _ask, _suspension, served

from permitgate.cli import main

__all__ = ["served"]  # the fixture, shared with test_check_applicant


def test_the_command_line(served: tuple[GateRegistry, RunningGate], tmp_path: Path) -> None:
    registry, gate = served
    registry.load([_suspension("C-2026-0005", "110228-0001-0002", suspended=True)])
    wait_for(lambda: verdict(_ask(gate, _applicant())) == "DENY" or None, timeout=5)
    runner = CliRunner()
    receipt = tmp_path / "receipt.json"
    args = ["check", "applicant", PARTY, "--asking", "planning", "--target", gate.target]
    denied = runner.invoke(main, [*args, "--receipt", str(receipt), "--exit-code"])
    assert denied.exit_code == 30, denied.output
    assert denied.stdout.startswith(f"DENY  {PARTY}")
    assert "PARTY_SUSPENDED [Art. 22] C-2026-0005" in denied.stdout
    with Wire(gate.target) as wire:
        keyset = wire.keys()
    keyset_file = tmp_path / "keyset.json"
    keyset_file.write_text(
        runner.invoke(main, ["keys", "--target", gate.target]).stdout, encoding="utf-8"
    )
    verified = runner.invoke(
        main, ["receipt", "verify", str(receipt), "--keyset", str(keyset_file)]
    )
    assert verified.exit_code == 0, verified.output
    assert keyset.gate_key
    other = runner.invoke(
        main,
        ["check", "applicant", OTHER, "--asking", "housing", "--target", gate.target, "--json"],
    )
    assert other.exit_code == 0 and json.loads(other.stdout)["verdict"] == "ALLOW"
    bad = runner.invoke(main, ["check", "applicant", PARTY, "--asking", "land"])
    assert bad.exit_code == 2 and "land" in bad.output


def test_a_party_cannot_be_watched(served: tuple[GateRegistry, RunningGate]) -> None:
    _, gate = served
    question = pb.Check()
    question.applicant.asking = pb.ASKING_PLANNING
    request = pb.WatchRequest(all_structures=True, question=question)
    with grpc.insecure_channel(gate.target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as caught:
            next(iter(stub.WatchStatus(request, timeout=10)))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot be watched" in (caught.value.details() or "")
