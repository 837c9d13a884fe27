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
    ConflictError,
    DepartmentClient,
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


@pytest.mark.parametrize(
    "status",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED],
)
def test_a_lost_answer_is_retried_with_the_same_signed_statement(
    registry: Registry, planning: DepartmentClient, status: grpc.StatusCode
) -> None:
    registry.lost_status = status
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


def test_a_call_repeated_under_its_request_id_sends_the_first_statement(
    registry: Registry, planning: DepartmentClient
) -> None:
    args = ("C-7", "110228-0001-0001", "temporary_overdue", "filed", "report", OPENED)
    first = planning.open_case(*args, request_id="r-same")
    again = planning.open_case(*args, request_id="r-same")
    assert (first.replayed, again.replayed) == (False, True)
    assert registry.statements[0] == registry.statements[1]  # signed once, sent twice
    with pytest.raises(ConflictError, match="request_id 'r-same' was used for another write"):
        planning.move_case("C-7", "closed", request_id="r-same")
    assert registry.statements[2] != registry.statements[0]
    assert list(registry.cases) == ["C-7"] and registry.cases["C-7"].stage == "filed"
