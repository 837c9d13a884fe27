"""``DepartmentClient`` against the real registry service over mutual TLS on loopback, on SQLite
and PostgreSQL: each write method, a write retried under the same request id (a replay, nothing
written twice), a registry that comes up while the client retries, lists followed page by page,
and each refusal as its typed error with the registry's words (the remit rule)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from department_support import S1, S2, World, make_world
from permitgate_client import (
    ConflictError,
    DepartmentClient,
    DepartmentKey,
    FailedPreconditionError,
    InvalidCheckError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)

from registry.admin import default_state_dir
from registry.notifications import record_notification
from registry.service import DepartmentTls, RegistryApp

ISSUED = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = make_world(db_url, tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()


def connect(world: World, department: str, **options: object) -> DepartmentClient:
    """``department``'s client: its signing key and its own client certificate."""
    assert world.app is not None and world.app.departments_address is not None
    cert, cert_key = world.pki.client(department)
    return DepartmentClient(
        world.app.departments_address,
        key=world.keys[department],
        cert=cert,
        cert_key=cert_key,
        ca=world.pki.ca,
        timeout=30,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def planning(world: World) -> Iterator[DepartmentClient]:
    with connect(world, "city-planning") as client:
        yield client


def test_issue_permit_and_change_its_status(world: World, planning: DepartmentClient) -> None:
    issued = planning.issue_permit(
        "P-2",
        structure_id=S2,
        kind="land_use_planning",
        issued=ISSUED,
        expires=ISSUED + timedelta(days=730),
    )
    assert (issued.department, issued.action, issued.replayed) == (
        "city-planning",
        "issue_permit",
        False,
    )
    assert issued.permit is not None
    assert (issued.permit.id, issued.permit.structure_id, issued.permit.status) == (
        "P-2",
        S2,
        "valid",
    )
    assert issued.permit.issued == ISSUED
    assert issued.permit.expires == ISSUED + timedelta(days=730)
    assert issued.seq > 0 and issued.registry_version > issued.seq
    changed = planning.change_permit_status("P-2", "suspended")
    assert changed.permit is not None and changed.permit.status == "suspended"
    assert changed.seq > issued.seq
    assert planning.get_permit("P-2").status == "suspended"


def test_open_move_and_suspend_the_party(world: World, planning: DepartmentClient) -> None:
    with connect(world, "city-enforcement") as enforcement:
        opened = enforcement.open_case(
            "C-2",
            S2,
            "no_planning_permit",
            "filed",
            "satellite",
            datetime.now(UTC) - timedelta(hours=2),
            party="91110000MA0000002Y",
        )
        assert opened.case is not None
        assert (opened.case.stage, opened.case.blocking, opened.case.decider) == (
            "filed",
            True,
            "enforcement",
        )
        assert opened.case.party == "91110000MA0000002Y"
        assert opened.referral is None  # in its own remit
    moved = planning.move_case("C-1", "stop_order")
    assert moved.case is not None and moved.case.stage == "stop_order"
    suspended = planning.suspend_party("C-1")
    assert suspended.case is not None and suspended.case.party_suspended
    party = planning.get_party("91110000MA0000001X")
    assert party.suspended and party.suspending_cases == ("C-1",)
    lifted = planning.suspend_party("C-1", False)
    assert lifted.case is not None and not lifted.case.party_suspended


def test_referral_from_finding_to_answer(world: World) -> None:
    found = datetime.now(UTC) - timedelta(hours=1)
    with (
        connect(world, "city-housing") as housing,
        connect(world, "city-enforcement") as enforcement,
    ):
        opened = housing.open_case("C-3", S2, "no_planning_permit", "reported", "patrol", found)
        assert opened.case is not None and opened.case.stage == "reported"
        awaiting = housing.get_referral("C-3")
        assert (awaiting.state, awaiting.found_by) == ("awaiting_referral", "city-housing")
        assert awaiting.found_at is not None and abs(awaiting.found_at - found) < timedelta(
            seconds=1
        )
        assert awaiting.referral_due is not None and awaiting.referral_due > found
        referred = housing.refer_case("C-3", "city-enforcement")
        assert referred.referral is not None
        assert (referred.referral.state, referred.referral.referred_to) == (
            "referred",
            "city-enforcement",
        )
        enforcement.move_case("C-3", "filed")
        assert enforcement.get_referral("C-3").state == "referred"  # filing decides nothing
        enforcement.move_case("C-3", "stop_order")
        decided = enforcement.get_referral("C-3")
        assert (decided.state, decided.decision) == ("decided", "stop_order")
        answered = enforcement.answer_referral("C-3", "stop order served on the builder")
        assert answered.referral is not None and answered.referral.state == "answered"
        assert housing.get_referral("C-3").answer == "stop order served on the builder"


def test_acknowledge_notice(world: World) -> None:
    notice = record_notification(
        world.registry.db,
        structure_id=S1,
        office="tax",
        application_id="A-1",
        reasons=[{"code": "MISSING_PERMIT", "article": "13"}],
        at=datetime.now(UTC) - timedelta(days=3),
    )
    with connect(world, "working-group") as group:
        assert group.get_notice(notice).state == "open"
        result = group.acknowledge_notice(notice)
        assert result.notice is not None
        assert (result.notice.id, result.notice.state, result.notice.acknowledged_by) == (
            notice,
            "acknowledged",
            "working-group",
        )
        assert [n.id for n in group.notices(state="acknowledged")] == [notice]


def test_the_same_request_id_again_is_a_replay(world: World, planning: DepartmentClient) -> None:
    args = ("C-4", S2, "temporary_overdue", "filed", "report", datetime.now(UTC))
    first = planning.open_case(*args, request_id="r-once")
    before = world.counts()
    again = planning.open_case(*args, request_id="r-once")
    assert (first.replayed, again.replayed) == (False, True)
    assert (again.seq, again.request_id, again.case) == (first.seq, "r-once", first.case)
    assert world.counts() == before  # nothing written again
    with pytest.raises(ConflictError, match="r-once"):
        planning.move_case("C-4", "closed", request_id="r-once")
    assert world.counts() == before


def test_retries_reach_a_registry_that_comes_up(world: World, tmp_path: Path) -> None:
    """The registry is down when the write is first sent: the client resends the same signed
    statement until it is up, and the write is made once."""
    world.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cert, cert_key = world.pki.client("city-planning")
    client = DepartmentClient(
        f"127.0.0.1:{port}",
        key=world.keys["city-planning"],
        cert=cert,
        cert_key=cert_key,
        ca=world.pki.ca,
        timeout=30,
        retries=8,
    )
    started: list[RegistryApp] = []

    def start_later() -> None:
        time.sleep(0.6)

        async def create() -> RegistryApp:
            app = await RegistryApp.create(
                db_url=world.registry.url,
                keys_dir=world.registry.keys_dir,
                state_dir=default_state_dir(world.registry.keys_dir),
                listen="127.0.0.1:0",
                heartbeat=0.2,
                tls=DepartmentTls(world.pki.server_cert, world.pki.server_key, world.pki.ca),
                departments_listen=f"127.0.0.1:{port}",
            )
            await app.start()
            return app

        started.append(world.loop.run(create()))

    later = threading.Thread(target=start_later)
    began = time.monotonic()
    later.start()
    try:
        with client:
            result = client.move_case("C-1", "stop_order", request_id="r-late")
        later.join()
        assert time.monotonic() - began >= 0.6  # answered only once the registry was up
        assert not result.replayed and result.case is not None
        assert result.case.stage == "stop_order"
        written = world.registry.sql(
            "SELECT count(*) FROM department_write WHERE request_id = 'r-late'"
        )
        assert written == [(1,)]
    finally:
        later.join()
        for app in started:
            world.loop.run(app.stop(1.0))


def test_no_registry_at_all_is_unavailable_after_the_retries(world: World) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cert, cert_key = world.pki.client("city-planning")
    with DepartmentClient(
        f"127.0.0.1:{port}",
        key=world.keys["city-planning"],
        cert=cert,
        cert_key=cert_key,
        ca=world.pki.ca,
        retries=2,
    ) as client:
        began = time.monotonic()
        with pytest.raises(UnavailableError):
            client.move_case("C-1", "stop_order")
        assert time.monotonic() - began >= 0.3  # two backoffs: 0.1 s, then 0.2 s


def test_a_refusal_names_the_rule(world: World, planning: DepartmentClient) -> None:
    before = world.counts()
    with pytest.raises(PermissionDeniedError) as refused:
        planning.issue_permit("P-9", structure_id=S2, kind="land_certificate", issued=ISSUED)
    assert str(refused.value) == "Art. 8: land issues land_certificate permits, not planning"
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    with connect(world, "city-water") as water, pytest.raises(PermissionDeniedError) as reader:
        water.open_case("C-9", S2, "no_planning_permit", "reported", "patrol", datetime.now(UTC))
    assert "Art. 13, 23: utility departments only read the registry" in str(reader.value)
    assert world.counts() == before


def test_other_refusals_are_typed(world: World, planning: DepartmentClient) -> None:
    before = world.counts()
    with pytest.raises(NotFoundError, match=r"write\.case: no case 'C-404'"):
        planning.move_case("C-404", "closed")
    with pytest.raises(ConflictError):
        planning.issue_permit("P-1", structure_id=S1, kind="construction_planning", issued=ISSUED)
    with pytest.raises(FailedPreconditionError, match="C-1"):
        planning.suspend_party("C-1")  # filed: no order was ignored yet
    with pytest.raises(InvalidCheckError, match=r"write\.case\.stage"):
        planning.open_case("C-5", S2, "temporary_overdue", "wrecked", "patrol", datetime.now(UTC))
    with pytest.raises(NotFoundError):
        planning.get_case("C-404")
    assert world.counts() == before


def test_certificate_and_key_must_be_the_same_department(world: World) -> None:
    assert world.app is not None and world.app.departments_address is not None
    land_cert, land_key = world.pki.client("city-land")
    with pytest.raises(ValueError, match="certificate names 'city-land'"):
        DepartmentClient(
            world.app.departments_address,
            key=world.keys["city-planning"],
            cert=land_cert,
            cert_key=land_key,
            ca=world.pki.ca,
        )
    before = world.counts()
    with DepartmentClient(
        world.app.departments_address, key=None, cert=land_cert, cert_key=land_key,
        ca=world.pki.ca,
    ) as client:  # fmt: skip
        client.key = world.keys["city-planning"]  # past the client's own check: the registry's
        with pytest.raises(PermissionDeniedError):
            client.move_case("C-1", "stop_order")
    with connect(world, "city-planning") as client:
        client.key = DepartmentKey.generate("city-planning")  # not the enrolled key
        with pytest.raises(PermissionDeniedError):
            client.move_case("C-1", "stop_order")
    assert world.counts() == before


def test_lists_follow_the_pages(world: World, planning: DepartmentClient) -> None:
    with connect(world, "city-enforcement") as enforcement:
        for n in range(7):
            enforcement.open_case(
                f"C-L{n}", S2, "no_planning_permit", "filed", "patrol", datetime.now(UTC)
            )
    cases = list(planning.cases(district="110229", page_size=2))
    assert sorted(c.id for c in cases) == [f"C-L{n}" for n in range(7)]
    assert len({c.id for c in cases}) == 7  # no case twice across the pages
    everything = {c.id for c in planning.cases(page_size=3)}
    assert everything == {"C-1", *(f"C-L{n}" for n in range(7))}
