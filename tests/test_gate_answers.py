"""End to end: the gate's answers over gRPC follow DOMAIN.md, on a representative registry.

The registry holds the demo's scenarios (``registry.demo``: structure ``structure_id(i)`` shows
scenario ``i``) and hand-written structures for combinations the demo lacks. Every check goes
over a real socket to a real gate, and the expected answers are written from DOMAIN.md, not
from the rules module: verdict, every reason (code, permit kind or case id, article),
``valid_until`` only for ALLOW_TEMPORARY, a notification id only for NOTIFY.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import gate_helpers
import pytest
from gate_helpers import (
    NOTIFYING_OFFICES,
    AnyCheck,
    GateRegistry,
    RunningGate,
    Why,
    Wire,
    case,
    connection,
    day,
    permit,
    reasons,
    registration,
    served_registry,
    structure,
    urban_ok,
    verdict,
)
from permitgate_client.v1 import gate_pb2 as pb

from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.records import format_time, parse_time

NOW = datetime.now(UTC)
DEMO: list[dict[str, Any]] = list(demo_lines(len(SCENARIOS), now=NOW))


def scenario(prefix: str) -> str:
    """The demo structure showing the one scenario whose name starts with ``prefix``."""
    [index] = [i for i, s in enumerate(SCENARIOS) if s.name.startswith(prefix)]
    return structure_id(index)


def demo_case(sid: str) -> str:
    [cid] = [r["id"] for r in DEMO if r["type"] == "case" and r["structure"] == sid]
    return str(cid)


def demo_expiry(sid: str, kind: str) -> str:
    [expires] = [
        r["expires"]
        for r in DEMO
        if r["type"] == "permit" and r["structure"] == sid and r["kind"] == kind
    ]
    return str(expires)


OK = scenario("urban, every permit in force")
REVOKED = scenario("urban, construction planning permit revoked")
SUSPENDED = scenario("urban, construction planning permit suspended")
EXPIRED = scenario("urban, construction planning permit expired")
NO_CERT = scenario("urban, no land certificate")
TEMP_ONLY = scenario("urban, temporary construction planning permit only")
BUILDING = scenario("urban, under construction")
FLAGGED = scenario("urban, stop order")
REPORTED = scenario("urban, reported lead")
CLOSED = scenario("urban, closed case")
USE_CHANGED = scenario("urban, property certificate names another use")
NOT_YET = scenario("urban, land use planning permit not yet issued")
VILLAGE_OK = scenario("village, rural construction planning permit in force")
VILLAGE_MISSING = scenario("village, no rural construction planning permit")
UNKNOWN = "110999-9999-9999"


def premises(sid: str, office: int, declared_use: str) -> pb.PremisesCheck:
    """A premises check; a notifying office names its application (one notice per application)."""
    application_id = f"L-{sid}" if office in NOTIFYING_OFFICES else ""
    return gate_helpers.premises(sid, office, declared_use, application_id=application_id)


# Hand-written structures for combinations of rules.
MULTI = "X-multi"  # no land certificate, CP revoked then a later CP suspended, two cases
TEMP_PENDING = "X-temp-pending"  # only a temporary planning permit, and a reported lead
TEMP_EXPIRY = "X-temp-expiry"  # CP expiring in 50 days, construction works without expiry
VILLAGE_WORKS = "X-village-works"  # rural planning permit and construction works, no expiry
VILLAGE_NO_WORKS = "X-village-no-works"
EXPIRED_TCP = "X-expired-tcp"  # the temporary planning permit has expired
NO_PO = "X-no-po"  # planning permit names "retail"; no property certificate
PO_NO_USE = "X-po-no-use"  # the property certificate names no use; the planning permit does
NO_USE = "X-no-use"  # no permit names a use
POST_REG = "X-post-reg"  # registered, then a rectify order for later construction
DISMISSED = "X-dismissed"  # a dismissed case no longer blocks

CP_EXPIRES = day(50, NOW)
TCP_EXPIRES = day(100, NOW)
COMBOS: list[dict[str, Any]] = [
    structure(MULTI),
    permit("P-multi-lup", MULTI, "land_use_planning"),
    permit("P-multi-cp1", MULTI, "construction_planning", "revoked", issued=day(-500, NOW)),
    permit("P-multi-cp2", MULTI, "construction_planning", "suspended", issued=day(-300, NOW)),
    case("C-multi-1", MULTI, "stop_order"),
    case("C-multi-2", MULTI, "reported"),
    structure(TEMP_PENDING),
    permit("P-tp-lup", TEMP_PENDING, "land_use_planning"),
    permit("P-tp-lc", TEMP_PENDING, "land_certificate"),
    permit("P-tp-tcp", TEMP_PENDING, "temporary_construction_planning", expires=TCP_EXPIRES),
    case("C-tp-1", TEMP_PENDING, "reported", kind="unauthorized_use_change"),
    structure(TEMP_EXPIRY),
    permit("P-te-lup", TEMP_EXPIRY, "land_use_planning"),
    permit("P-te-lc", TEMP_EXPIRY, "land_certificate"),
    permit("P-te-cp", TEMP_EXPIRY, "construction_planning", expires=CP_EXPIRES),
    permit("P-te-cw", TEMP_EXPIRY, "construction_works"),
    structure(VILLAGE_WORKS, "village"),
    permit("P-vw-rcp", VILLAGE_WORKS, "rural_construction_planning"),
    permit("P-vw-cw", VILLAGE_WORKS, "construction_works"),
    structure(VILLAGE_NO_WORKS, "village"),
    permit("P-vn-rcp", VILLAGE_NO_WORKS, "rural_construction_planning"),
    structure(EXPIRED_TCP),
    permit("P-et-lup", EXPIRED_TCP, "land_use_planning"),
    permit("P-et-lc", EXPIRED_TCP, "land_certificate"),
    permit(
        "P-et-tcp",
        EXPIRED_TCP,
        "temporary_construction_planning",
        issued=day(-200, NOW),
        expires=day(-1, NOW),
    ),
    structure(NO_PO),
    permit("P-np-lup", NO_PO, "land_use_planning"),
    permit("P-np-lc", NO_PO, "land_certificate"),
    permit("P-np-cp", NO_PO, "construction_planning", use="retail"),
    structure(PO_NO_USE),
    permit("P-pn-lup", PO_NO_USE, "land_use_planning"),
    permit("P-pn-lc", PO_NO_USE, "land_certificate"),
    permit("P-pn-cp", PO_NO_USE, "construction_planning", use="residential"),
    permit("P-pn-po", PO_NO_USE, "property_ownership"),
    structure(NO_USE),
    permit("P-nu-cp", NO_USE, "construction_planning"),
    *urban_ok(POST_REG),
    case("C-pr-1", POST_REG, "rectify_order", kind="post_registration_construction"),
    *urban_ok(DISMISSED),
    case("C-dm-1", DISMISSED, "dismissed", kind="illegal_land_use"),
]

W, P, G, H = pb.UTILITY_WATER, pb.UTILITY_POWER, pb.UTILITY_GAS, pb.UTILITY_HEAT
TEMPORARY = pb.CONNECTION_KIND_TEMPORARY
INITIAL, TRANSFER, MORTGAGE = (
    pb.REGISTRATION_KIND_INITIAL,
    pb.REGISTRATION_KIND_TRANSFER,
    pb.REGISTRATION_KIND_MORTGAGE,
)
FIRE, CIVIL, ENV = pb.OFFICE_FIRE, pb.OFFICE_CIVIL_DEFENSE, pb.OFFICE_ENVIRONMENT
MARKET, CULTURE, HEALTH, TAX = (
    pb.OFFICE_MARKET_REGULATION,
    pb.OFFICE_CULTURE,
    pb.OFFICE_HEALTH,
    pb.OFFICE_TAX,
)
LUP, LC, CP, TCP = (
    "land_use_planning",
    "land_certificate",
    "construction_planning",
    "temporary_construction_planning",
)
RCP, CW, PO = "rural_construction_planning", "construction_works", "property_ownership"


def at(days: int) -> datetime:
    """A whole-second time ``days`` from now, for requested ends."""
    return (NOW + timedelta(days=days)).replace(microsecond=0)


def why(code: str, article: int, kind: str | None = None, case_id: str | None = None) -> Why:
    return (code, kind, case_id, article)


@dataclass(frozen=True)
class Expect:
    id: str
    check: AnyCheck
    verdict: str
    reasons: tuple[Why, ...] = ()
    valid_until: str | None = None  # RFC 3339, for ALLOW_TEMPORARY


def c23(code: str, kind: str | None = None, case_id: str | None = None) -> Why:
    return why(code, 23, kind, case_id)


def r11(code: str, kind: str | None = None, case_id: str | None = None) -> Why:
    return why(code, 11, kind, case_id)


def p13(code: str, kind: str | None = None, case_id: str | None = None) -> Why:
    return why(code, 13, kind, case_id)


CONNECTIONS = [
    Expect("all-permits", connection(OK), "ALLOW"),
    Expect("all-permits-heat", connection(OK, H), "ALLOW"),
    Expect("revoked", connection(REVOKED, P), "DENY", (c23("PERMIT_REVOKED", CP),)),
    Expect("suspended", connection(SUSPENDED, G), "DENY", (c23("PERMIT_SUSPENDED", CP),)),
    Expect("expired", connection(EXPIRED), "DENY", (c23("PERMIT_EXPIRED", CP),)),
    Expect("no-land-certificate", connection(NO_CERT), "DENY", (c23("MISSING_PERMIT", LC),)),
    Expect(
        "temporary-permit-only",
        connection(TEMP_ONLY),
        "ALLOW_TEMPORARY",
        (c23("TEMPORARY_ONLY", TCP),),
        demo_expiry(TEMP_ONLY, TCP),
    ),
    Expect("under-construction", connection(BUILDING), "ALLOW"),
    Expect(
        "flagged",
        connection(FLAGGED),
        "DENY",
        (c23("STRUCTURE_FLAGGED", case_id=demo_case(FLAGGED)),),
    ),
    Expect(
        "reported",
        connection(REPORTED),
        "REVIEW",
        (c23("CASE_PENDING", case_id=demo_case(REPORTED)),),
    ),
    Expect("closed-case", connection(CLOSED), "ALLOW"),
    Expect("dismissed-case", connection(DISMISSED), "ALLOW"),
    Expect("use-not-compared", connection(USE_CHANGED), "ALLOW"),
    Expect("not-yet-issued", connection(NOT_YET), "DENY", (c23("MISSING_PERMIT", LUP),)),
    Expect("village", connection(VILLAGE_OK), "ALLOW"),
    Expect("village-missing", connection(VILLAGE_MISSING), "DENY", (c23("MISSING_PERMIT", RCP),)),
    Expect("unknown", connection(UNKNOWN), "DENY", (c23("NOT_IN_REGISTRY"),)),
    Expect(
        "every-reason",
        connection(MULTI),
        "DENY",
        (
            c23("STRUCTURE_FLAGGED", case_id="C-multi-1"),
            c23("MISSING_PERMIT", LC),
            c23("PERMIT_SUSPENDED", CP),  # the later-issued CP decides the reason
        ),
    ),
    Expect(
        "temporary-only-and-pending",
        connection(TEMP_PENDING),
        "REVIEW",
        (c23("CASE_PENDING", case_id="C-tp-1"), c23("TEMPORARY_ONLY", TCP)),
    ),
    Expect(
        "temporary-permit-expired", connection(EXPIRED_TCP), "DENY", (c23("MISSING_PERMIT", CP),)
    ),
    # construction-period supply
    Expect(
        "temporary-requested-end",
        connection(BUILDING, W, TEMPORARY, requested_until=at(90)),
        "ALLOW_TEMPORARY",
        valid_until=format_time(at(90)),
    ),
    Expect(
        "temporary-works-permit-expiry",
        connection(BUILDING, P, TEMPORARY),
        "ALLOW_TEMPORARY",
        valid_until=demo_expiry(BUILDING, CW),
    ),
    Expect(
        "temporary-planning-expiry",
        connection(TEMP_EXPIRY, G, TEMPORARY, requested_until=at(200)),
        "ALLOW_TEMPORARY",
        valid_until=CP_EXPIRES,
    ),
    Expect(
        "temporary-requested-before-expiry",
        connection(TEMP_EXPIRY, H, TEMPORARY, requested_until=at(20)),
        "ALLOW_TEMPORARY",
        valid_until=format_time(at(20)),
    ),
    Expect(
        "temporary-village",
        connection(VILLAGE_WORKS, W, TEMPORARY, requested_until=at(30)),
        "ALLOW_TEMPORARY",
        valid_until=format_time(at(30)),
    ),
    Expect(
        "temporary-on-temporary-permit",
        connection(TEMP_ONLY, W, TEMPORARY),
        "DENY",
        (c23("MISSING_PERMIT", CW),),
    ),
    Expect(
        "temporary-no-works", connection(OK, W, TEMPORARY), "DENY", (c23("MISSING_PERMIT", CW),)
    ),
    Expect(
        "temporary-village-no-works",
        connection(VILLAGE_NO_WORKS, W, TEMPORARY),
        "DENY",
        (c23("MISSING_PERMIT", CW),),
    ),
    Expect(
        "temporary-village-nothing",
        connection(VILLAGE_MISSING, W, TEMPORARY),
        "DENY",
        (c23("MISSING_PERMIT", RCP), c23("MISSING_PERMIT", CW)),
    ),
    Expect(
        "temporary-flagged",
        connection(FLAGGED, W, TEMPORARY),
        "DENY",
        (c23("STRUCTURE_FLAGGED", case_id=demo_case(FLAGGED)), c23("MISSING_PERMIT", CW)),
    ),
    Expect(
        "temporary-unknown", connection(UNKNOWN, W, TEMPORARY), "DENY", (c23("NOT_IN_REGISTRY"),)
    ),
]

REGISTRATIONS = [
    Expect("initial", registration(OK, INITIAL), "ALLOW"),
    Expect("transfer", registration(OK, TRANSFER), "ALLOW"),
    Expect("mortgage", registration(OK, MORTGAGE), "ALLOW"),
    Expect("initial-revoked", registration(REVOKED), "DENY", (r11("PERMIT_REVOKED", CP),)),
    Expect(
        "transfer-unregistered",
        registration(REVOKED, TRANSFER),
        "DENY",
        (r11("MISSING_PERMIT", PO),),
    ),
    Expect(
        "initial-temporary-permit-does-not-count",
        registration(TEMP_ONLY),
        "DENY",
        (r11("MISSING_PERMIT", CP),),
    ),
    Expect("initial-no-certificate", registration(NO_CERT), "DENY", (r11("MISSING_PERMIT", LC),)),
    Expect("initial-needs-no-land-use-permit", registration(NOT_YET), "ALLOW"),
    Expect("initial-village", registration(VILLAGE_OK), "ALLOW"),
    Expect(
        "initial-village-missing",
        registration(VILLAGE_MISSING),
        "DENY",
        (r11("MISSING_PERMIT", RCP),),
    ),
    Expect("transfer-village-registered", registration(VILLAGE_MISSING, TRANSFER), "ALLOW"),
    Expect(
        "transfer-after-later-construction",
        registration(POST_REG, TRANSFER),
        "DENY",
        (r11("STRUCTURE_FLAGGED", case_id="C-pr-1"),),
    ),
    Expect(
        "mortgage-after-later-construction",
        registration(POST_REG, MORTGAGE),
        "DENY",
        (r11("STRUCTURE_FLAGGED", case_id="C-pr-1"),),
    ),
    Expect(
        "initial-reported",
        registration(REPORTED),
        "REVIEW",
        (r11("CASE_PENDING", case_id=demo_case(REPORTED)),),
    ),
    Expect("mortgage-unknown", registration(UNKNOWN, MORTGAGE), "DENY", (r11("NOT_IN_REGISTRY"),)),
]

PREMISES = [
    Expect("fire-match", premises(OK, FIRE, "residential"), "ALLOW"),
    Expect("fire-match-case-and-space", premises(OK, FIRE, "  Residential \t"), "ALLOW"),
    Expect(
        "civil-defense-mismatch",
        premises(OK, CIVIL, "office"),
        "DENY",
        (p13("USE_MISMATCH", CP), p13("USE_MISMATCH", PO)),
    ),
    Expect(
        "market-mismatch-notifies",
        premises(OK, MARKET, "office"),
        "NOTIFY",
        (p13("USE_MISMATCH", CP), p13("USE_MISMATCH", PO)),
    ),
    Expect("tax-match", premises(OK, TAX, "residential"), "ALLOW"),
    Expect(
        "certificate-use-differs",
        premises(USE_CHANGED, ENV, "residential"),
        "DENY",
        (p13("USE_MISMATCH", PO),),
    ),
    Expect(
        "certificate-matches-planning-permit-differs",
        premises(USE_CHANGED, HEALTH, "Warehouse"),
        "NOTIFY",
        (p13("USE_MISMATCH", CP),),
    ),
    Expect(
        "fire-revoked", premises(REVOKED, FIRE, "residential"), "DENY", (p13("PERMIT_REVOKED", CP),)
    ),
    Expect(
        "tax-revoked-unregistered",
        premises(REVOKED, TAX, "residential"),
        "NOTIFY",
        (p13("PERMIT_REVOKED", CP), p13("MISSING_PERMIT", PO)),
    ),
    Expect(
        "fire-expired", premises(EXPIRED, FIRE, "residential"), "DENY", (p13("PERMIT_EXPIRED", CP),)
    ),
    Expect("fire-temporary-permit-use", premises(TEMP_ONLY, FIRE, "office"), "ALLOW"),
    Expect(
        "fire-temporary-permit-mismatch",
        premises(TEMP_ONLY, FIRE, "residential"),
        "DENY",
        (p13("USE_MISMATCH", TCP),),
    ),
    Expect(
        "culture-flagged",
        premises(FLAGGED, CULTURE, "residential"),
        "NOTIFY",
        (p13("STRUCTURE_FLAGGED", case_id=demo_case(FLAGGED)),),
    ),
    Expect(
        "fire-flagged",
        premises(FLAGGED, FIRE, "residential"),
        "DENY",
        (p13("STRUCTURE_FLAGGED", case_id=demo_case(FLAGGED)),),
    ),
    Expect(
        "market-reported",
        premises(REPORTED, MARKET, "residential"),
        "NOTIFY",
        (p13("CASE_PENDING", case_id=demo_case(REPORTED)),),
    ),
    Expect(
        "environment-reported",
        premises(REPORTED, ENV, "residential"),
        "REVIEW",
        (p13("CASE_PENDING", case_id=demo_case(REPORTED)),),
    ),
    Expect("fire-closed-case", premises(CLOSED, FIRE, "residential"), "ALLOW"),
    Expect(
        "fire-village-missing",
        premises(VILLAGE_MISSING, FIRE, "residential"),
        "DENY",
        (p13("MISSING_PERMIT", RCP),),
    ),
    Expect("fire-village", premises(VILLAGE_OK, FIRE, "residential"), "ALLOW"),
    Expect("fire-needs-no-land-use-permit", premises(NOT_YET, FIRE, "residential"), "ALLOW"),
    Expect(
        "tax-no-certificate-and-mismatch",
        premises(NO_PO, TAX, "office"),
        "NOTIFY",
        (p13("MISSING_PERMIT", PO), p13("USE_MISMATCH", CP)),
    ),
    Expect(
        "fire-planning-use-mismatch",
        premises(NO_PO, FIRE, "office"),
        "DENY",
        (p13("USE_MISMATCH", CP),),
    ),
    Expect("fire-planning-use-match", premises(NO_PO, FIRE, " RETAIL "), "ALLOW"),
    Expect(
        "fire-certificate-without-use",
        premises(PO_NO_USE, FIRE, "office"),
        "DENY",
        (p13("USE_MISMATCH", CP),),
    ),
    Expect("fire-certificate-without-use-match", premises(PO_NO_USE, FIRE, "residential"), "ALLOW"),
    Expect("fire-no-use-named", premises(NO_USE, FIRE, "anything at all"), "ALLOW"),
    Expect(
        "health-no-use-named",
        premises(NO_USE, HEALTH, "anything at all"),
        "NOTIFY",
        (p13("MISSING_PERMIT", PO),),
    ),
    Expect(
        "fire-unknown", premises(UNKNOWN, FIRE, "residential"), "DENY", (p13("NOT_IN_REGISTRY"),)
    ),
    Expect(
        "tax-unknown-notifies",
        premises(UNKNOWN, TAX, "residential"),
        "NOTIFY",
        (p13("NOT_IN_REGISTRY"),),
    ),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    # Signed now, not at NOW (when the module was collected): a long run reaches this module
    # more than --max-staleness after collection, and the gate would rightly call it stale.
    with served_registry(tmp_path_factory.mktemp("answers"), DEMO, COMBOS) as served:
        yield served


@pytest.fixture(scope="module")
def wire(served: tuple[GateRegistry, RunningGate]) -> Iterator[Wire]:
    with Wire(served[1].target) as w:
        yield w


def _check(wire: Wire, registry: GateRegistry, expect: Expect) -> None:
    decision = wire.ask(expect.check)
    assert (verdict(decision), reasons(decision)) == (
        expect.verdict,
        sorted(expect.reasons, key=lambda w: (w[0], w[1] or "", w[2] or "", w[3])),
    )
    if expect.valid_until is None:
        assert not decision.HasField("valid_until")
    else:
        assert decision.HasField("valid_until"), "ALLOW_TEMPORARY without valid_until"
        assert decision.valid_until.ToDatetime(tzinfo=UTC) == parse_time(expect.valid_until)
    assert bool(decision.notification_id) == (expect.verdict == "NOTIFY")
    assert decision.registry_version == registry.version()
    assert decision.decision_id
    assert decision.HasField("decided_at")
    assert all(r.message for r in decision.reasons), "every reason says why in plain words"


@pytest.mark.parametrize("expect", CONNECTIONS, ids=[e.id for e in CONNECTIONS])
def test_connection_answers(
    served: tuple[GateRegistry, RunningGate], wire: Wire, expect: Expect
) -> None:
    _check(wire, served[0], expect)


@pytest.mark.parametrize("expect", REGISTRATIONS, ids=[e.id for e in REGISTRATIONS])
def test_registration_answers(
    served: tuple[GateRegistry, RunningGate], wire: Wire, expect: Expect
) -> None:
    _check(wire, served[0], expect)


@pytest.mark.parametrize("expect", PREMISES, ids=[e.id for e in PREMISES])
def test_premises_answers(
    served: tuple[GateRegistry, RunningGate], wire: Wire, expect: Expect
) -> None:
    _check(wire, served[0], expect)


def test_every_demo_scenario_is_checked() -> None:
    """Each demo scenario's structure appears in the tables above (none is left untested)."""
    checked = {e.check.structure_id for e in CONNECTIONS + REGISTRATIONS + PREMISES}
    assert {structure_id(i) for i in range(len(SCENARIOS))} <= checked


def test_temporary_connection_is_capped_at_365_days(wire: Wire) -> None:
    """No requested end and no permit expiry: the answer runs exactly 365 days from the decision."""
    decision = wire.ask(connection(VILLAGE_WORKS, W, TEMPORARY, requested_until=at(500)))
    assert verdict(decision) == "ALLOW_TEMPORARY"
    decided = decision.decided_at.ToDatetime(tzinfo=UTC)
    assert decision.valid_until.ToDatetime(tzinfo=UTC) == decided + timedelta(days=365)


def test_unknown_structure_has_no_other_reason(wire: Wire) -> None:
    """NOT_IN_REGISTRY alone, for every kind of check (and no notification for a blocking one)."""
    for check in (
        connection(UNKNOWN, G),
        registration(UNKNOWN, TRANSFER),
        premises(UNKNOWN, CIVIL, "office"),
    ):
        decision = wire.ask(check)
        assert [r[0] for r in reasons(decision)] == ["NOT_IN_REGISTRY"]
        assert verdict(decision) == "DENY"
        assert not decision.notification_id
