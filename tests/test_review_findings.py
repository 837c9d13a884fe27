"""Holes in the departments' side, each shown against the real service on SQLite and PostgreSQL.

Every test here is what the registry should do; each fails on main at 3f65f4d:

* the working group's page serves parties, cases and the inbox to a caller without a client
  certificate, which the department read calls refuse;
* a referral row changed in the database (Art. 19: answered, on time) is not noticed by
  ``registry verify``;
* a party id typed in another case is not found by CheckApplicant (fails open);
* a department reading a case is shown the table row, not what the registry signed;
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from department_support import S1, S2, World, make_world
from gate_helpers import GateRegistry, reasons, start_gate, urban_ok, verdict, wait_for
from permitgate_client.v1 import gate_pb2 as gate_pb
from permitgate_client.v1 import gate_pb2_grpc, registry_pb2_grpc
from permitgate_client.v1 import registry_pb2 as pb
from registry_support import case as case_line

from registry.admin import STATE_NAME
from registry.audit import audit_registry
from registry.signing import load_verifier
from registry.storage import ReferralRow
from registry.trusted_state import TrustedState

PARTY = "91110000MA0000001X"  # the party of C-1 in department_support.base_records


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = make_world(db_url, tmp_path)
    world.start(web_listen="127.0.0.1:0")
    try:
        yield world
    finally:
        world.stop()


def signed_case(world: World, structure_id: str, case_id: str) -> dict[str, Any] | None:
    """Case ``case_id`` as the registry's signed status record of ``structure_id`` holds it (the
    record whose digest the registry's own state holds, as of the last write)."""
    [(stored,)] = world.registry.sql(
        "SELECT envelope FROM status_record WHERE structure_id = :s", s=structure_id
    )
    state = TrustedState(world.state_dir, STATE_NAME)
    try:
        entry = state.entry(structure_id)
    finally:
        state.close()
    assert entry is not None and hashlib.sha256(bytes(stored)).digest() == entry[1]
    envelope = json.loads(bytes(stored))
    record = json.loads(base64.b64decode(envelope["payload"]))
    for case in record["cases"]:
        if case["id"] == case_id:
            return dict(case)
    return None


def verify(world: World) -> list[str]:
    report = audit_registry(world.registry.db, load_verifier(world.registry.keys_dir, "registry"))
    return report.problems


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- 3. the page has no authentication --------------------------------------------------------


def test_the_page_is_not_served_to_a_caller_without_a_client_certificate(world: World) -> None:
    """The department read calls refuse a caller without a department's client certificate;
    the working group's page, serving the same parties, cases and inbox, must too."""
    assert world.app is not None and world.app.web is not None
    with world.channel(None) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError):
            stub.GetParty(pb.GetRequest(id=PARTY), timeout=10)
    context = ssl.create_default_context(cafile=str(world.pki.ca))
    try:
        with httpx.Client(base_url=world.app.web.url, verify=context, timeout=10) as client:
            page = client.get(f"/structures/{S1}")
    except httpx.TransportError:
        return  # the handshake asks for a client certificate: refused
    assert page.status_code in (401, 403), (page.status_code, PARTY in page.text)


# --- 4. Art. 19 rows are not checked by registry verify ---------------------------------------


def _referred(world: World) -> str:
    """A deviates_from_permit case found by enforcement on S2 (not its remit) and referred to
    planning; its id."""
    case = {
        "id": "C-ref",
        "structure": S2,
        "kind": "deviates_from_permit",
        "stage": "reported",
        "source": "patrol",
        "opened": now_text(),
    }
    world.write("city-enforcement", "open_case", {"case": case})
    world.write("city-enforcement", "refer_case", {"case": "C-ref", "to": "city-planning"})
    return "C-ref"


def test_a_referral_changed_in_the_database_is_caught_by_verify(world: World) -> None:
    """The referral was referred to planning and never answered (the log's statements say so).
    A database writer marks it answered, on time, by a made-up answer: the monthly report, the
    inbox and the page now say planning answered. ``registry verify`` must name the row."""
    case_id = _referred(world)
    assert verify(world) == []
    with world.registry.db.session() as session:
        row = session.get(ReferralRow, case_id)
        assert row is not None and row.referred_to == "city-planning"
        row.decided_at = row.answered_at = datetime.now(UTC)
        row.decision, row.answer = "dismissed", "forged"
        row.answer_due = datetime.now(UTC) + timedelta(days=3)
    problems = verify(world)
    assert any("referral" in p for p in problems), problems


# --- 6. Art. 22: a party id written another way ------------------------------------------------


def test_a_party_written_in_lower_case_is_still_suspended(db_url: str, tmp_path: Path) -> None:
    """A unified social credit code is one code however it is typed: the deciding department
    records the party as 91110000ma01abcd2x, planning asks about 91110000MA01ABCD2X. The gate
    must not ALLOW that party's application (today the ids are compared byte for byte and the
    suspension is missed: the check fails open)."""
    registry = GateRegistry(db_url, tmp_path / "keys")
    line = case_line(
        "C-2026-0001", "110228-0001-0001", "stop_order", "no_planning_permit", "patrol"
    )
    registry.load(
        [
            *urban_ok("110228-0001-0001"),
            {**line, "party": "91110000ma01abcd2x", "party_suspended": True},
        ]
    )
    gate = start_gate(registry.url, registry.keys_dir, poll_interval=0.2)
    try:
        ask = gate_pb.ApplicantCheck(
            party_id="91110000MA01ABCD2X",
            asking=gate_pb.ASKING_PLANNING,
            application_id="PA-2026-0001",
        )

        def answer() -> gate_pb.Decision | None:
            with grpc.insecure_channel(gate.target) as channel:
                stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
                decision: gate_pb.Decision = stub.CheckApplicant(ask, timeout=10)
            return decision if decision.registry_version == registry.version() else None

        decision = wait_for(answer, timeout=10)
        assert verdict(decision) != "ALLOW", reasons(decision)
    finally:
        gate.stop()
        registry.close()


# --- 7. department reads answer from rows nobody signed -----------------------------------------


def test_a_department_reads_a_case_as_the_registry_signed_it(world: World) -> None:
    """A database writer closes C-1 in its table row; the signed record still says filed (and
    the gates DENY). A department reading C-1 (GetCase) must be told what the registry signed,
    or be refused, not be shown the row as fact."""
    world.registry.sql(
        "UPDATE violation_case SET stage = 'closed', party_suspended = :f WHERE id = 'C-1'",
        f=False,
    )
    with world.channel("city-planning") as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        try:
            read: pb.CaseInfo = stub.GetCase(pb.GetRequest(id="C-1"), timeout=10)
        except grpc.RpcError:
            return  # refused: the row is not the signed record
    signed = signed_case(world, S1, "C-1")
    assert signed is not None
    assert read.stage == signed["stage"], (read.stage, signed["stage"])
