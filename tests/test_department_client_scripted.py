"""``DepartmentClient`` and ``AsyncDepartmentClient`` against a scripted registry over mutual TLS
on loopback (``department_registry``): what the real service cannot be made to do on demand
(lose the answer to a write it made, so that the client must resend the very same signed
statement), the wire form of each statement, and every refusal mapped to its typed error. The
same calls against the real registry service: ``test_department_client``."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from department_registry import DepartmentPKI, Identity, Registry, loopback_registry
from permitgate_client import (
    AsyncDepartmentClient,
    CaseInfo,
    ConflictError,
    DepartmentClient,
    DepartmentKey,
    FailedPreconditionError,
    InvalidCheckError,
    NewStructure,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    WriteResult,
)
from permitgate_client._statements import verify_statement

from registry.departments import Role

STRUCTURES = {"110228-0001-0001": "110228", "110229-0001-0001": "110229"}
OPENED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DepartmentPKI:
    return DepartmentPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def registry(pki: DepartmentPKI) -> Iterator[Registry]:
    with loopback_registry(pki, STRUCTURES) as registry:
        for department, role in ROLES.items():
            registry.enrol(pki.client(department), role)
        yield registry


ROLES = {
    "city-planning": Role.PLANNING,
    "city-land": Role.LAND,
    "city-housing": Role.HOUSING,
    "city-enforcement": Role.ENFORCEMENT,
    "working-group": Role.WORKING_GROUP,
}


def client(registry: Registry, identity: Identity, **options: object) -> DepartmentClient:
    return DepartmentClient(
        registry.target,
        key=identity.key,
        cert=identity.cert,
        cert_key=identity.cert_key,
        ca=registry.ca,
        timeout=5,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def planning(registry: Registry, pki: DepartmentPKI) -> Iterator[DepartmentClient]:
    with client(registry, pki.client("city-planning")) as c:
        yield c


def sent(registry: Registry, index: int = -1) -> dict[str, object]:
    """The payload of a statement the registry received, verified with the sender's key."""
    envelope = registry.statements[index]
    department = json.loads(base64.b64decode(json.loads(envelope)["payload"]))["department"]
    statement = verify_statement(envelope, [registry.departments[department][1]])
    return statement.to_json()


def test_issue_permit_is_signed_sent_and_answered_typed(
    registry: Registry, planning: DepartmentClient
) -> None:
    issued = datetime(2026, 10, 1, tzinfo=UTC)
    result = planning.issue_permit(
        "P-1",
        structure_id="110228-0001-0001",
        kind="construction_planning",
        issued=issued,
        expires=issued + timedelta(days=365),
        use="residential",
    )
    assert isinstance(result, WriteResult)
    assert (result.department, result.action, result.replayed) == (
        "city-planning",
        "issue_permit",
        False,
    )
    assert uuid.UUID(result.request_id).version == 4
    assert result.permit is not None and result.case is None
    assert result.permit.id == "P-1" and result.permit.issued == issued
    assert result.permit.expires == issued + timedelta(days=365)
    assert result.permit.use == "residential"
    statement = sent(registry)
    assert statement["write"] == {
        "permit": {
            "id": "P-1",
            "structure": "110228-0001-0001",
            "kind": "construction_planning",
            "status": "valid",
            "issued": "2026-10-01T00:00:00Z",
            "expires": "2027-10-01T00:00:00Z",
            "use": "residential",
        }
    }
    assert planning.get_permit("P-1").status == "valid"


def test_change_permit_status(registry: Registry, planning: DepartmentClient) -> None:
    planning.issue_permit(
        "P-2",
        structure_id="110228-0001-0001",
        kind="land_use_planning",
        issued=OPENED,
    )
    result = planning.change_permit_status("P-2", "suspended")
    assert result.permit is not None and result.permit.status == "suspended"
    assert sent(registry)["write"] == {"permit": "P-2", "status": "suspended"}
    assert planning.get_permit("P-2").status == "suspended"


def test_open_case_in_remit_and_move_and_suspend_party(
    registry: Registry, planning: DepartmentClient
) -> None:
    result = planning.open_case(
        "C-1",
        "110228-0001-0001",
        "deviates_from_permit",
        "filed",
        "patrol",
        OPENED,
        party="91110000MA01ABCD1X",
    )
    case = result.case
    assert isinstance(case, CaseInfo)
    assert (case.stage, case.party, case.blocking, case.opened) == (
        "filed",
        "91110000MA01ABCD1X",
        True,
        OPENED,
    )
    assert result.referral is None  # in planning's remit: nothing to refer
    moved = planning.move_case("C-1", "stop_order")
    assert moved.case is not None and moved.case.stage == "stop_order"
    assert sent(registry)["write"] == {"case": "C-1", "stage": "stop_order"}
    suspended = planning.suspend_party("C-1")
    assert suspended.case is not None and suspended.case.party_suspended
    assert sent(registry)["write"] == {"case": "C-1", "suspended": True}
    lifted = planning.suspend_party("C-1", False)
    assert lifted.case is not None and not lifted.case.party_suspended


def test_referral_round_trip(registry: Registry, pki: DepartmentPKI) -> None:
    with (
        client(registry, pki.client("city-housing")) as housing,
        client(registry, pki.client("city-enforcement")) as enforcement,
    ):
        opened = housing.open_case(
            "C-10",
            "110229-0002-0001",
            "no_planning_permit",
            "reported",
            "satellite",
            OPENED,
            structure=NewStructure("urban", "110229", address="1 Road"),
        )
        assert opened.referral is not None
        assert (opened.referral.state, opened.referral.found_by) == (
            "awaiting_referral",
            "city-housing",
        )
        assert sent(registry)["write"] == {
            "case": {
                "id": "C-10",
                "structure": "110229-0002-0001",
                "kind": "no_planning_permit",
                "stage": "reported",
                "source": "satellite",
                "opened": "2026-11-02T09:30:00Z",
            },
            "structure": {
                "id": "110229-0002-0001",
                "area": "urban",
                "district": "110229",
                "address": "1 Road",
            },
        }
        referred = housing.refer_case("C-10", "city-enforcement")
        assert referred.referral is not None and referred.referral.state == "referred"
        assert referred.referral.referred_to == "city-enforcement"
        with pytest.raises(FailedPreconditionError, match="referred, not decided"):
            enforcement.answer_referral("C-10", "stop order issued")
        registry.referrals["C-10"].decided_at.FromDatetime(datetime.now(UTC))
        registry.referrals["C-10"].state = "decided"
        answered = enforcement.answer_referral("C-10", "stop order issued")
        assert answered.referral is not None and answered.referral.answer == "stop order issued"
        assert enforcement.get_referral("C-10").state == "answered"


def test_acknowledge_notice(registry: Registry, pki: DepartmentPKI) -> None:
    registry.add_notice("N-1", "110228-0001-0001", "tax", 3)
    with client(registry, pki.client("working-group")) as group:
        result = group.acknowledge_notice("N-1")
        assert result.notice is not None
        assert (result.notice.state, result.notice.acknowledged_by) == (
            "acknowledged",
            "working-group",
        )
        assert group.get_notice("N-1").acknowledged_at is not None


def test_the_same_request_id_again_is_a_replay(
    registry: Registry, planning: DepartmentClient
) -> None:
    first = planning.open_case(
        "C-2", "110228-0001-0001", "temporary_overdue", "filed", "report", OPENED,
        request_id="r-1",
    )  # fmt: skip
    again = planning.open_case(
        "C-2", "110228-0001-0001", "temporary_overdue", "filed", "report", OPENED,
        request_id="r-1",
    )  # fmt: skip
    assert (first.replayed, again.replayed) == (False, True)
    assert again.seq == first.seq and again.request_id == "r-1"
    assert list(registry.cases) == ["C-2"]
    with pytest.raises(ConflictError, match="request_id 'r-1' was used for another write"):
        planning.move_case("C-2", "stop_order", request_id="r-1")


def test_a_lost_answer_is_retried_with_the_same_signed_statement(
    registry: Registry, planning: DepartmentClient
) -> None:
    registry.lose_answers["r-lost"] = 2  # the write is made, its answer lost twice
    result = planning.open_case(
        "C-3", "110228-0001-0001", "unauthorized_use_change", "filed", "media", OPENED,
        request_id="r-lost",
    )  # fmt: skip
    assert result.replayed  # the third answer: the first write's result again
    assert len(registry.statements) == 3
    assert len(set(registry.statements)) == 1  # the very same bytes (one signature) each time
    assert list(registry.cases) == ["C-3"]


def test_retries_give_up_after_their_number(registry: Registry, pki: DepartmentPKI) -> None:
    registry.lose_answers["r-gone"] = 5
    with (
        client(registry, pki.client("city-planning"), retries=1) as planning,
        pytest.raises(UnavailableError, match="answer lost"),
    ):
        planning.open_case("C-4", "110228-0001-0001", "temporary_overdue", "filed", "media",
                           OPENED, request_id="r-gone")  # fmt: skip
    assert len(registry.statements) == 2  # the first attempt and one retry
    assert list(registry.cases) == ["C-4"]  # written once


def test_a_refusal_is_not_retried_and_names_the_rule(
    registry: Registry, planning: DepartmentClient
) -> None:
    with pytest.raises(PermissionDeniedError) as refused:
        planning.issue_permit(
            "P-9", structure_id="110228-0001-0001", kind="land_certificate", issued=OPENED
        )
    assert str(refused.value) == "Art. 8: land issues land_certificate permits, not planning"
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert len(registry.statements) == 1
    assert registry.permits == {}


def test_other_refusals_are_typed(registry: Registry, planning: DepartmentClient) -> None:
    with pytest.raises(NotFoundError, match=r"permit\.structure: 999"):
        planning.issue_permit("P-3", structure_id="999", kind="construction_planning",
                              issued=OPENED)  # fmt: skip
    with pytest.raises(NotFoundError):
        planning.get_case("C-missing")
    planning.issue_permit("P-4", structure_id="110228-0001-0001", kind="construction_planning",
                          issued=OPENED)  # fmt: skip
    with pytest.raises(ConflictError, match=r"permit\.id: P-4 exists"):
        planning.issue_permit("P-4", structure_id="110228-0001-0001",
                              kind="construction_planning", issued=OPENED)  # fmt: skip
    with pytest.raises(InvalidCheckError, match="'wrecked'"):
        planning.open_case("C-6", "110228-0001-0001", "temporary_overdue", "wrecked", "media",
                           OPENED)  # fmt: skip
    before = len(registry.statements)
    with pytest.raises(NotFoundError, match="case C-none: none"):
        planning.move_case("C-none", "filed")
    assert len(registry.statements) == before + 1  # NOT_FOUND is not retried


def test_certificate_of_another_department_is_refused(
    registry: Registry, pki: DepartmentPKI
) -> None:
    # planning's signing key, but a client certificate naming land: the client refuses at once
    land = pki.client("city-land")
    planning_key = pki.client("city-planning").key
    with pytest.raises(ValueError, match="certificate names 'city-land'"):
        DepartmentClient(
            registry.target, key=planning_key, cert=land.cert, cert_key=land.cert_key,
            ca=registry.ca,
        )  # fmt: skip
    # and the registry refuses it from a caller that bypasses the client's own check
    with DepartmentClient(
        registry.target, key=None, cert=land.cert, cert_key=land.cert_key, ca=registry.ca
    ) as c:
        c.key = DepartmentKey.load(planning_key)
        with pytest.raises(PermissionDeniedError, match="certificate names 'city-land'"):
            c.move_case("C-1", "filed")
    # a key of the right name that is not the enrolled one
    with client(registry, pki.client("city-planning")) as c:
        c.key = DepartmentKey.generate("city-planning")
        with pytest.raises(PermissionDeniedError, match="no valid signature"):
            c.move_case("C-1", "filed")
    assert registry.cases == {}


def test_writes_need_a_key(registry: Registry, pki: DepartmentPKI) -> None:
    group = pki.client("working-group")
    with DepartmentClient(
        registry.target, key=None, cert=group.cert, cert_key=group.cert_key, ca=registry.ca
    ) as reader:
        assert reader.department == "working-group"
        with pytest.raises(ValueError, match="acknowledge_notice: a write needs"):
            reader.acknowledge_notice("N-1")
        assert list(reader.notices()) == []
    assert registry.statements == []


def test_lists_follow_the_pages(registry: Registry, planning: DepartmentClient) -> None:
    for n in range(23):
        planning.issue_permit(
            f"P-{n:02}", structure_id="110228-0001-0001", kind="construction_planning",
            issued=OPENED,
        )  # fmt: skip
    permits = list(planning.permits(page_size=5))
    assert [p.id for p in permits] == [f"P-{n:02}" for n in range(23)]
    assert list(planning.permits(structure_id="110229-0001-0001", page_size=5)) == []


def test_notices_filters_and_report(registry: Registry, planning: DepartmentClient) -> None:
    registry.add_notice("N-old", "110228-0001-0001", "tax", 10)
    registry.add_notice("N-new", "110229-0001-0001", "health", 0)
    assert [n.id for n in planning.notices(min_age_days=5)] == ["N-old"]
    assert [n.id for n in planning.notices(district="110229")] == ["N-new"]
    assert [n.reasons for n in planning.notices(office="tax")] == [("MISSING_PERMIT",)]
    registry.figures = [("cases_opened", "planning/patrol", 4), ("notices", "tax", 2)]
    report = planning.report("2026-11")
    assert report.month == "2026-11" and report.district is None
    assert report.section("notices") == {"tax": 2}


def test_arguments_are_checked_before_anything_is_sent(
    registry: Registry, planning: DepartmentClient, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="opened: give an aware datetime"):
        planning.open_case("C-5", "110228-0001-0001", "temporary_overdue", "filed", "patrol",
                           datetime(2026, 11, 2))  # fmt: skip
    with pytest.raises(ValueError, match="case_id: a non-empty string"):
        planning.move_case(" ", "filed")
    with pytest.raises(ValueError, match="page_size: 1 to 1000"):
        list(planning.cases(page_size=0))
    with pytest.raises(ValueError, match="cert: cannot read"):
        DepartmentClient(registry.target, key=None, cert=tmp_path / "none.crt", cert_key=b"")
    assert registry.statements == []


def test_async_client_writes_retries_and_pages(registry: Registry, pki: DepartmentPKI) -> None:
    identity = pki.client("city-planning")
    registry.lose_answers["r-async"] = 1

    async def work() -> tuple[WriteResult, WriteResult, list[str]]:
        async with AsyncDepartmentClient(
            registry.target,
            key=identity.key,
            cert=identity.cert,
            cert_key=identity.cert_key,
            ca=registry.ca,
        ) as planning:
            opened = await planning.open_case(
                "C-A", "110228-0001-0001", "temporary_overdue", "filed", "report", OPENED,
                request_id="r-async",
            )  # fmt: skip
            for n in range(7):
                await planning.issue_permit(
                    f"P-A{n}", structure_id="110228-0001-0001", kind="construction_planning",
                    issued=OPENED,
                )  # fmt: skip
            with pytest.raises(PermissionDeniedError, match=r"^Art\. 8: land issues"):
                await planning.issue_permit(
                    "P-X", structure_id="110228-0001-0001", kind="land_certificate",
                    issued=OPENED,
                )  # fmt: skip
            moved = await planning.move_case("C-A", "closed")
            ids = [p.id async for p in planning.permits(page_size=3)]
            return opened, moved, ids

    opened, moved, ids = asyncio.run(work())
    assert opened.replayed  # its first answer was lost; the resend got the first result
    assert registry.statements[0] == registry.statements[1]
    assert moved.case is not None and (moved.case.stage, moved.case.blocking) == ("closed", False)
    assert ids == [f"P-A{n}" for n in range(7)]
