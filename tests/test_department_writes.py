"""Departments' writes through the registry service, over mutual TLS on loopback, on SQLite
and PostgreSQL: every remit rule (each role x each action, expected outcomes taken from
``registry.departments``), bad input per field (nothing written), idempotency by request id,
the Art. 19 referral flow with its working-day dues, and a write reaching the status record
within a second."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from department_support import BY_ROLE, DEPARTMENTS, S1, S2, World, make_world
from permitgate_client._statements import DepartmentKey

from registry.audit import audit_registry
from registry.demo_pki import issue_client_certificate
from registry.department_keys import enrol_department
from registry.departments import (
    Role,
    may_acknowledge,
    may_change_permit,
    may_issue_permit,
    may_move_case,
    may_open_case,
    may_receive_referral,
    may_suspend_party,
)
from registry.notifications import record_notification
from registry.signing import load_verifier
from registry.vocabulary import CaseKind, CaseStage, PermitKind
from registry.workdays import WorkCalendar


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = make_world(db_url, tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()


def case_write(cid: str, sid: str = S2, **fields: Any) -> dict[str, Any]:
    case = {
        "id": cid,
        "structure": sid,
        "kind": "deviates_from_permit",
        "stage": "reported",
        "source": "patrol",
        "opened": format_now(),
    }
    case.update(fields)
    return {"case": case}


def format_now(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_of(world: World, structure_id: str) -> dict[str, Any]:
    """The structure's status record as the service serves it now."""
    envelope = json.loads(world.status(structure_id).envelope)
    payload: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return payload


def served_within_a_second(
    world: World, structure_id: str, shows: Any, started: float | None = None
) -> dict[str, Any]:
    """The served status record once ``shows(record)`` holds; within a second of ``started``
    (default: now)."""
    started = time.monotonic() if started is None else started
    while True:
        envelope = world.status(structure_id).envelope
        if envelope:
            record = record_of(world, structure_id)
            if shows(record):
                return record
        assert time.monotonic() - started < 1.0, envelope
        time.sleep(0.02)


# --- who may write what: each role x each action -------------------------------------------


def check_table(
    world: World, action: str, write: dict[str, Any], rule: Any, *, receiver: bool = False
) -> None:
    """Every role tries ``write``; ``rule(role)`` (from registry.departments) says which may.
    Refused ones come first (nothing changes), then the allowed ones."""
    allowed = []
    for department, role in DEPARTMENTS.items():
        refusal = rule(Role(role))
        if refusal is None:
            allowed.append(department)
            continue
        before = world.counts()
        code, details = world.refused(department, action, write)
        assert code == grpc.StatusCode.PERMISSION_DENIED, (department, details)
        assert str(refusal) in details, (department, details)
        assert world.counts() == before
    assert allowed, f"no role may {action}"
    result = world.write(allowed[0], action, write)
    assert result.action == action and result.department == allowed[0]


@pytest.mark.parametrize("kind", list(PermitKind))
def test_issue_permit_by_role(world: World, kind: PermitKind) -> None:
    permit: dict[str, Any] = {
        "id": f"P-{kind.value}",
        "structure": S2,
        "kind": kind.value,
        "status": "valid",
        "issued": "2026-11-01T00:00:00Z",
    }
    if kind is PermitKind.TEMPORARY_CONSTRUCTION_PLANNING:
        permit["expires"] = "2027-11-01T00:00:00Z"
    check_table(world, "issue_permit", {"permit": permit}, lambda r: may_issue_permit(r, kind))
    assert world.registry.sql("SELECT kind FROM permit WHERE id = :i", i=f"P-{kind.value}") == [
        (kind.value,)
    ]


def test_change_permit_status_by_role(world: World) -> None:
    kind = PermitKind.CONSTRUCTION_PLANNING  # P-1's
    write = {"permit": "P-1", "status": "suspended"}
    check_table(world, "change_permit_status", write, lambda r: may_change_permit(r, kind))


@pytest.mark.parametrize("stage", ["filed", "reported"])
def test_open_case_by_role(world: World, stage: str) -> None:
    kind = CaseKind.DEVIATES_FROM_PERMIT
    write = case_write(f"C-open-{stage}", stage=stage)
    check_table(world, "open_case", write, lambda r: may_open_case(r, kind, CaseStage(stage)))


def test_move_case_by_role(world: World) -> None:
    kind = CaseKind.DEVIATES_FROM_PERMIT  # C-1's
    check_table(
        world, "move_case", {"case": "C-1", "stage": "stop_order"}, lambda r: may_move_case(r, kind)
    )


def test_suspend_party_by_role(world: World) -> None:
    world.write("city-planning", "move_case", {"case": "C-1", "stage": "stop_order"})
    kind = CaseKind.DEVIATES_FROM_PERMIT
    check_table(
        world,
        "suspend_party",
        {"case": "C-1", "suspended": True},
        lambda r: may_suspend_party(r, kind),
    )
    served_within_a_second(world, S1, lambda r: r["cases"][0].get("party_suspended") is True)


def test_acknowledge_notice_by_role(world: World) -> None:
    notice = record_notification(
        world.registry.db,
        structure_id=S1,
        office="market",
        application_id="A-1",
        reasons=[{"code": "NO_PERMIT"}],
        at=datetime.now(UTC),
    )
    check_table(world, "acknowledge_notice", {"notice": notice}, may_acknowledge)
    [(by,)] = world.registry.sql("SELECT acknowledged_by FROM notification WHERE id = :i", i=notice)
    assert by == BY_ROLE["working_group"]


def test_refer_case_to_each_role(world: World) -> None:
    """A deviates_from_permit case found by enforcement goes to the department whose remit it
    is: referring it to any other role is refused naming Art. 19."""
    kind = CaseKind.DEVIATES_FROM_PERMIT
    world.write("city-enforcement", "open_case", case_write("C-ref"))
    for department, role in DEPARTMENTS.items():
        refusal = may_receive_referral(Role(role), kind)
        if refusal is None:
            continue
        code, details = world.refused(
            "city-enforcement", "refer_case", {"case": "C-ref", "to": department}
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and str(refusal) in details, details
    # Only the finder refers it.
    for department in DEPARTMENTS:
        if department == "city-enforcement":
            continue
        code, details = world.refused(
            department, "refer_case", {"case": "C-ref", "to": "city-planning"}
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
        assert "Art. 19" in details and "city-enforcement" in details
    result = world.write("city-enforcement", "refer_case", {"case": "C-ref", "to": "city-planning"})
    assert result.referral.state == "referred"


def test_answer_referral_only_by_the_receiver(world: World) -> None:
    world.write("city-enforcement", "open_case", case_write("C-ans"))
    world.write("city-enforcement", "refer_case", {"case": "C-ans", "to": "city-planning"})
    world.write("city-planning", "move_case", {"case": "C-ans", "stage": "filed"})
    world.write("city-planning", "move_case", {"case": "C-ans", "stage": "stop_order"})
    for department in DEPARTMENTS:
        if department == "city-planning":
            continue
        code, details = world.refused(
            department, "answer_referral", {"case": "C-ans", "answer": "stop order issued"}
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
        assert "Art. 19" in details and "city-planning" in details
    result = world.write(
        "city-planning", "answer_referral", {"case": "C-ans", "answer": "stop order issued"}
    )
    assert result.referral.state == "answered"


# --- bad input: the field is named, nothing is written ---------------------------------------

BAD_INPUT = [
    (
        "city-enforcement",
        "open_case",
        case_write("C-x", stage="x"),
        "write.case.stage: unknown value 'x' (one of: reported, filed",
    ),
    ("city-enforcement", "open_case", case_write("C-x", kind="nope"), "write.case.kind: unknown"),
    ("city-enforcement", "open_case", case_write("bad id!"), "write.case.id: not a valid id"),
    ("city-enforcement", "open_case", case_write("C-x", opened="yesterday"), "write.case.opened"),
    (
        "city-enforcement",
        "open_case",
        case_write("C-x", opened=format_now(timedelta(days=2))),
        "write.case.opened: in the future",
    ),
    ("city-enforcement", "open_case", {"case": {"id": "C-x"}}, "write.case.structure: missing"),
    ("city-enforcement", "open_case", {**case_write("C-x"), "extra": 1}, "write.extra: unknown"),
    (
        "city-enforcement",
        "open_case",
        case_write("C-x", sid="110228-9999-9999"),
        "write.case.structure: unknown structure '110228-9999-9999'",
    ),
    (
        "city-planning",
        "issue_permit",
        {"permit": {"id": "P-x", "structure": S2, "kind": "construction_planning"}},
        "write.permit.issued: missing",
    ),
    (
        "city-planning",
        "issue_permit",
        {
            "permit": {
                "id": "P-1",
                "structure": S2,
                "kind": "construction_planning",
                "status": "valid",
                "issued": "2026-01-01T00:00:00Z",
            }
        },
        "write.permit.id: permit P-1 belongs to '110228-0001-0001'",
    ),
    ("city-planning", "move_case", {"case": "C-1", "stage": "x"}, "write.stage: unknown value"),
    ("city-planning", "move_case", {"case": "C-1", "stage": "reported"}, "cannot move from filed"),
    ("city-planning", "move_case", {"case": "C-9", "stage": "closed"}, "write.case: no case"),
    ("city-planning", "move_case", {"case": "C-1"}, "write.stage: missing"),
    ("city-planning", "change_permit_status", {"permit": "P-1", "status": "gone"}, "write.status"),
    ("city-planning", "suspend_party", {"case": "C-1", "suspended": "yes"}, "write.suspended"),
    ("city-planning", "suspend_party", {"case": "C-1", "suspended": True}, "Art. 22"),
    ("working-group", "acknowledge_notice", {"notice": "N-none"}, "write.notice: no notice"),
]


@pytest.mark.parametrize(("department", "action", "write", "says"), BAD_INPUT)
def test_bad_input_names_the_field(
    world: World, department: str, action: str, write: dict[str, Any], says: str
) -> None:
    before = world.counts()
    code, details = world.refused(department, action, write)
    assert code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    ), details
    assert says in details, details
    assert world.counts() == before


def test_statement_signed_long_ago_is_refused(world: World) -> None:
    code, details = world.refused(
        "city-enforcement",
        "open_case",
        case_write("C-old"),
        signed_at=datetime.now(UTC) - timedelta(minutes=10),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "more than 5 minutes from the registry's clock" in details


def test_statement_sent_to_another_call_is_refused(world: World) -> None:
    envelope = world.statement("city-planning", "move_case", {"case": "C-1", "stage": "closed"})
    with pytest.raises(grpc.RpcError) as info:
        world.send(envelope, "suspend_party", as_="city-planning")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "action 'move_case' sent to the suspend_party call" in info.value.details()


# --- idempotency ------------------------------------------------------------------------------


def test_a_retried_write_answers_the_stored_result(world: World) -> None:
    envelope = world.statement("city-enforcement", "open_case", case_write("C-once"))
    first = world.send(envelope, "open_case", as_="city-enforcement")
    after_first = world.counts()
    again = world.send(envelope, "open_case", as_="city-enforcement")
    assert again.replayed and not first.replayed
    assert (again.seq, again.case.id, again.registry_version) == (
        first.seq,
        first.case.id,
        first.registry_version,
    )
    assert world.counts() == after_first  # no second case, no second event
    cases = world.registry.sql("SELECT count(*) FROM violation_case WHERE id = 'C-once'")
    assert cases == [(1,)]


def test_the_same_write_signed_again_is_a_replay(world: World) -> None:
    """A client that restarts signs its write again (another signed_at) under the same request
    id: the registry answers the first result, and opens no second case."""
    write = case_write("C-resigned")
    first = world.send(
        world.statement(
            "city-enforcement",
            "open_case",
            write,
            request_id="r-resigned",
            signed_at=datetime.now(UTC) - timedelta(seconds=30),
        ),
        "open_case",
        as_="city-enforcement",
    )
    after_first = world.counts()
    again = world.send(
        world.statement("city-enforcement", "open_case", write, request_id="r-resigned"),
        "open_case",
        as_="city-enforcement",
    )
    assert again.replayed and not first.replayed
    assert (again.seq, again.case.id) == (first.seq, first.case.id)
    assert world.counts() == after_first


def test_a_request_id_reused_for_another_statement_is_refused(world: World) -> None:
    world.write("city-enforcement", "open_case", case_write("C-r1"), request_id="same")
    before = world.counts()
    code, details = world.refused(
        "city-enforcement", "open_case", case_write("C-r2"), request_id="same"
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "request_id 'same'" in details
    assert world.counts() == before


# --- Art. 19: referral and answer, each within 2 working days -------------------------------


def test_referral_flow_with_dues(world: World) -> None:
    calendar = WorkCalendar.default()
    found = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    opened = world.write(
        "city-enforcement",
        "open_case",
        case_write("C-19", opened=found.strftime("%Y-%m-%dT%H:%M:%SZ")),
    )
    referral = opened.referral
    assert referral.state == "awaiting_referral" and referral.found_by == "city-enforcement"
    assert referral.referral_due.ToDatetime(UTC) == calendar.due(found, 2)
    assert referral.district == "110229" and referral.case_kind == "deviates_from_permit"
    referred = world.write(
        "city-enforcement", "refer_case", {"case": "C-19", "to": "city-planning"}
    ).referral
    assert referred.state == "referred" and referred.referred_to == "city-planning"
    assert referred.overdue == ""
    filed = world.write("city-planning", "move_case", {"case": "C-19", "stage": "filed"})
    assert filed.referral.state == "" or filed.referral.decided_at.seconds == 0  # not a decision
    code, details = world.refused(
        "city-planning", "answer_referral", {"case": "C-19", "answer": "too early"}
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not decided yet" in details
    decided = world.write("city-planning", "move_case", {"case": "C-19", "stage": "stop_order"})
    decided_at = decided.referral.decided_at.ToDatetime(UTC)
    assert decided.referral.decision == "stop_order" and decided.referral.state == "decided"
    assert decided.referral.answer_due.ToDatetime(UTC) == calendar.due(decided_at, 2)
    answered = world.write(
        "city-planning", "answer_referral", {"case": "C-19", "answer": "stop order issued"}
    ).referral
    assert answered.state == "answered" and answered.answer == "stop order issued"
    [row] = world.registry.sql(
        "SELECT referred_to, decision, answer FROM referral WHERE case_id = 'C-19'"
    )
    assert row == ("city-planning", "stop_order", "stop order issued")


def test_a_case_in_the_finders_remit_needs_no_referral(world: World) -> None:
    world.write("city-planning", "open_case", case_write("C-own", stage="filed"))
    assert world.registry.sql("SELECT count(*) FROM referral WHERE case_id = 'C-own'") == [(0,)]
    code, details = world.refused(
        "city-planning", "refer_case", {"case": "C-own", "to": "city-planning"}
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not on the Art. 19 clock" in details


# --- effect at the status record within a second ---------------------------------------------


def test_a_write_reaches_the_status_record_within_a_second(world: World) -> None:
    assert record_of(world, S1)["cases"][0]["stage"] == "filed"
    started = time.monotonic()  # the write itself counts
    world.write("city-planning", "move_case", {"case": "C-1", "stage": "stop_order"})
    served_within_a_second(world, S1, lambda r: r["cases"][0]["stage"] == "stop_order", started)


def test_an_unregistered_structure_is_opened_with_its_case(world: World) -> None:
    sid = "110228-0007-0007"
    result = world.write(
        "city-enforcement",
        "open_case",
        {
            **case_write("C-new", sid=sid, kind="no_planning_permit", stage="filed"),
            "structure": {"id": sid, "area": "urban", "district": "110228"},
        },
    )
    assert result.case.district == "110228" and result.case.blocking
    served_within_a_second(world, sid, lambda r: r["structure"]["id"] == sid)


def test_reads_need_an_enrolled_departments_certificate(world: World) -> None:
    from permitgate_client.v1 import registry_pb2 as pb
    from permitgate_client.v1 import registry_pb2_grpc

    world.write("city-enforcement", "open_case", case_write("C-read", kind="no_planning_permit"))
    with world.channel("city-water") as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        case = stub.GetCase(pb.GetRequest(id="C-read"), timeout=10)
    assert case.id == "C-read" and case.structure_id == S2
    with world.channel(None) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            stub.GetCase(pb.GetRequest(id="C-read"), timeout=10)
    assert isinstance(info.value, grpc.Call)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_one_group_with_good_bad_and_repeated_writes(world: World) -> None:
    """Writes in one group are checked each on its own: a refused one changes nothing, the
    others go in under one head; the same request twice in the group is one write."""
    from registry.department_writes import DepartmentWrites, WriteRefused, WriteRequest

    writes = DepartmentWrites(world.registry.db, world.registry.signer, world.state_dir)
    good = world.statement("city-enforcement", "open_case", case_write("C-g1", stage="reported"))
    bad = world.statement("city-enforcement", "open_case", case_write("C-g2", stage="nope"))
    other = world.statement("city-planning", "move_case", {"case": "C-1", "stage": "closed"})
    heads = world.counts()[1]
    outcomes = writes.write(
        [
            WriteRequest(good, "open_case", "city-enforcement"),
            WriteRequest(bad, "open_case", "city-enforcement"),
            WriteRequest(good, "open_case", "city-enforcement"),
            WriteRequest(other, "move_case", "city-planning"),
        ]
    )
    first, refused, again, moved = outcomes
    assert isinstance(refused, WriteRefused) and "write.case.stage" in refused.message
    assert not isinstance(first, WriteRefused) and not isinstance(again, WriteRefused)
    assert not isinstance(moved, WriteRefused)
    assert again.replayed and again.seq == first.seq and not first.replayed
    assert moved.registry_version == first.registry_version  # one head for the group
    assert world.counts()[1] == heads + 1
    assert world.registry.sql("SELECT count(*) FROM violation_case WHERE id = 'C-g1'") == [(1,)]
    assert world.registry.sql("SELECT count(*) FROM violation_case WHERE id = 'C-g2'") == [(0,)]


def test_a_case_decided_before_it_was_referred_can_be_answered(world: World) -> None:
    """Art. 19: enforcement finds a planning case; planning dismisses it on its own; enforcement
    then refers it. The referral is decided at once (at the referral), and planning answers."""
    world.write("city-enforcement", "open_case", case_write("C-early"))
    world.write("city-planning", "move_case", {"case": "C-early", "stage": "dismissed"})
    referred = world.write(
        "city-enforcement", "refer_case", {"case": "C-early", "to": "city-planning"}
    )
    referral = referred.referral
    assert referral.state == "decided" and referral.decision == "dismissed", referral
    assert referral.decided_at == referral.referred_at
    due = WorkCalendar.default().due(referral.referred_at.ToDatetime(UTC), 2)
    assert referral.answer_due.ToDatetime(UTC) == due
    answered = world.write(
        "city-planning", "answer_referral", {"case": "C-early", "answer": "dismissed"}
    )
    assert answered.referral.state == "answered"


def test_a_decision_by_another_department_of_the_receivers_role_counts(world: World) -> None:
    """Art. 19: the decision on a referred case is its remit role's. A second planning
    department decides the case referred to city-planning: the referral is decided, and
    city-planning reports it back; ``registry verify`` makes the same rows from the log."""
    issue_client_certificate(world.pki, "district-planning")
    key = DepartmentKey.generate("district-planning")
    enrol_department(
        world.registry.db,
        world.registry.signer,
        world.state_dir,
        department_id="district-planning",
        role="planning",
        name="District Planning",
        key=key.verifier,
    )
    world.keys["district-planning"] = key
    world.write("city-enforcement", "open_case", case_write("C-role"))
    world.write("city-enforcement", "refer_case", {"case": "C-role", "to": "city-planning"})
    world.write("district-planning", "move_case", {"case": "C-role", "stage": "filed"})
    moved = world.write("district-planning", "move_case", {"case": "C-role", "stage": "stop_order"})
    assert moved.referral.state == "decided" and moved.referral.decision == "stop_order"
    answered = world.write(
        "city-planning", "answer_referral", {"case": "C-role", "answer": "stop order issued"}
    )
    assert answered.referral.state == "answered"
    report = audit_registry(world.registry.db, load_verifier(world.registry.keys_dir, "registry"))
    assert report.problems == []
