"""The department read RPCs (registry.department_reads) over a real grpc.aio server on loopback.

The server carries only the read handlers, registered through ``server.guard`` as the Registry
service registers its methods, with an ``authorise`` the test controls: it lets in
the callers whose ``department`` metadata it was told to, and refuses the others with
PERMISSION_DENIED, as the service's mTLS identity check would. Rows are prepared with the
importer and the ORM on SQLite and PostgreSQL; expectations come from the prepared lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from department_support import World, make_world
from permitgate_client.v1 import registry_pb2 as pb
from permitgate_client.v1 import registry_pb2_grpc
from registry_support import Registry, case, permit, structure

from registry.department_reads import LIST_FILTERS, DepartmentReads
from registry.monthly_report import monthly_report
from registry.storage import Database, NotificationRow, ReferralRow
from server.guard import CallLimit, GuardedServer, MalformedRequests

SERVICE = "permitgate.v1.Registry"
T0 = datetime.fromisoformat("2026-10-10T00:00:00+00:00")
DAY = timedelta(days=1)


@pytest.fixture
def db(reg: Registry) -> Any:
    records: list[dict[str, Any]] = [
        structure("S-1"),
        {**structure("S-2"), "district": "220101"},
        permit("P-1", "S-1", "construction_planning"),
        permit("P-2", "S-1", "land_certificate"),
        permit("P-3", "S-2", "construction_works"),
    ]
    for i in range(7):
        record = case(f"C-{i}", "S-1" if i % 2 else "S-2", ["filed", "stop_order", "closed"][i % 3])
        if i < 4:
            record["party"] = f"ORG-{i % 2}"
            record["party_suspended"] = i == 1
        records.append(record)
    reg.load(records)
    database = Database(reg.url)
    with database.session() as session:
        for i in range(5):
            session.add(
                NotificationRow(
                    id=f"N-{i}",
                    structure_id="S-1" if i % 2 else "S-2",
                    office="tax" if i < 3 else "health",
                    application_id=f"A-{i}",
                    reasons='[{"code":"NO_PERMIT"},{"code":"USE_MISMATCH"}]',
                    created_at=T0 + i * DAY,
                    acknowledged_at=T0 + i * DAY if i == 0 else None,
                    acknowledged_by="city-working-group" if i == 0 else None,
                )
            )
        session.add(
            ReferralRow(
                case_id="C-0",
                structure_id="S-2",
                district="220101",
                case_kind="no_planning_permit",
                found_by="city-planning",
                found_at=T0,
                referral_due=T0 + 2 * DAY,
            )
        )
        session.add(
            ReferralRow(
                case_id="C-1",
                structure_id="S-1",
                district="110228",
                case_kind="no_planning_permit",
                found_by="city-land",
                found_at=T0 + DAY,
                referral_due=T0 + 3 * DAY,
                referred_to="city-enforcement",
                referred_at=T0 + 2 * DAY,
            )
        )
    yield database, records
    database.dispose()


class Gatekeeper:
    """The ``authorise`` the service would supply: lets in the departments it is told to."""

    def __init__(self, *allowed: str) -> None:
        self.allowed = set(allowed)
        self.calls = 0

    async def __call__(self, context: Any) -> None:
        self.calls += 1
        metadata = dict(context.invocation_metadata() or ())
        who = metadata.get("department", "")
        if who not in self.allowed:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who!r} is not enrolled")


Stub = registry_pb2_grpc.RegistryStub


def serve(
    database: Database,
    gate: Gatekeeper,
    test: Callable[[Stub], Awaitable[None]],
    *,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Run ``test`` against a loopback server carrying the read handlers."""

    async def main() -> None:
        server = grpc.aio.server()
        handlers = DepartmentReads(database, clock=clock).method_handlers(gate)
        guarded = GuardedServer(server, MalformedRequests(), CallLimit(100))  # as the service
        guarded.add_registered_method_handlers(SERVICE, handlers)
        guarded.check()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await test(Stub(channel))  # type: ignore[no-untyped-call]
        finally:
            await server.stop(None)

    asyncio.run(main())


AS_PLANNING = (("department", "city-planning"),)


async def refused(call: Any, request: Any, **kw: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(request, metadata=kw.get("metadata", AS_PLANNING))
    return info.value.code(), info.value.details() or ""


async def pages(call: Any, field: str, **fields: Any) -> list[Any]:
    """Every item of a list RPC, page by page (each page at most its size)."""
    items: list[Any] = []
    token = ""
    while True:
        page = await call(pb.ListRequest(page_token=token, **fields), metadata=AS_PLANNING)
        got = list(getattr(page, field))
        assert len(got) <= (fields.get("page_size") or 100)
        items.extend(got)
        if not page.next_page_token:
            return items
        token = page.next_page_token


def test_lists_and_gets(db: Any) -> None:
    database, records = db
    gate = Gatekeeper("city-planning")
    cases = sorted((r for r in records if r["type"] == "case"), key=lambda r: r["id"])

    async def test(stub: Stub) -> None:
        permits = await pages(stub.ListPermits, "permits", page_size=1)
        assert [p.id for p in permits] == ["P-1", "P-2", "P-3"]
        mine = await pages(stub.ListPermits, "permits", page_size=1, structure_id="S-1")
        assert [p.id for p in mine] == ["P-1", "P-2"]
        works = await pages(stub.ListPermits, "permits", kind="construction_works")
        assert [p.id for p in works] == ["P-3"] and works[0].issued.seconds > 0

        listed = await pages(stub.ListCases, "cases", page_size=2)
        assert [c.id for c in listed] == [c["id"] for c in cases]
        in_220101 = await pages(stub.ListCases, "cases", page_size=2, district="220101")
        assert [c.id for c in in_220101] == [c["id"] for c in cases if c["structure"] == "S-2"]
        of_party = await pages(stub.ListCases, "cases", party="ORG-1")
        assert [c.id for c in of_party] == ["C-1", "C-3"]
        one = await stub.GetCase(pb.GetRequest(id="C-1"), metadata=AS_PLANNING)
        assert (one.stage, one.party, one.party_suspended, one.blocking) == (
            "stop_order",
            "ORG-1",
            True,
            True,
        )
        assert (one.decider, one.lead, one.district) == ("enforcement", "planning", "110228")

        notices = await pages(stub.ListNotices, "notices", page_size=2)
        assert [n.id for n in notices] == [f"N-{i}" for i in range(5)]
        opened = await pages(stub.ListNotices, "notices", page_size=2, state="open", office="tax")
        assert [n.id for n in opened] == ["N-1", "N-2"]
        old = await pages(stub.ListNotices, "notices", min_age_days=3)  # now: T0 + 5 days
        assert [n.id for n in old] == ["N-0", "N-1", "N-2"]
        young = await pages(stub.ListNotices, "notices", max_age_days=1, district="220101")
        assert [n.id for n in young] == ["N-4"]
        notice = await stub.GetNotice(pb.GetRequest(id="N-0"), metadata=AS_PLANNING)
        assert notice.state == "acknowledged" and notice.acknowledged_by == "city-working-group"
        assert list(notice.reasons) == ["NO_PERMIT", "USE_MISMATCH"]

        referrals = await pages(stub.ListReferrals, "referrals", page_size=1)
        assert [(r.case_id, r.state, r.overdue) for r in referrals] == [
            ("C-0", "awaiting_referral", "referral"),
            ("C-1", "referred", ""),
        ]
        theirs = await pages(stub.ListReferrals, "referrals", department="city-enforcement")
        assert [r.case_id for r in theirs] == ["C-1"]
        late = await pages(stub.ListReferrals, "referrals", overdue_only=True)
        assert [r.case_id for r in late] == ["C-0"]
        referral = await stub.GetReferral(pb.GetRequest(id="C-1"), metadata=AS_PLANNING)
        assert referral.referred_to == "city-enforcement" and referral.HasField("referred_at")
        assert not referral.HasField("decided_at")

        parties = await pages(stub.ListParties, "parties", page_size=1)
        assert [(p.id, p.suspended, list(p.cases)) for p in parties] == [
            ("ORG-0", False, ["C-0", "C-2"]),
            ("ORG-1", True, ["C-1", "C-3"]),
        ]
        party = await stub.GetParty(pb.GetRequest(id="ORG-1"), metadata=AS_PLANNING)
        assert list(party.suspending_cases) == ["C-1"]
        typed = await stub.GetParty(pb.GetRequest(id="org-1"), metadata=AS_PLANNING)  # party_key
        assert (typed.id, list(typed.suspending_cases)) == ("ORG-1", ["C-1"])
        assert [c.id for c in await pages(stub.ListCases, "cases", party="org-1")] == [
            "C-1",
            "C-3",
        ]
        permit_one = await stub.GetPermit(pb.GetRequest(id="P-2"), metadata=AS_PLANNING)
        assert permit_one.kind == "land_certificate" and permit_one.structure_id == "S-1"

    serve(database, gate, test, clock=lambda: T0 + 5 * DAY)
    assert gate.calls > 10


def test_the_clock_decides_lateness(db: Any) -> None:
    database, _ = db

    async def test(stub: Stub) -> None:
        late = await pages(stub.ListReferrals, "referrals", overdue_only=True)
        assert late == []
        referral = await stub.GetReferral(pb.GetRequest(id="C-0"), metadata=AS_PLANNING)
        assert referral.overdue == "" and referral.state == "awaiting_referral"

    serve(database, Gatekeeper("city-planning"), test, clock=lambda: T0 + DAY)


def test_what_is_refused(db: Any) -> None:
    database, _ = db

    async def test(stub: Stub) -> None:
        code, details = await refused(stub.GetCase, pb.GetRequest(id="C-99"))
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no case C-99")
        code, details = await refused(stub.GetReferral, pb.GetRequest(id="C-5"))
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no referral of case C-5")
        for method in ("GetPermit", "GetNotice", "GetParty"):
            code, details = await refused(getattr(stub, method), pb.GetRequest(id="X-1"))
            assert code == grpc.StatusCode.NOT_FOUND and details.endswith(" X-1"), details
        code, details = await refused(stub.GetPermit, pb.GetRequest(id="not an id"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("id: not a valid")

        code, details = await refused(stub.ListPermits, pb.ListRequest(district="110228"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == (
            "ListPermits does not take the filter district (it takes: kind, structure_id)"
        )
        code, details = await refused(
            stub.ListParties, pb.ListRequest(overdue_only=True, office="tax")
        )
        assert details == (
            "ListParties does not take the filters office, overdue_only (it takes: none)"
        )
        code, details = await refused(stub.ListCases, pb.ListRequest(page_size=1001))
        assert (code, details) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_size: 1001 is more than 1000",
        )
        code, details = await refused(stub.ListNotices, pb.ListRequest(page_token="%%%"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("page_token:")
        first = await stub.ListCases(pb.ListRequest(page_size=1), metadata=AS_PLANNING)
        code, details = await refused(
            stub.ListNotices, pb.ListRequest(page_token=first.next_page_token)
        )
        assert "a token of the 'cases' list" in details
        code, details = await refused(stub.ListReferrals, pb.ListRequest(state="lost"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("state: 'lost'")
        code, details = await refused(stub.Report, pb.ReportRequest(month="2026-13"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "2026-13" in details

    serve(database, Gatekeeper("city-planning"), test, clock=lambda: T0)


def test_every_filter_is_taken_by_some_list() -> None:
    names = {f.name for f in pb.ListRequest.DESCRIPTOR.fields} - {"page_size", "page_token"}
    assert set().union(*LIST_FILTERS.values()) == names


def test_every_method_asks_authorise_first(db: Any) -> None:
    database, _ = db
    gate = Gatekeeper("city-planning")
    requests = {
        "GetPermit": pb.GetRequest(id="P-1"),
        "ListPermits": pb.ListRequest(),
        "GetCase": pb.GetRequest(id="C-1"),
        "ListCases": pb.ListRequest(),
        "GetReferral": pb.GetRequest(id="C-1"),
        "ListReferrals": pb.ListRequest(),
        "GetNotice": pb.GetRequest(id="N-1"),
        "ListNotices": pb.ListRequest(),
        "GetParty": pb.GetRequest(id="ORG-1"),
        "ListParties": pb.ListRequest(),
        "Report": pb.ReportRequest(month="2026-10"),
    }

    async def test(stub: Stub) -> None:
        stranger = (("department", "someone-else"),)
        for method, request in requests.items():
            code, details = await refused(getattr(stub, method), request, metadata=stranger)
            assert (code, details) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "'someone-else' is not enrolled",
            ), method
        # Refused before the request is looked at: a bad request is still PERMISSION_DENIED.
        code, _ = await refused(stub.GetCase, pb.GetRequest(id="bad id!"), metadata=stranger)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, _ = await refused(stub.ListCases, pb.ListRequest(page_size=5000), metadata=())
        assert code == grpc.StatusCode.PERMISSION_DENIED

    serve(database, gate, test)
    assert gate.calls == len(requests) + 2
    assert {m for m in requests} == set(DepartmentReads(database).method_handlers(gate)), (
        "every read method was tried"
    )


def test_report(db: Any) -> None:
    database, _ = db
    now = T0 + 40 * DAY

    async def test(stub: Stub) -> None:
        got = await stub.Report(
            pb.ReportRequest(month="2026-10", district="220101"), metadata=AS_PLANNING
        )
        expected = monthly_report(database, "2026-10", "220101", now=now)
        assert (got.month, got.district) == ("2026-10", "220101")
        assert [(f.section, f.key, f.value) for f in got.figures] == [
            (f.section, f.key, f.value) for f in expected.figures
        ]
        # The notices of October in 220101: N-0, N-2, N-4 (on S-2).
        assert {(f.key, f.value) for f in got.figures if f.section == "notices"} == {
            ("tax", 2),
            ("health", 1),
        }

    serve(database, Gatekeeper("city-planning"), test, clock=lambda: now)


# --- What a department reads of cases and permits is what the registry signed -------------------


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    """The real registry service (mutual TLS, the heartbeat following), every department
    enrolled, over ``department_support.base_records``."""
    world = make_world(db_url, tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()


def _refusal(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code(), exc.details() or ""
    raise AssertionError("the read was answered")


def test_a_department_reads_a_case_as_the_registry_signed_it(world: World) -> None:
    """A database writer closes C-1 in its table row and lifts its party's suspension; the
    signed record still says filed (the gates DENY). GetCase and ListCases refuse, naming the
    difference, rather than show the row as fact; the other case reads are unaffected."""
    with world.channel("city-planning") as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        before: pb.CaseInfo = stub.GetCase(pb.GetRequest(id="C-1"), timeout=10)
        assert before.stage == "filed"
        world.registry.sql("UPDATE violation_case SET stage = 'closed' WHERE id = 'C-1'")
        code, details = _refusal(lambda: stub.GetCase(pb.GetRequest(id="C-1"), timeout=10))
        assert code is grpc.StatusCode.DATA_LOSS, details
        assert "case C-1" in details and "stage = closed" in details and "filed" in details
        code, details = _refusal(lambda: stub.ListCases(pb.ListRequest(), timeout=10))
        assert code is grpc.StatusCode.DATA_LOSS and "case C-1" in details, details
        permits: pb.PermitPage = stub.ListPermits(pb.ListRequest(), timeout=10)
        assert [p.id for p in permits.permits] == ["P-1"]


def test_a_permit_row_changed_or_added_in_the_database_is_refused(world: World) -> None:
    with world.channel("city-planning") as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        assert stub.GetPermit(pb.GetRequest(id="P-1"), timeout=10).status == "valid"
        world.registry.sql("UPDATE permit SET use = 'industrial' WHERE id = 'P-1'")
        code, details = _refusal(lambda: stub.GetPermit(pb.GetRequest(id="P-1"), timeout=10))
        assert code is grpc.StatusCode.DATA_LOSS and "use = industrial" in details, details


def test_a_case_written_is_read_at_once_as_signed(world: World) -> None:
    """A write answered, then read at once: the held state follows the new head before the
    read is answered (no refusal for a write the heartbeat has not followed yet)."""
    with world.channel("city-planning") as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        for stage in ("stop_order", "rectify_order"):
            world.write("city-planning", "move_case", {"case": "C-1", "stage": stage})
            read: pb.CaseInfo = stub.GetCase(pb.GetRequest(id="C-1"), timeout=10)
            assert read.stage == stage
            assert [c.stage for c in stub.ListCases(pb.ListRequest(), timeout=10).cases] == [stage]
