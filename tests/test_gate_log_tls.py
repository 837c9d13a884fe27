"""The decision log (who asked, what, the answer, on which registry version), on both backends,
and the gate behind TLS and mutual TLS with certificates made for the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from gate_helpers import (
    GateRegistry,
    Pki,
    RunningGate,
    Wire,
    batch_check,
    connection,
    make_pki,
    premises,
    registration,
    start_gate,
    verdict,
    wait_for,
)
from permitgate_client import Client
from permitgate_client.v1 import gate_pb2 as pb

from permitgate.cli import main
from registry.demo import SCENARIOS, demo_lines, structure_id
from server.app import TlsFiles

OK = structure_id(0)
REVOKED = structure_id(1)
CLIENT_CN = "water-utility-07"


def _log(registry: GateRegistry) -> dict[str, dict[str, Any]]:
    columns = (
        "decision_id, caller, check_type, structure_id, request, verdict, reasons, "
        "registry_version, notification_id"
    )
    rows = registry.sql(f"SELECT {columns} FROM decision_log")
    names = [c.strip() for c in columns.split(",")]
    return {str(row[0]): dict(zip(names, row, strict=True)) for row in rows}


# --- the decision log ----------------------------------------------------------------------------


def test_decision_log_records_every_answer(db_url: str, keys_dir: Path) -> None:
    registry = GateRegistry(db_url, keys_dir)
    try:
        registry.load(demo_lines(len(SCENARIOS)))
        version = registry.version()
        gate = start_gate(db_url, keys_dir)
        try:
            with Wire(gate.target) as wire:
                denied = wire.ask(connection(REVOKED, pb.UTILITY_GAS, application_id="G-1"))
                allowed = wire.ask(registration(OK, pb.REGISTRATION_KIND_MORTGAGE))
                notified = wire.ask(premises(OK, pb.OFFICE_TAX, "karaoke", application_id="T-1"))
                [batch] = wire.batches(
                    [
                        pb.CheckBatch(
                            checks=[
                                batch_check("b1", connection(OK)),
                                batch_check("b2", connection("")),  # an error: not logged
                            ]
                        )
                    ]
                )
        finally:
            gate.stop()  # writes what is still buffered
        log = _log(registry)
    finally:
        registry.close()
    answered = [denied, allowed, notified, batch.decisions[0]]
    assert sorted(log) == sorted(d.decision_id for d in answered)
    for decision in answered:
        row = log[decision.decision_id]
        assert row["verdict"] == verdict(decision)
        assert row["registry_version"] == version
        assert "127.0.0.1" in row["caller"]
    row = log[denied.decision_id]
    assert (row["check_type"], row["structure_id"]) == ("connection", REVOKED)
    assert json.loads(row["request"]) == {
        "type": "connection",
        "structure_id": REVOKED,
        "utility": "gas",
        "kind": "permanent",
        "requested_until": None,
        "application_id": "G-1",
    }
    assert json.loads(row["reasons"]) == ["PERMIT_REVOKED"]
    assert row["notification_id"] is None
    assert log[allowed.decision_id]["check_type"] == "registration"
    assert json.loads(log[allowed.decision_id]["reasons"]) == []
    row = log[notified.decision_id]
    assert row["check_type"] == "premises"
    assert row["notification_id"] == notified.notification_id
    assert json.loads(row["request"])["declared_use"] == "karaoke"


def test_decision_log_is_written_while_serving(tmp_path: Path) -> None:
    """Rows reach the database in the background, without waiting for the gate to stop."""
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    gate = start_gate(registry.url, registry.keys_dir)
    try:
        with Wire(gate.target) as wire:
            decision = wire.ask(connection(OK))
        row = wait_for(lambda: _log(registry).get(decision.decision_id), timeout=5)
        assert row["verdict"] == "DENY"
    finally:
        gate.stop()
        registry.close()


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), CLIENT_CN)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateRegistry]:
    directory = tmp_path_factory.mktemp("tls")
    registry = GateRegistry(f"sqlite:///{directory / 'registry.db'}", directory / "keys")
    registry.load(demo_lines(len(SCENARIOS)))
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture(scope="module")
def mtls_gate(pki: Pki, tls_registry: GateRegistry) -> Iterator[RunningGate]:
    tls = TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca_cert)
    gate = start_gate(tls_registry.url, tls_registry.keys_dir, tls=tls)
    try:
        yield gate
    finally:
        gate.stop()


def _refused(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with Wire(target, credentials, timeout=5) as wire, pytest.raises(grpc.RpcError) as info:
        wire.ask(connection(OK))
    error = info.value
    assert isinstance(error, grpc.Call)
    code: grpc.StatusCode = error.code()
    return code


def test_mutual_tls_accepts_a_client_certificate(
    mtls_gate: RunningGate, pki: Pki, tls_registry: GateRegistry
) -> None:
    with Wire(mtls_gate.target, pki.client_credentials()) as wire:
        decision = wire.ask(connection(REVOKED))
    assert verdict(decision) == "DENY"
    row = wait_for(lambda: _log(tls_registry).get(decision.decision_id), timeout=5)
    assert CLIENT_CN in row["caller"]


def test_mutual_tls_refuses_a_client_without_certificate(mtls_gate: RunningGate, pki: Pki) -> None:
    assert _refused(mtls_gate.target, pki.client_credentials(with_cert=False)) == (
        grpc.StatusCode.UNAVAILABLE
    )


def test_mutual_tls_refuses_a_certificate_from_another_ca(mtls_gate: RunningGate, pki: Pki) -> None:
    assert _refused(mtls_gate.target, pki.stranger_credentials()) == grpc.StatusCode.UNAVAILABLE


def test_tls_gate_refuses_plaintext(mtls_gate: RunningGate) -> None:
    assert _refused(mtls_gate.target, None) == grpc.StatusCode.UNAVAILABLE


def test_gate_client_over_mutual_tls(mtls_gate: RunningGate, pki: Pki) -> None:
    with Client(mtls_gate.target, credentials=pki.client_credentials()) as client:
        assert client.check_connection(OK, utility="heat").verdict == "ALLOW"


def test_server_only_tls(pki: Pki, tls_registry: GateRegistry) -> None:
    """Without a client CA, any TLS client is served; the caller is then the peer address."""
    tls = TlsFiles(pki.server_cert, pki.server_key)
    gate = start_gate(tls_registry.url, tls_registry.keys_dir, tls=tls)
    try:
        with Wire(gate.target, pki.client_credentials(with_cert=False)) as wire:
            decision = wire.ask(connection(OK))
        assert verdict(decision) == "ALLOW"
        assert gate.app.tls and "TLS" in gate.app.describe()
    finally:
        gate.stop()
    row = _log(tls_registry)[decision.decision_id]
    assert CLIENT_CN not in row["caller"] and "127.0.0.1" in row["caller"]


def test_cli_checks_over_mutual_tls(mtls_gate: RunningGate, pki: Pki) -> None:
    """`permitgate check` reaches a mutual-TLS gate with --tls-ca/--tls-cert/--tls-key, and
    without a client certificate it is turned away (exit 3)."""
    args = ["check", "connection", OK, "--utility", "water", "--target", mtls_gate.target]
    tls = ["--tls-ca", str(pki.ca_cert)]
    mine = [*tls, "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    answered = CliRunner().invoke(main, [*args, *mine])
    assert answered.exit_code == 0, answered.output
    assert answered.stdout.startswith(f"ALLOW  {OK}  (registry version ")
    refused = CliRunner().invoke(main, [*args, *tls])
    assert refused.exit_code == 3
    half = CliRunner().invoke(main, [*args, *tls, "--tls-cert", str(pki.client_cert)])
    assert half.exit_code == 2 and "--tls-cert and --tls-key go together" in half.output
