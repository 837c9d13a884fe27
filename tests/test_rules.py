"""DOMAIN.md's decision rules, row by row, against ``server/rules.py``.

Each table reads like the brief: a structure's permits and cases at ``NOW`` in, the verdict, the
reasons as ``(code, permit kind or case id)`` in order, and the end of a temporary answer out.
The ``CHECKS`` table runs the rules common to every check (unknown structure, cases, staleness,
every permit state) over every check DOMAIN.md names; later tables take one article at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.records import Case, Permit, StatusRecord, Structure
from registry.vocabulary import (
    BLOCKING_OFFICES,
    BLOCKING_STAGES,
    NOTIFYING_OFFICES,
    Area,
    CaseKind,
    CaseSource,
    CaseStage,
    ConnectionKind,
    Office,
    PermitKind,
    PermitStatus,
    RegistrationKind,
    Utility,
)
from server.rules import (
    Decision,
    Reason,
    ReasonCode,
    Verdict,
    decide_connection,
    decide_premises,
    decide_registration,
    decide_unverified,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
YEAR = NOW + 365 * DAY  # the longest a temporary connection may run
SID = "S-1"

URBAN, VILLAGE = Area.URBAN, Area.VILLAGE
LUP = PermitKind.LAND_USE_PLANNING
LC = PermitKind.LAND_CERTIFICATE
CP = PermitKind.CONSTRUCTION_PLANNING
TCP = PermitKind.TEMPORARY_CONSTRUCTION_PLANNING
RCP = PermitKind.RURAL_CONSTRUCTION_PLANNING
CW = PermitKind.CONSTRUCTION_WORKS
PO = PermitKind.PROPERTY_OWNERSHIP

ALLOW, ALLOW_TEMPORARY = Verdict.ALLOW, Verdict.ALLOW_TEMPORARY
NOTIFY, REVIEW, DENY = Verdict.NOTIFY, Verdict.REVIEW, Verdict.DENY

NOT_IN_REGISTRY = ReasonCode.NOT_IN_REGISTRY
MISSING = ReasonCode.MISSING_PERMIT
EXPIRED = ReasonCode.PERMIT_EXPIRED
SUSPENDED = ReasonCode.PERMIT_SUSPENDED
REVOKED = ReasonCode.PERMIT_REVOKED
FLAGGED = ReasonCode.STRUCTURE_FLAGGED
PENDING = ReasonCode.CASE_PENDING
MISMATCH = ReasonCode.USE_MISMATCH
TEMPORARY_ONLY = ReasonCode.TEMPORARY_ONLY
STALE = ReasonCode.REGISTRY_STALE
UNVERIFIED = ReasonCode.RECORD_UNVERIFIED

Summary = list[tuple[ReasonCode, str | None]]


# --- Factories -----------------------------------------------------------------------------------


def days(n: float) -> datetime:
    return NOW + n * DAY


def permit(
    kind: PermitKind,
    status: str = "valid",
    *,
    pid: str | None = None,
    issued: float = -100,
    expires: float | None = None,
    use: str | None = None,
) -> Permit:
    """A permit of ``kind``; ``issued`` and ``expires`` are days from NOW."""
    if kind is TCP and expires is None:
        expires = 400  # a temporary planning permit always expires
    return Permit(
        pid or f"{kind}-1",
        SID,
        kind,
        PermitStatus(status),
        days(issued),
        None if expires is None else days(expires),
        use,
    )


def case(stage: CaseStage | str, cid: str = "C-1") -> Case:
    return Case(
        cid,
        SID,
        CaseKind.NO_PLANNING_PERMIT,
        CaseStage(stage),
        CaseSource.PATROL,
        days(-30),
    )


def record(
    area: Area = URBAN, permits: Sequence[Permit] = (), cases: Sequence[Case] = ()
) -> StatusRecord:
    return StatusRecord(
        structure=Structure(SID, area, "Miyun"),
        permits=tuple(permits),
        cases=tuple(cases),
        tree_size=1,
        this_update=NOW - timedelta(minutes=5),
        next_update=NOW + timedelta(minutes=55),
    )


def in_force(*kinds: PermitKind) -> list[Permit]:
    return [permit(k) for k in kinds]


def summary(decision: Decision) -> Summary:
    """The reasons as (code, the case id or permit kind they name), in order."""
    return [
        (r.code, r.case_id if r.case_id is not None else r.permit_kind) for r in decision.reasons
    ]


def articles(decision: Decision) -> set[int]:
    return {r.article for r in decision.reasons}


# --- Every check DOMAIN.md names -----------------------------------------------------------------

Runner = Callable[[StatusRecord | None, bool], Decision]


@dataclass(frozen=True)
class Check:
    name: str
    area: Area
    needs: tuple[PermitKind, ...]  # required kinds in DOMAIN.md's order (planning: its named kind)
    article: int
    run: Runner
    notifying: bool = False
    temporary: bool = False  # a temporary connection: at best ALLOW_TEMPORARY
    stand_in: frozenset[PermitKind] = frozenset()  # kinds that also meet (or soften) a need

    @property
    def ok(self) -> Verdict:
        return ALLOW_TEMPORARY if self.temporary else ALLOW

    @property
    def ok_until(self) -> datetime | None:
        return YEAR if self.temporary else None

    @property
    def finding(self) -> Verdict:
        """What a missing permit, a blocking case or an unknown structure calls for."""
        return NOTIFY if self.notifying else DENY

    @property
    def pending(self) -> Verdict:
        """What a ``reported`` case calls for."""
        return NOTIFY if self.notifying else REVIEW

    def __str__(self) -> str:
        return self.name


def connection(kind: ConnectionKind, utility: Utility = Utility.WATER) -> Runner:
    def run(status: StatusRecord | None, stale: bool) -> Decision:
        return decide_connection(status, utility=utility, kind=kind, now=NOW, stale=stale)

    return run


def registration(kind: RegistrationKind) -> Runner:
    def run(status: StatusRecord | None, stale: bool) -> Decision:
        return decide_registration(status, kind=kind, now=NOW, stale=stale)

    return run


def premises(office: Office, declared_use: str = "shop") -> Runner:
    def run(status: StatusRecord | None, stale: bool) -> Decision:
        return decide_premises(
            status, office=office, declared_use=declared_use, now=NOW, stale=stale
        )

    return run


PERMANENT, TEMPORARY = ConnectionKind.PERMANENT, ConnectionKind.TEMPORARY
INITIAL, TRANSFER, MORTGAGE = (
    RegistrationKind.INITIAL,
    RegistrationKind.TRANSFER,
    RegistrationKind.MORTGAGE,
)
OFFICES = sorted(Office)

TCP_STANDS_IN = frozenset({TCP})
CHECKS: list[Check] = [
    # Art. 23
    Check("connection permanent urban", URBAN, (LUP, LC, CP), 23, connection(PERMANENT),
          stand_in=TCP_STANDS_IN),
    Check("connection permanent village", VILLAGE, (RCP,), 23, connection(PERMANENT)),
    Check("connection temporary urban", URBAN, (CP, CW), 23, connection(TEMPORARY),
          temporary=True, stand_in=TCP_STANDS_IN),
    Check("connection temporary village", VILLAGE, (RCP, CW), 23, connection(TEMPORARY),
          temporary=True),
    # Art. 11
    Check("registration initial urban", URBAN, (LC, CP), 11, registration(INITIAL)),
    Check("registration initial village", VILLAGE, (RCP,), 11, registration(INITIAL)),
    Check("registration transfer urban", URBAN, (PO,), 11, registration(TRANSFER)),
    Check("registration transfer village", VILLAGE, (PO,), 11, registration(TRANSFER)),
    Check("registration mortgage urban", URBAN, (PO,), 11, registration(MORTGAGE)),
    Check("registration mortgage village", VILLAGE, (PO,), 11, registration(MORTGAGE)),
    # Art. 13
    *(Check(f"premises {office} urban", URBAN, (CP,), 13, premises(office),
            stand_in=TCP_STANDS_IN)
      for office in sorted(BLOCKING_OFFICES)),
    *(Check(f"premises {office} village", VILLAGE, (RCP,), 13, premises(office))
      for office in sorted(BLOCKING_OFFICES)),
    *(Check(f"premises {office} urban", URBAN, (CP, PO), 13, premises(office),
            notifying=True, stand_in=TCP_STANDS_IN)
      for office in sorted(NOTIFYING_OFFICES)),
    *(Check(f"premises {office} village", VILLAGE, (RCP, PO), 13, premises(office),
            notifying=True)
      for office in sorted(NOTIFYING_OFFICES)),
]  # fmt: skip
by_check = pytest.mark.parametrize("check", CHECKS, ids=str)


def test_the_check_table_covers_every_office_and_kind() -> None:
    names = {c.name for c in CHECKS}
    for office in Office:
        for area in Area:
            assert f"premises {office} {area}" in names
    assert len(CHECKS) == 10 + 2 * len(Office)


def ready(check: Check) -> StatusRecord:
    """A structure of the check's area holding every permit it needs, in force."""
    return record(check.area, in_force(*check.needs))


# --- Common to every check -----------------------------------------------------------------------


@by_check
def test_everything_in_force_allows(check: Check) -> None:
    decision = check.run(ready(check), False)
    assert decision == Decision(check.ok, (), check.ok_until)


@by_check
def test_unknown_structure_gives_not_in_registry_and_nothing_else(check: Check) -> None:
    decision = check.run(None, False)
    assert decision.verdict is check.finding
    assert summary(decision) == [(NOT_IN_REGISTRY, None)]
    assert articles(decision) == {check.article}
    assert decision.valid_until is None


@by_check
def test_unknown_structure_on_stale_data_is_only_stale(check: Check) -> None:
    """Readings settled: on data that is stale (or was never loaded) the gate cannot tell whether
    the structure was added since, so it does not claim NOT_IN_REGISTRY: REVIEW with
    REGISTRY_STALE alone, for notifying offices as well (no notice either)."""
    decision = check.run(None, True)
    assert decision.verdict is REVIEW
    assert summary(decision) == [(STALE, None)]
    assert articles(decision) == {check.article}
    assert decision.valid_until is None


@by_check
def test_unverified_record_is_review_with_record_unverified_only(check: Check) -> None:
    """Readings settled: a structure whose newest record the gate cannot verify answers REVIEW
    with RECORD_UNVERIFIED alone: not REGISTRY_STALE, not NOT_IN_REGISTRY, nothing from an
    older record; the same for every check, notifying offices included."""
    decision = decide_unverified(check.article)
    assert decision.verdict is REVIEW
    assert summary(decision) == [(UNVERIFIED, None)]
    assert articles(decision) == {check.article}
    assert decision.valid_until is None


# Whether the gate holds the structure and whether its data is fresh, against what the rules say.
# (Records the gate cannot verify are answered by decide_unverified, above, whatever the data.)
DATA_ROWS = [
    # held?, stale?, the verdict (strict check, notifying office), the reasons
    pytest.param(False, False, (DENY, NOTIFY), [(NOT_IN_REGISTRY, None)], id="unknown, fresh"),
    pytest.param(False, True, (REVIEW, REVIEW), [(STALE, None)], id="unknown, stale"),
    pytest.param(True, False, (None, None), [], id="held, fresh"),
    pytest.param(True, True, (REVIEW, REVIEW), [(STALE, None)], id="held, stale"),
]


@by_check
@pytest.mark.parametrize(("held", "stale", "verdicts", "expected"), DATA_ROWS)
def test_held_or_not_fresh_or_not(
    check: Check,
    held: bool,
    stale: bool,
    verdicts: tuple[Verdict | None, Verdict | None],
    expected: Summary,
) -> None:
    decision = check.run(ready(check) if held else None, stale)
    verdict = verdicts[1] if check.notifying else verdicts[0]
    assert decision.verdict is (check.ok if verdict is None else verdict)
    assert summary(decision) == expected
    assert decision.verdict is not ALLOW or not stale  # never an ALLOW on stale data


BLOCKING = sorted(BLOCKING_STAGES)
NO_LONGER_BLOCKING = [
    CaseStage.RECTIFIED,
    CaseStage.DEMOLISHED,
    CaseStage.CLOSED,
    CaseStage.DISMISSED,
]


def test_stage_lists_match_domain() -> None:
    assert set(BLOCKING) == {"filed", "stop_order", "rectify_order", "demolition_order"}
    assert set(BLOCKING) | set(NO_LONGER_BLOCKING) | {CaseStage.REPORTED} == set(CaseStage)


@by_check
@pytest.mark.parametrize("stage", list(CaseStage), ids=str)
def test_one_case_in_each_stage(check: Check, stage: CaseStage) -> None:
    decision = check.run(record(check.area, in_force(*check.needs), [case(stage)]), False)
    if stage in BLOCKING_STAGES:  # "A blocking case: DENY + STRUCTURE_FLAGGED naming the case"
        expected, reasons = check.finding, [(FLAGGED, "C-1")]
    elif stage is CaseStage.REPORTED:  # "A reported case only: REVIEW + CASE_PENDING"
        expected, reasons = check.pending, [(PENDING, "C-1")]
    else:  # rectified, demolished, closed, dismissed no longer block
        expected, reasons = check.ok, []
    assert decision.verdict is expected
    assert summary(decision) == reasons
    assert articles(decision) <= {check.article}
    assert decision.valid_until == (check.ok_until if expected is check.ok else None)


S = CaseStage
CASE_ROWS = [
    # stages of the structure's cases, in record order -> the case reasons, in order
    pytest.param([S.FILED, S.STOP_ORDER], [(FLAGGED, "C-1"), (FLAGGED, "C-2")],
                 id="two blocking cases: one reason each"),
    pytest.param([S.RECTIFY_ORDER, S.REPORTED], [(FLAGGED, "C-1")],
                 id="blocking + reported: the reported case adds nothing"),
    pytest.param([S.REPORTED, S.DEMOLITION_ORDER], [(FLAGGED, "C-2")],
                 id="reported + blocking, either order"),
    pytest.param([S.REPORTED, S.REPORTED], [(PENDING, "C-1"), (PENDING, "C-2")],
                 id="two reported cases: one reason each"),
    pytest.param([S.CLOSED, S.REPORTED], [(PENDING, "C-2")],
                 id="closed + reported: pending"),
    pytest.param([S.DISMISSED, S.RECTIFIED, S.DEMOLISHED, S.CLOSED], [],
                 id="only finished cases: nothing"),
    pytest.param([S.CLOSED, S.STOP_ORDER, S.REPORTED, S.FILED],
                 [(FLAGGED, "C-2"), (FLAGGED, "C-4")],
                 id="mixed: only the blocking ones, in record order"),
    pytest.param([S.DEMOLITION_ORDER, S.FILED], [(FLAGGED, "C-1"), (FLAGGED, "C-2")],
                 id="record order kept"),
]  # fmt: skip


@by_check
@pytest.mark.parametrize(("stages", "reasons"), CASE_ROWS)
def test_several_cases(check: Check, stages: list[CaseStage], reasons: Summary) -> None:
    cases = [case(stage, f"C-{i}") for i, stage in enumerate(stages, start=1)]
    decision = check.run(record(check.area, in_force(*check.needs), cases), False)
    codes = {code for code, _ in reasons}
    expected = check.finding if FLAGGED in codes else check.pending if codes else check.ok
    assert decision.verdict is expected
    assert summary(decision) == reasons
    assert articles(decision) <= {check.article}


# How one permit of a required kind can stand at NOW, and the code DOMAIN.md gives it.
# (status, issued, expires) in days from NOW; None as a permit means there is none.
STATES: dict[str, tuple[tuple[str, float, float | None] | None, ReasonCode | None]] = {
    "in force": (("valid", -100, None), None),
    "in force, issued just now": (("valid", 0, None), None),
    "in force, expires tomorrow": (("valid", -100, 1), None),
    "none": (None, MISSING),
    "revoked": (("revoked", -100, None), REVOKED),
    "suspended": (("suspended", -100, None), SUSPENDED),
    "expired": (("valid", -100, -1), EXPIRED),
    "expires just now": (("valid", -100, 0), EXPIRED),
    "not yet issued": (("valid", 1, None), MISSING),
    "revoked and expired": (("revoked", -100, -1), REVOKED),
    "suspended and expired": (("suspended", -100, -1), SUSPENDED),
    "revoked, not yet issued": (("revoked", 1, None), REVOKED),
    "suspended, not yet issued": (("suspended", 1, None), SUSPENDED),
}
CORE_STATES = ["in force", "none", "revoked", "suspended", "expired", "not yet issued"]


def in_state(kind: PermitKind, state: str) -> list[Permit]:
    spec = STATES[state][0]
    if spec is None:
        return []
    status, issued, expires = spec
    return [permit(kind, status, issued=issued, expires=expires)]


def finding_for(check: Check, reasons: Summary) -> Verdict:
    return check.finding if reasons else check.ok


@by_check
@pytest.mark.parametrize("state", list(STATES), ids=str)
def test_each_required_kind_in_each_state(check: Check, state: str) -> None:
    for kind in check.needs:
        others = [k for k in check.needs if k is not kind]
        decision = check.run(
            record(check.area, [*in_force(*others), *in_state(kind, state)]), False
        )
        code = STATES[state][1]
        reasons: Summary = [] if code is None else [(code, kind)]
        assert (kind, summary(decision)) == (kind, reasons)
        assert decision.verdict is finding_for(check, reasons)
        assert articles(decision) <= {check.article}
        if decision.verdict is ALLOW_TEMPORARY:
            expires = STATES[state][0]
            assert expires is not None
            assert decision.valid_until == (YEAR if expires[2] is None else days(expires[2]))
        else:
            assert decision.valid_until is None


@by_check
def test_every_combination_of_states(check: Check) -> None:
    """All reasons are returned, one per kind not in force, in DOMAIN.md's order of kinds."""
    for states in itertools.product(CORE_STATES, repeat=len(check.needs)):
        permits = [p for kind, state in zip(check.needs, states, strict=True)
                   for p in in_state(kind, state)]  # fmt: skip
        decision = check.run(record(check.area, permits), False)
        reasons: Summary = [
            (code, kind)
            for kind, state in zip(check.needs, states, strict=True)
            if (code := STATES[state][1]) is not None
        ]
        assert (states, summary(decision)) == (states, reasons)
        assert decision.verdict is finding_for(check, reasons)
        assert articles(decision) <= {check.article}


@by_check
def test_permits_a_check_does_not_need_neither_help_nor_hurt(check: Check) -> None:
    others = [k for k in PermitKind if k not in check.needs and k not in check.stand_in]
    # the kinds it does not need, in every bad state, change nothing
    for state in CORE_STATES[1:]:
        extra = [p for kind in others for p in in_state(kind, state)]
        decision = check.run(record(check.area, [*in_force(*check.needs), *extra]), False)
        assert decision == Decision(check.ok, (), check.ok_until), state
    # and in force they stand in for nothing (e.g. a village permit on an urban structure)
    decision = check.run(record(check.area, in_force(*others)), False)
    assert summary(decision) == [(MISSING, kind) for kind in check.needs]
    assert decision.verdict is check.finding


# The permit of a kind with the latest `issued` decides the reason; ties go to the larger id.
# Permits: (id, status, issued, expires) in days from NOW.
LATEST_ROWS = [
    pytest.param([("A", "revoked", -200, None), ("B", "suspended", -100, None)], SUSPENDED,
                 id="revoked then suspended: suspended"),
    pytest.param([("A", "suspended", -200, None), ("B", "revoked", -100, None)], REVOKED,
                 id="suspended then revoked: revoked"),
    pytest.param([("A", "valid", -200, -150), ("B", "revoked", -100, None)], REVOKED,
                 id="expired then revoked: revoked"),
    pytest.param([("A", "revoked", -200, None), ("B", "valid", -100, -1)], EXPIRED,
                 id="revoked then expired: expired"),
    pytest.param([("A", "revoked", -200, None), ("B", "valid", 10, None)], MISSING,
                 id="revoked then one not yet issued: missing"),
    pytest.param([("A", "valid", -200, None), ("B", "revoked", -100, None)], None,
                 id="in force then revoked: still in force"),
    pytest.param([("A", "revoked", -200, None), ("B", "valid", -100, None)], None,
                 id="revoked then renewed: in force"),
    pytest.param([("A", "valid", -200, None), ("B", "valid", 10, None)], None,
                 id="in force, renewal not yet issued: in force"),
    pytest.param([("A", "revoked", -100, None), ("B", "suspended", -100, None)], SUSPENDED,
                 id="same issued: larger id wins (B suspended)"),
    pytest.param([("B", "suspended", -100, None), ("A", "revoked", -100, None)], SUSPENDED,
                 id="same issued, listed the other way round"),
    pytest.param([("B", "revoked", -100, None), ("A", "suspended", -100, None)], REVOKED,
                 id="same issued: larger id wins (B revoked)"),
    pytest.param([("B", "valid", -100, -1), ("A", "revoked", -200, None)], EXPIRED,
                 id="newest listed first"),
]  # fmt: skip


@by_check
@pytest.mark.parametrize(("rows", "code"), LATEST_ROWS)
def test_latest_issued_permit_decides_the_reason(
    check: Check, rows: list[tuple[str, str, float, float | None]], code: ReasonCode | None
) -> None:
    for kind in check.needs:
        others = [k for k in check.needs if k is not kind]
        mine = [permit(kind, s, pid=f"{kind}-{i}", issued=iss, expires=exp)
                for i, s, iss, exp in rows]  # fmt: skip
        decision = check.run(record(check.area, [*in_force(*others), *mine]), False)
        reasons: Summary = [] if code is None else [(code, kind)]
        assert (kind, summary(decision)) == (kind, reasons)
        assert decision.verdict is finding_for(check, reasons)


@by_check
def test_cases_come_before_permits_and_all_reasons_are_returned(check: Check) -> None:
    status = record(check.area, [], [case(S.STOP_ORDER, "C-9"), case(S.FILED, "C-1")])
    decision = check.run(status, False)
    assert summary(decision) == [
        (FLAGGED, "C-9"),
        (FLAGGED, "C-1"),
        *[(MISSING, kind) for kind in check.needs],
    ]
    assert decision.verdict is check.finding
    pending = check.run(record(check.area, [], [case(S.REPORTED)]), False)
    assert summary(pending) == [(PENDING, "C-1"), *[(MISSING, kind) for kind in check.needs]]
    assert pending.verdict is check.finding  # a missing permit outweighs a pending case


# Stale data: REGISTRY_STALE on top of whatever else applies; never an ALLOW.
STALE_ROWS = [
    # scenario -> (verdict for connection/registration/blocking office, for notifying office)
    pytest.param("everything in force", REVIEW, REVIEW, id="clean record"),
    pytest.param("a permit missing", DENY, REVIEW, id="missing permit"),
    pytest.param("a blocking case", DENY, REVIEW, id="blocking case"),
    pytest.param("a reported case", REVIEW, REVIEW, id="reported case"),
    pytest.param("a finished case", REVIEW, REVIEW, id="closed case"),
]


def stale_scenario(check: Check, scenario: str) -> tuple[StatusRecord, Summary]:
    needs = in_force(*check.needs)
    if scenario == "everything in force":
        return record(check.area, needs), []
    if scenario == "a permit missing":
        return record(check.area, needs[1:]), [(MISSING, check.needs[0])]
    if scenario == "a blocking case":
        return record(check.area, needs, [case(S.DEMOLITION_ORDER)]), [(FLAGGED, "C-1")]
    if scenario == "a reported case":
        return record(check.area, needs, [case(S.REPORTED)]), [(PENDING, "C-1")]
    return record(check.area, needs, [case(S.CLOSED)]), []


@by_check
@pytest.mark.parametrize(("scenario", "strict", "notifying"), STALE_ROWS)
def test_stale_data(check: Check, scenario: str, strict: Verdict, notifying: Verdict) -> None:
    status, others = stale_scenario(check, scenario)
    decision = check.run(status, True)
    assert decision.verdict is (notifying if check.notifying else strict)
    assert summary(decision) == [(STALE, None), *others]
    assert articles(decision) == {check.article}
    assert decision.valid_until is None
    fresh = check.run(status, False)
    assert summary(fresh) == others  # the same record, fresh: no REGISTRY_STALE


# --- Art. 23: connections ------------------------------------------------------------------------


@pytest.mark.parametrize("utility", list(Utility), ids=str)
@pytest.mark.parametrize("kind", list(ConnectionKind), ids=str)
@pytest.mark.parametrize("area", list(Area), ids=str)
def test_every_utility_follows_the_same_rules(
    utility: Utility, kind: ConnectionKind, area: Area
) -> None:
    statuses = [
        record(area),
        record(area, in_force(LUP, LC, CP, CW)),
        record(area, in_force(RCP, CW)),
        record(area, [permit(TCP, expires=30), *in_force(LUP, LC, CW)]),
        record(area, in_force(LUP, LC, CP, RCP, CW), [case(S.REPORTED)]),
        None,
    ]
    for status in statuses:
        for stale in (False, True):
            got = decide_connection(status, utility=utility, kind=kind, now=NOW, stale=stale)
            water = decide_connection(
                status, utility=Utility.WATER, kind=kind, now=NOW, stale=stale
            )
            assert got == water


def connect(
    permits: Sequence[Permit],
    kind: ConnectionKind = PERMANENT,
    area: Area = URBAN,
    *,
    requested_until: datetime | None = None,
    cases: Sequence[Case] = (),
    stale: bool = False,
) -> Decision:
    return decide_connection(
        record(area, permits, cases),
        utility=Utility.POWER,
        kind=kind,
        now=NOW,
        requested_until=requested_until,
        stale=stale,
    )


# Permanent, urban: land_use_planning, land_certificate and construction_planning in force; an
# in-force temporary_construction_planning instead of construction_planning gives TEMPORARY_ONLY.
TEMPORARY_ONLY_ROWS = [
    pytest.param([*in_force(LUP, LC), permit(TCP, expires=30)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(30),
                 id="only a temporary planning permit: ALLOW_TEMPORARY until it expires"),
    pytest.param([*in_force(LUP, LC), permit(TCP, expires=500)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(500),
                 id="no 365-day cap for a permanent request"),
    pytest.param([*in_force(LUP, LC), permit(TCP, expires=30),
                  permit(TCP, pid="T-2", expires=60)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(60),
                 id="two temporary permits: the later expiry"),
    pytest.param([*in_force(LUP, LC), permit(TCP, pid="T-2", expires=90, status="suspended"),
                  permit(TCP, expires=30)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(30),
                 id="a suspended temporary permit does not extend it"),
    pytest.param([*in_force(LUP, LC), permit(TCP, pid="T-2", issued=-300, expires=-1),
                  permit(TCP, expires=30)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(30),
                 id="an expired temporary permit does not count"),
    pytest.param([*in_force(LUP, LC), permit(CP, "revoked"), permit(TCP, expires=30)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(30),
                 id="revoked construction_planning: no DENY reason for it"),
    pytest.param([*in_force(LUP, LC), permit(CP, expires=-1), permit(TCP, expires=30)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(30),
                 id="expired construction_planning: no DENY reason for it"),
    pytest.param([*in_force(LUP, LC, CP), permit(TCP, expires=30)], ALLOW, [], None,
                 id="construction_planning in force: the temporary permit is irrelevant"),
    pytest.param([*in_force(LUP), permit(TCP, expires=30)],
                 DENY, [(MISSING, LC), (TEMPORARY_ONLY, TCP)], None,
                 id="temporary only, land certificate missing: DENY with both reasons"),
    pytest.param([permit(TCP, expires=30)],
                 DENY, [(MISSING, LUP), (MISSING, LC), (TEMPORARY_ONLY, TCP)], None,
                 id="temporary only, nothing else"),
    pytest.param([*in_force(LUP, LC), permit(TCP, expires=-1)], DENY, [(MISSING, CP)], None,
                 id="expired temporary permit: construction_planning missing"),
    pytest.param([*in_force(LUP, LC), permit(TCP, "revoked")], DENY, [(MISSING, CP)], None,
                 id="revoked temporary permit: construction_planning missing"),
    pytest.param([*in_force(LUP, LC), permit(TCP, issued=5, expires=30)],
                 DENY, [(MISSING, CP)], None,
                 id="temporary permit not yet issued: construction_planning missing"),
    pytest.param([*in_force(LUP, LC), permit(CP, "suspended"), permit(TCP, expires=-1)],
                 DENY, [(SUSPENDED, CP)], None,
                 id="suspended construction_planning, expired temporary: suspended"),
    pytest.param([*in_force(LUP, LC), permit(TCP, expires=0.5)],
                 ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], days(0.5),
                 id="temporary permit expiring today"),
]  # fmt: skip


@pytest.mark.parametrize(("permits", "verdict", "reasons", "until"), TEMPORARY_ONLY_ROWS)
def test_permanent_urban_connection(
    permits: list[Permit], verdict: Verdict, reasons: Summary, until: datetime | None
) -> None:
    decision = connect(permits)
    assert decision.verdict is verdict
    assert summary(decision) == reasons
    assert decision.valid_until == until
    assert articles(decision) <= {23}


def test_temporary_only_is_outweighed_by_cases_and_staleness() -> None:
    permits = [*in_force(LUP, LC), permit(TCP, expires=30)]
    only = [(TEMPORARY_ONLY, TCP)]
    pending = connect(permits, cases=[case(S.REPORTED)])
    assert (pending.verdict, summary(pending), pending.valid_until) == (
        REVIEW, [(PENDING, "C-1"), *only], None,
    )  # fmt: skip
    flagged = connect(permits, cases=[case(S.FILED)])
    assert (flagged.verdict, summary(flagged), flagged.valid_until) == (
        DENY, [(FLAGGED, "C-1"), *only], None,
    )  # fmt: skip
    stale = connect(permits, stale=True)
    assert (stale.verdict, summary(stale), stale.valid_until) == (
        REVIEW, [(STALE, None), *only], None,
    )  # fmt: skip
    closed = connect(permits, cases=[case(S.CLOSED)])
    assert (closed.verdict, closed.valid_until) == (ALLOW_TEMPORARY, days(30))


@pytest.mark.parametrize("kind", list(ConnectionKind), ids=str)
def test_a_temporary_planning_permit_means_nothing_in_a_village(kind: ConnectionKind) -> None:
    decision = connect([permit(TCP, expires=30), *in_force(CP, LUP, LC, CW)], kind, VILLAGE)
    assert (decision.verdict, summary(decision)) == (DENY, [(MISSING, RCP)])


# Temporary (construction-period) supply: planning permit and construction_works in force;
# ALLOW_TEMPORARY until the earliest of the requested end, each relied-on permit's expiry and
# now + 365 days. Several in force for one need: rely on the one expiring last.
TEMPORARY_ROWS = [
    pytest.param(URBAN, in_force(CP, CW), None, ALLOW_TEMPORARY, [], YEAR,
                 id="nothing expires, nothing requested: a year"),
    pytest.param(URBAN, in_force(CP, CW), days(10), ALLOW_TEMPORARY, [], days(10),
                 id="the requested end"),
    pytest.param(URBAN, in_force(CP, CW), days(300), ALLOW_TEMPORARY, [], days(300),
                 id="a request of most of a year"),
    pytest.param(URBAN, [permit(CP, expires=330), permit(CW)], days(320), ALLOW_TEMPORARY, [],
                 days(320), id="a request just before a permit's expiry"),
    pytest.param(URBAN, in_force(CP, CW), days(400), ALLOW_TEMPORARY, [], YEAR,
                 id="a request beyond a year: a year"),
    pytest.param(URBAN, in_force(CP, CW), YEAR, ALLOW_TEMPORARY, [], YEAR,
                 id="a request of exactly a year"),
    pytest.param(URBAN, [permit(CP), permit(CW, expires=90)], None, ALLOW_TEMPORARY, [], days(90),
                 id="construction_works expires first"),
    pytest.param(URBAN, [permit(CP, expires=50), permit(CW, expires=90)], None,
                 ALLOW_TEMPORARY, [], days(50), id="construction_planning expires first"),
    pytest.param(URBAN, [permit(CP, expires=120), permit(CW, expires=90)], days(100),
                 ALLOW_TEMPORARY, [], days(90), id="permit before request"),
    pytest.param(URBAN, [permit(CP, expires=120), permit(CW, expires=90)], days(20),
                 ALLOW_TEMPORARY, [], days(20), id="request before permits"),
    pytest.param(URBAN, [permit(CP, expires=500), permit(CW, expires=600)], None,
                 ALLOW_TEMPORARY, [], YEAR, id="permits beyond a year: a year"),
    pytest.param(URBAN, [permit(TCP, expires=30), permit(CW)], None,
                 ALLOW_TEMPORARY, [], days(30), id="temporary planning permit counts"),
    pytest.param(URBAN, [permit(CP), permit(TCP, expires=30), permit(CW)], None,
                 ALLOW_TEMPORARY, [], YEAR, id="rely on the permit that never expires"),
    pytest.param(URBAN, [permit(CP, expires=40), permit(TCP, expires=30), permit(CW)], None,
                 ALLOW_TEMPORARY, [], days(40), id="rely on the later of two planning permits"),
    pytest.param(URBAN, [permit(CP, expires=20), permit(TCP, expires=30), permit(CW)], None,
                 ALLOW_TEMPORARY, [], days(30), id="the temporary one expiring later"),
    pytest.param(URBAN, [permit(CP), permit(CW, expires=90), permit(CW, pid="W-2", expires=200)],
                 None, ALLOW_TEMPORARY, [], days(200), id="two construction_works: the later"),
    pytest.param(URBAN, [permit(CP), permit(CW, expires=90),
                         permit(CW, "revoked", pid="W-2", expires=200)],
                 None, ALLOW_TEMPORARY, [], days(90), id="a revoked one does not count"),
    pytest.param(URBAN, [permit(CP), permit(CW, pid="W-0", expires=90), permit(CW)],
                 None, ALLOW_TEMPORARY, [], YEAR, id="one without expiry: never expires"),
    pytest.param(URBAN, [permit(CP), permit(CW, expires=-1), permit(CW, pid="W-2", expires=90)],
                 None, ALLOW_TEMPORARY, [], days(90), id="an expired one does not count"),
    pytest.param(VILLAGE, [permit(RCP, expires=70), permit(CW)], None,
                 ALLOW_TEMPORARY, [], days(70), id="village: rural permit's expiry"),
    pytest.param(VILLAGE, in_force(RCP, CW), days(5), ALLOW_TEMPORARY, [], days(5),
                 id="village: the requested end"),
    pytest.param(URBAN, in_force(CW), None, DENY, [(MISSING, CP)], None,
                 id="no planning permit: DENY naming construction_planning"),
    pytest.param(URBAN, in_force(CP), None, DENY, [(MISSING, CW)], None,
                 id="no construction_works: DENY"),
    pytest.param(URBAN, [], days(10), DENY, [(MISSING, CP), (MISSING, CW)], None,
                 id="neither: both reasons"),
    pytest.param(URBAN, [*in_force(LUP, LC, CW)], None, DENY, [(MISSING, CP)], None,
                 id="land permits are not a planning permit"),
    pytest.param(URBAN, [permit(CP, "revoked", issued=-200), permit(TCP, issued=-100, expires=-1),
                         permit(CW)],
                 None, DENY, [(EXPIRED, CP)], None,
                 id="latest-issued planning permit is the expired temporary one"),
    pytest.param(URBAN, [permit(CP, "revoked", issued=-100), permit(TCP, issued=-200, expires=-1),
                         permit(CW)],
                 None, DENY, [(REVOKED, CP)], None,
                 id="latest-issued planning permit is the revoked permanent one"),
    pytest.param(URBAN, [permit(TCP, "suspended", expires=30), permit(CW, expires=-1)],
                 None, DENY, [(SUSPENDED, CP), (EXPIRED, CW)], None,
                 id="suspended temporary planning, expired works"),
    pytest.param(VILLAGE, in_force(CP, CW), None, DENY, [(MISSING, RCP)], None,
                 id="village: urban planning permit does not count"),
    pytest.param(VILLAGE, [permit(RCP, issued=3), permit(CW)], None, DENY, [(MISSING, RCP)],
                 None, id="village: rural permit not yet issued"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("area", "permits", "requested", "verdict", "reasons", "until"), TEMPORARY_ROWS
)
def test_temporary_connection(
    area: Area,
    permits: list[Permit],
    requested: datetime | None,
    verdict: Verdict,
    reasons: Summary,
    until: datetime | None,
) -> None:
    decision = connect(permits, TEMPORARY, area, requested_until=requested)
    assert decision.verdict is verdict
    assert summary(decision) == reasons
    assert decision.valid_until == until
    assert articles(decision) <= {23}


@pytest.mark.parametrize("stage", [S.REPORTED, S.FILED], ids=str)
def test_temporary_connection_with_a_case_or_stale_data_has_no_end(stage: CaseStage) -> None:
    permits = in_force(CP, CW)
    flagged = connect(permits, TEMPORARY, cases=[case(stage)], requested_until=days(10))
    assert flagged.verdict is (REVIEW if stage is S.REPORTED else DENY)
    assert flagged.valid_until is None
    stale = connect(permits, TEMPORARY, stale=True, requested_until=days(10))
    assert (stale.verdict, summary(stale), stale.valid_until) == (REVIEW, [(STALE, None)], None)


# Every state of a temporary planning permit, with no construction_planning at all.
@pytest.mark.parametrize("state", list(STATES), ids=str)
def test_temporary_planning_permit_in_each_state(state: str) -> None:
    tcp = in_state(TCP, state)
    code = STATES[state][1]
    expires = tcp[0].expires if tcp else None
    # permanent urban connection: TEMPORARY_ONLY when in force, else construction_planning lacks
    perm = connect([*in_force(LUP, LC), *tcp])
    if code is None:
        assert (perm.verdict, summary(perm), perm.valid_until) == (
            ALLOW_TEMPORARY, [(TEMPORARY_ONLY, TCP)], expires,
        )  # fmt: skip
    else:
        assert (perm.verdict, summary(perm)) == (DENY, [(MISSING, CP)])
    # temporary urban connection: it is the planning permit; a reason names construction_planning
    temp = connect([*tcp, permit(CW)], TEMPORARY)
    if code is None:
        assert expires is not None
        assert (temp.verdict, summary(temp), temp.valid_until) == (
            ALLOW_TEMPORARY, [], min(expires, YEAR),
        )  # fmt: skip
    else:
        assert (temp.verdict, summary(temp)) == (DENY, [(code, CP)])
    # initial urban registration: a temporary planning permit does not count
    init = decide_registration(record(URBAN, [*in_force(LC), *tcp]), kind=INITIAL, now=NOW)
    assert (init.verdict, summary(init)) == (DENY, [(MISSING, CP)])
    # urban premises: it is the planning permit
    for office in OFFICES:
        got = decide_premises(
            record(URBAN, [*in_force(PO), *tcp]), office=office, declared_use="shop", now=NOW
        )
        reasons: Summary = [] if code is None else [(code, CP)]
        assert (office, summary(got)) == (office, reasons)


def test_the_rules_read_the_clock_they_are_given() -> None:
    status = record(URBAN, [permit(CP, issued=-10, expires=10), permit(CW, issued=-10)])
    now = decide_connection(status, utility=Utility.GAS, kind=TEMPORARY, now=NOW)
    assert (now.verdict, now.valid_until) == (ALLOW_TEMPORARY, days(10))
    later = decide_connection(status, utility=Utility.GAS, kind=TEMPORARY, now=days(10))
    assert summary(later) == [(EXPIRED, CP)]
    earlier = decide_connection(status, utility=Utility.GAS, kind=TEMPORARY, now=days(-11))
    assert summary(earlier) == [(MISSING, CP), (MISSING, CW)]
    shifted = decide_connection(status, utility=Utility.GAS, kind=TEMPORARY, now=days(-5))
    assert shifted.valid_until == days(10)
    short = decide_connection(status, utility=Utility.GAS, kind=TEMPORARY, now=days(9))
    assert short.valid_until == days(10)


# --- Art. 11: registrations ----------------------------------------------------------------------

REGISTRATION_ROWS = [
    pytest.param(INITIAL, URBAN, in_force(LC, CP), ALLOW, [], id="initial urban: all in force"),
    pytest.param(INITIAL, URBAN, in_force(LC), DENY, [(MISSING, CP)], id="initial: no CP"),
    pytest.param(INITIAL, URBAN, in_force(CP), DENY, [(MISSING, LC)], id="initial: no LC"),
    pytest.param(INITIAL, URBAN, [*in_force(LC), permit(TCP, expires=30)], DENY, [(MISSING, CP)],
                 id="initial: temporary planning permit does not count"),
    pytest.param(INITIAL, URBAN, in_force(LUP, PO), DENY, [(MISSING, LC), (MISSING, CP)],
                 id="initial: land_use_planning and ownership do not count"),
    pytest.param(INITIAL, URBAN, in_force(LC, CP), ALLOW, [],
                 id="initial: land_use_planning not required"),
    pytest.param(INITIAL, VILLAGE, in_force(RCP), ALLOW, [], id="initial village: rural permit"),
    pytest.param(INITIAL, VILLAGE, in_force(LC, CP), DENY, [(MISSING, RCP)],
                 id="initial village: urban permits do not count"),
    pytest.param(INITIAL, VILLAGE, [permit(RCP, "suspended")], DENY, [(SUSPENDED, RCP)],
                 id="initial village: rural permit suspended"),
    pytest.param(TRANSFER, URBAN, in_force(PO), ALLOW, [], id="transfer: ownership in force"),
    pytest.param(TRANSFER, URBAN, in_force(LUP, LC, CP), DENY, [(MISSING, PO)],
                 id="transfer: planning permits are not registration"),
    pytest.param(TRANSFER, VILLAGE, [permit(PO, "revoked")], DENY, [(REVOKED, PO)],
                 id="transfer village: ownership revoked"),
    pytest.param(MORTGAGE, URBAN, [permit(PO, expires=-1)], DENY, [(EXPIRED, PO)],
                 id="mortgage: ownership expired"),
    pytest.param(MORTGAGE, VILLAGE, in_force(PO), ALLOW, [], id="mortgage village: in force"),
    pytest.param(MORTGAGE, URBAN, [permit(PO, issued=1)], DENY, [(MISSING, PO)],
                 id="mortgage: ownership not yet issued"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "area", "permits", "verdict", "reasons"), REGISTRATION_ROWS)
def test_registration(
    kind: RegistrationKind, area: Area, permits: list[Permit], verdict: Verdict, reasons: Summary
) -> None:
    decision = decide_registration(record(area, permits), kind=kind, now=NOW)
    assert (decision.verdict, summary(decision), decision.valid_until) == (verdict, reasons, None)
    assert articles(decision) <= {11}


# --- Art. 13: premises ---------------------------------------------------------------------------

PREMISES_ROWS = [
    # area, permits, declared use -> reasons for a blocking office, for a notifying office
    pytest.param(URBAN, [permit(PO, use="residential"), permit(CP)], "residential", [], [],
                 id="same use"),
    pytest.param(URBAN, [permit(PO, use="Residential"), permit(CP)], "  RESIDENTIAL\t", [], [],
                 id="case and surrounding white space ignored"),
    pytest.param(URBAN, [permit(PO, use="  residential\n"), permit(CP)], "residential", [], [],
                 id="white space around the permitted use ignored too"),
    pytest.param(URBAN, [permit(PO, use="STRASSE"), permit(CP)], "straße", [], [],
                 id="compared case-folded"),
    pytest.param(URBAN, [permit(PO, use="retail shop"), permit(CP)], "retail  shop",
                 [(MISMATCH, PO)], [(MISMATCH, PO)], id="inner white space counts"),
    pytest.param(URBAN, [permit(PO, use="residential"), permit(CP)], "shop",
                 [(MISMATCH, PO)], [(MISMATCH, PO)], id="use differs"),
    pytest.param(URBAN, [permit(PO, use="residential"), permit(CP)], "住宅", [], [],
                 id="vocabulary: 住宅 is residential"),
    pytest.param(URBAN, [permit(PO, use="居住"), permit(CP, use="住宅")], "Residential", [], [],
                 id="vocabulary: two Chinese names and an English one, one category"),
    pytest.param(URBAN, [permit(PO, use="residential"), permit(CP)],
                 "Ｒｅｓｉｄｅｎｔｉａｌ", [], [], id="vocabulary: fullwidth letters"),
    pytest.param(URBAN, [permit(PO, use="public administration"), permit(CP)],
                 "Public\u3000 Administration", [], [],
                 id="vocabulary: inner white space of a known use collapsed"),
    pytest.param(URBAN, [permit(PO, use="residential"), permit(CP)], "商业",
                 [(MISMATCH, PO)], [(MISMATCH, PO)], id="vocabulary: 商业 is not residential"),
    pytest.param(URBAN, [permit(PO, use="commercial"), permit(CP, use="商业")], "办公",
                 [(MISMATCH, CP), (MISMATCH, PO)], [(MISMATCH, CP), (MISMATCH, PO)],
                 id="vocabulary: office is not commercial"),
    pytest.param(URBAN, [permit(PO, use="commercial"), permit(CP)], "retail",
                 [(MISMATCH, PO)], [(MISMATCH, PO)],
                 id="vocabulary: a kind of commercial use is not the category"),
    pytest.param(URBAN, [permit(PO, use="Karaoke Bar"), permit(CP)], " karaoke bar ", [], [],
                 id="unknown and unknown: the same text"),
    pytest.param(URBAN, [permit(PO, use="karaoke"), permit(CP)], "ktv",
                 [(MISMATCH, PO)], [(MISMATCH, PO)], id="unknown and unknown: other text"),
    pytest.param(URBAN, [permit(PO, use="ｋａｒａｏｋｅ"), permit(CP)], "karaoke",
                 [(MISMATCH, PO)], [(MISMATCH, PO)],
                 id="unknown uses: width not ignored, as before the vocabulary"),
    pytest.param(URBAN, [permit(PO, use="residential"), permit(CP)], "residential flat",
                 [(MISMATCH, PO)], [(MISMATCH, PO)], id="known and unknown: mismatch"),
    pytest.param(URBAN, [permit(PO, use="住宅楼"), permit(CP)], "住宅",
                 [(MISMATCH, PO)], [(MISMATCH, PO)], id="unknown and known: mismatch"),
    pytest.param(URBAN, [permit(PO), permit(CP, use="office")], "Office", [], [],
                 id="no use on ownership: planning permit's use"),
    pytest.param(URBAN, [permit(PO), permit(CP, use="office")], "shop",
                 [(MISMATCH, CP)], [(MISMATCH, CP)], id="planning permit's use differs"),
    pytest.param(URBAN, [permit(PO, use="shop"), permit(CP, use="office")], "shop",
                 [(MISMATCH, CP)], [(MISMATCH, CP)],
                 id="each document compared: the planning permit's differs"),
    pytest.param(URBAN, [permit(PO, use="shop"), permit(CP, use="office")], "office",
                 [(MISMATCH, PO)], [(MISMATCH, PO)],
                 id="each document compared: the ownership's differs"),
    pytest.param(URBAN, [permit(PO, use="shop"), permit(CP, use="office")], "warehouse",
                 [(MISMATCH, CP), (MISMATCH, PO)], [(MISMATCH, CP), (MISMATCH, PO)],
                 id="both documents differ: a reason each"),
    pytest.param(URBAN, [permit(PO, use="Shop "), permit(CP, use=" shop")], "SHOP", [], [],
                 id="both documents agree with the declared use"),
    pytest.param(VILLAGE, [permit(PO, use="shop"), permit(RCP, use="farmhouse")], "barn",
                 [(MISMATCH, RCP), (MISMATCH, PO)], [(MISMATCH, RCP), (MISMATCH, PO)],
                 id="village: both documents differ"),
    pytest.param(URBAN, [permit(PO), permit(CP)], "anything", [], [],
                 id="no use named anywhere: nothing to compare"),
    pytest.param(URBAN, [permit(PO, "revoked", use="shop"), permit(CP, use="office")], "shop",
                 [(MISMATCH, CP)], [(REVOKED, PO), (MISMATCH, CP)],
                 id="use on a revoked ownership does not count"),
    pytest.param(URBAN, [permit(PO, issued=2, use="shop"), permit(CP, use="office")], "shop",
                 [(MISMATCH, CP)], [(MISSING, PO), (MISMATCH, CP)],
                 id="use on an ownership not yet issued does not count"),
    pytest.param(URBAN, [permit(PO, use="shop")], "office",
                 [(MISSING, CP), (MISMATCH, PO)], [(MISSING, CP), (MISMATCH, PO)],
                 id="no planning permit and use differs: both reasons"),
    pytest.param(URBAN, [permit(PO, use="shop")], "shop", [(MISSING, CP)], [(MISSING, CP)],
                 id="no planning permit, same use"),
    pytest.param(URBAN, [permit(CP, expires=-1, use="office")], "shop",
                 [(EXPIRED, CP)], [(EXPIRED, CP), (MISSING, PO)],
                 id="nothing in force names a use: no comparison"),
    pytest.param(URBAN, [permit(CP)], "shop", [], [(MISSING, PO)],
                 id="no ownership: only notifying offices care"),
    pytest.param(URBAN, [], "shop", [(MISSING, CP)], [(MISSING, CP), (MISSING, PO)],
                 id="no permits at all"),
    pytest.param(URBAN, [permit(PO, "suspended"), permit(CP, "revoked")], "shop",
                 [(REVOKED, CP)], [(REVOKED, CP), (SUSPENDED, PO)], id="both withdrawn"),
    pytest.param(URBAN, [permit(PO, pid="P-1", issued=-200, use="shop"),
                         permit(PO, pid="P-2", issued=-100, use="office"), permit(CP)], "office",
                 [], [], id="two ownerships: the latest-issued one's use"),
    pytest.param(URBAN, [permit(PO, pid="P-1", issued=-200, use="shop"),
                         permit(PO, pid="P-2", issued=-100, use="office"), permit(CP)], "shop",
                 [(MISMATCH, PO)], [(MISMATCH, PO)], id="two ownerships: the older one's differs"),
    pytest.param(URBAN, [permit(PO, pid="P-1", issued=-200, use="shop"),
                         permit(PO, pid="P-2", issued=-100), permit(CP, use="office")], "shop",
                 [(MISMATCH, CP)], [(MISMATCH, CP)],
                 id="latest ownership names no use: the one that does"),
    pytest.param(URBAN, [permit(PO, pid="P-1", issued=-100, use="office"),
                         permit(PO, pid="P-2", issued=-100, use="shop"), permit(CP)], "shop",
                 [], [], id="same issued: larger id"),
    pytest.param(URBAN, [permit(PO), permit(TCP, expires=30, use="warehouse")], "Warehouse",
                 [], [], id="temporary planning permit's use"),
    pytest.param(URBAN, [permit(TCP, expires=30, use="warehouse")], "shop",
                 [(MISMATCH, TCP)], [(MISSING, PO), (MISMATCH, TCP)],
                 id="temporary planning permit's use differs"),
    pytest.param(URBAN, [permit(PO), permit(CP, use="office"), permit(RCP, use="shop")], "shop",
                 [(MISMATCH, CP)], [(MISMATCH, CP)], id="urban: a rural permit's use ignored"),
    pytest.param(VILLAGE, [permit(PO), permit(RCP, use="farmhouse")], "FarmHouse", [], [],
                 id="village: rural permit's use"),
    pytest.param(VILLAGE, [permit(PO), permit(RCP, use="farmhouse")], "shop",
                 [(MISMATCH, RCP)], [(MISMATCH, RCP)], id="village: rural permit's use differs"),
    pytest.param(VILLAGE, [permit(PO), permit(CP, use="shop")], "shop",
                 [(MISSING, RCP)], [(MISSING, RCP)], id="village: an urban planning permit"),
    pytest.param(VILLAGE, [permit(PO), permit(TCP, expires=30, use="office")], "shop",
                 [(MISSING, RCP)], [(MISSING, RCP)], id="village: a temporary planning permit"),
    pytest.param(VILLAGE, [permit(RCP, "suspended", use="farm")], "shop",
                 [(SUSPENDED, RCP)], [(SUSPENDED, RCP), (MISSING, PO)],
                 id="village: suspended rural permit, no ownership"),
]  # fmt: skip


@pytest.mark.parametrize("office", OFFICES, ids=str)
@pytest.mark.parametrize(("area", "permits", "declared", "blocking", "notifying"), PREMISES_ROWS)
def test_premises(
    office: Office,
    area: Area,
    permits: list[Permit],
    declared: str,
    blocking: Summary,
    notifying: Summary,
) -> None:
    decision = decide_premises(record(area, permits), office=office, declared_use=declared, now=NOW)
    if office in BLOCKING_OFFICES:  # DENY when planning permit not in force or use differs
        reasons, verdict = blocking, DENY if blocking else ALLOW
    else:  # never block: NOTIFY
        reasons, verdict = notifying, NOTIFY if notifying else ALLOW
    assert (decision.verdict, summary(decision), decision.valid_until) == (verdict, reasons, None)
    assert articles(decision) <= {13}


def test_office_lists_match_domain() -> None:
    assert {"civil_defense", "environment", "fire"} == BLOCKING_OFFICES
    assert {"market_regulation", "culture", "health", "tax"} == NOTIFYING_OFFICES
    assert set(Office) == BLOCKING_OFFICES | NOTIFYING_OFFICES


@pytest.mark.parametrize("office", OFFICES, ids=str)
def test_premises_everything_at_once(office: Office) -> None:
    status = record(
        URBAN,
        [permit(PO, "revoked", use="shop"), permit(CP, "revoked"), permit(TCP, use="office")],
        [case(S.REPORTED, "C-1"), case(S.STOP_ORDER, "C-2")],
    )
    decision = decide_premises(status, office=office, declared_use="shop", now=NOW, stale=True)
    if office in BLOCKING_OFFICES:
        assert decision.verdict is DENY
        assert summary(decision) == [(STALE, None), (FLAGGED, "C-2"), (MISMATCH, TCP)]
    else:
        assert decision.verdict is REVIEW
        assert summary(decision) == [
            (STALE, None), (FLAGGED, "C-2"), (REVOKED, PO), (MISMATCH, TCP),
        ]  # fmt: skip


@pytest.mark.parametrize("office", OFFICES, ids=str)
@pytest.mark.parametrize("declared", ["", "   ", "\t\n"], ids=repr)
def test_premises_declared_use_is_required(office: Office, declared: str) -> None:
    with pytest.raises(ValueError, match="declared_use is required"):
        decide_premises(record(), office=office, declared_use=declared, now=NOW)
    with pytest.raises(ValueError, match="declared_use is required"):
        decide_premises(None, office=office, declared_use=declared, now=NOW)


def test_unknown_request_kinds_are_refused() -> None:
    status = record(URBAN, in_force(LUP, LC, CP, CW, PO))
    with pytest.raises(ValueError, match="unknown office"):
        decide_premises(status, office="police", declared_use="shop", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown registration kind"):
        decide_registration(status, kind="lease", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown connection kind"):
        decide_connection(status, utility=Utility.GAS, kind="seasonal", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown utility"):
        decide_connection(status, utility="steam", kind=PERMANENT, now=NOW)  # type: ignore[arg-type]


def test_plain_strings_work_like_the_enums() -> None:
    status = record(URBAN, in_force(LUP, LC, CP, CW, PO))
    assert decide_connection(status, utility="heat", kind="temporary", now=NOW) == (  # type: ignore[arg-type]
        decide_connection(status, utility=Utility.HEAT, kind=TEMPORARY, now=NOW)
    )
    assert decide_registration(status, kind="mortgage", now=NOW) == (  # type: ignore[arg-type]
        decide_registration(status, kind=MORTGAGE, now=NOW)
    )
    assert decide_premises(status, office="tax", declared_use="x", now=NOW) == (  # type: ignore[arg-type]
        decide_premises(status, office=Office.TAX, declared_use="x", now=NOW)
    )


# --- Reasons carry the article, the subject and a plain message ----------------------------------

MESSAGE_ROWS = [
    pytest.param(registration(INITIAL), record(URBAN, [permit(LC, "revoked", pid="L-1"),
                                                       permit(CP)]),
                 Reason(REVOKED, 11, "no land_certificate in force: permit L-1 was revoked", LC),
                 id="revoked"),
    pytest.param(registration(TRANSFER), record(URBAN, [], [case(S.STOP_ORDER)]),
                 Reason(FLAGGED, 11, "structure flagged by case C-1 (stop_order)", case_id="C-1"),
                 id="flagged"),
    pytest.param(connection(PERMANENT), record(VILLAGE, [permit(RCP, "suspended", pid="R-7")]),
                 Reason(SUSPENDED, 23,
                        "no rural_construction_planning in force: permit R-7 is suspended", RCP),
                 id="suspended"),
    pytest.param(premises(Office.FIRE), record(URBAN, [permit(TCP, pid="T-1", expires=-1)]),
                 Reason(EXPIRED, 13, "no construction_planning in force: permit T-1"
                        " (temporary_construction_planning) expired 2024-05-31T12:00:00Z", CP),
                 id="expired planning permit names its real kind"),
    pytest.param(registration(MORTGAGE), record(URBAN, [permit(PO, pid="P-1", issued=1)]),
                 Reason(MISSING, 11, "no property_ownership in force: permit P-1 not in force"
                        " until 2024-06-02T12:00:00Z", PO),
                 id="not yet issued"),
    pytest.param(registration(MORTGAGE), record(URBAN),
                 Reason(MISSING, 11, "no property_ownership in force: none on record", PO),
                 id="none"),
    pytest.param(premises(Office.CULTURE), record(URBAN, [permit(PO), permit(CP)],
                                                  [case(S.REPORTED, "C-3")]),
                 Reason(PENDING, 13, "case C-3 reported, not yet verified", case_id="C-3"),
                 id="pending"),
]  # fmt: skip


@pytest.mark.parametrize(("run", "status", "reason"), MESSAGE_ROWS)
def test_reason_messages(run: Runner, status: StatusRecord, reason: Reason) -> None:
    assert run(status, False).reasons[0] == reason


def test_use_mismatch_message_names_both_uses() -> None:
    status = record(URBAN, [permit(PO, pid="P-1", use="Residential "), permit(CP)])
    decision = decide_premises(status, office=Office.HEALTH, declared_use=" Karaoke", now=NOW)
    (reason,) = decision.reasons
    assert (reason.code, reason.article, reason.permit_kind) == (MISMATCH, 13, PO)
    assert "'Karaoke'" in reason.message
    assert "'Residential'" in reason.message
    assert "P-1" in reason.message


def test_temporary_only_message_names_the_permit_and_its_end() -> None:
    decision = connect([*in_force(LUP, LC), permit(TCP, pid="T-4", expires=30)])
    (reason,) = decision.reasons
    assert (reason.code, reason.article, reason.permit_kind) == (TEMPORARY_ONLY, 23, TCP)
    assert "T-4" in reason.message
    assert "2024-07-01T12:00:00Z" in reason.message


@by_check
def test_every_reason_carries_its_checks_article(check: Check) -> None:
    status = record(check.area, [], [case(S.FILED), case(S.REPORTED, "C-2")])
    for stale in (False, True):
        for decision in (check.run(status, stale), check.run(None, stale)):
            assert decision.reasons
            assert all(r.article == check.article for r in decision.reasons)
            assert all(r.message for r in decision.reasons)


def test_decisions_are_immutable() -> None:
    decision = connect([])
    with pytest.raises(AttributeError):
        decision.verdict = ALLOW  # type: ignore[misc]
    with pytest.raises(AttributeError):
        decision.reasons[0].code = STALE  # type: ignore[misc]


def test_verdict_strength_order() -> None:
    assert ALLOW < ALLOW_TEMPORARY < NOTIFY < REVIEW < DENY
    assert [v.value for v in Verdict] == [0, 1, 2, 3, 4]
    assert [c.value for c in ReasonCode] == [c.name for c in ReasonCode]


# --- Properties ----------------------------------------------------------------------------------

KIND_LIST = list(PermitKind)
USES = [None, "shop", "Shop ", "office"]


@st.composite
def permits_of(draw: st.DrawFn) -> list[Permit]:
    count = draw(st.integers(0, 7))
    out: list[Permit] = []
    for i in range(count):
        kind = draw(st.sampled_from(KIND_LIST))
        issued = draw(st.integers(-400, 30))
        life = draw(st.one_of(st.none(), st.integers(1, 800)))
        if kind is TCP and life is None:
            life = draw(st.integers(1, 800))
        out.append(
            permit(
                kind,
                draw(st.sampled_from(["valid", "valid", "suspended", "revoked"])),
                pid=f"P-{i}",
                issued=issued,
                expires=None if life is None else issued + life,
                use=draw(st.sampled_from(USES)),
            )
        )
    return out


@st.composite
def statuses(draw: st.DrawFn) -> StatusRecord:
    stages = draw(st.lists(st.sampled_from(list(CaseStage)), max_size=3))
    return record(
        draw(st.sampled_from(list(Area))),
        draw(permits_of()),
        [case(stage, f"C-{i}") for i, stage in enumerate(stages)],
    )


maybe_status = st.one_of(st.none(), statuses())
checks = st.sampled_from(CHECKS)
PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(check=checks, status=maybe_status)
def test_property_stale_never_allows_and_adds_only_registry_stale(
    check: Check, status: StatusRecord | None
) -> None:
    """On stale data a held structure keeps every reason and gains REGISTRY_STALE; one the gate
    does not hold answers REGISTRY_STALE alone (NOT_IN_REGISTRY is no longer a claim it makes)."""
    fresh, stale = check.run(status, False), check.run(status, True)
    assert stale.verdict >= REVIEW
    assert stale.verdict not in (ALLOW, ALLOW_TEMPORARY, NOTIFY)
    assert stale.valid_until is None
    if status is None:
        assert (stale.verdict, summary(stale)) == (REVIEW, [(STALE, None)])
        return
    assert stale.verdict == max(fresh.verdict, REVIEW)
    assert sorted(summary(stale), key=str) == sorted([*summary(fresh), (STALE, None)], key=str)


@PROPERTY
@given(check=st.sampled_from([c for c in CHECKS if c.notifying]), status=maybe_status)
def test_property_notifying_offices_never_block(check: Check, status: StatusRecord | None) -> None:
    fresh = check.run(status, False)
    assert fresh.verdict in (ALLOW, NOTIFY)
    assert (fresh.verdict is NOTIFY) == bool(fresh.reasons)
    assert check.run(status, True).verdict is REVIEW


@PROPERTY
@given(
    check=checks,
    status=statuses(),
    stage=st.sampled_from(BLOCKING),
    stale=st.booleans(),
)
def test_property_a_blocking_case_never_weakens_the_verdict(
    check: Check, status: StatusRecord, stage: CaseStage, stale: bool
) -> None:
    before = check.run(status, stale)
    flagged = replace(status, cases=(*status.cases, case(stage, "C-new")))
    after = check.run(flagged, stale)
    assert after.verdict >= before.verdict
    assert after.verdict >= check.finding
    assert (FLAGGED, "C-new") in summary(after)
    assert not any(code is PENDING for code, _ in summary(after))


@PROPERTY
@given(check=checks, status=statuses(), stale=st.booleans())
def test_property_permit_order_does_not_matter(
    check: Check, status: StatusRecord, stale: bool
) -> None:
    reversed_ = replace(status, permits=status.permits[::-1])
    assert check.run(reversed_, stale) == check.run(status, stale)


@PROPERTY
@given(check=checks, status=maybe_status, stale=st.booleans())
def test_property_verdict_is_the_strongest_reason_and_end_only_when_temporary(
    check: Check, status: StatusRecord | None, stale: bool
) -> None:
    decision = check.run(status, stale)
    assert all(r.article == check.article for r in decision.reasons)
    if decision.verdict is ALLOW:
        assert decision.reasons == ()
    if decision.verdict is ALLOW_TEMPORARY:
        assert {r.code for r in decision.reasons} <= {TEMPORARY_ONLY}
        assert decision.valid_until is not None
        assert decision.valid_until > NOW
        if check.temporary:
            assert decision.valid_until <= YEAR
    else:
        assert decision.valid_until is None
    strict = {
        STALE: REVIEW, PENDING: REVIEW, TEMPORARY_ONLY: ALLOW_TEMPORARY,
    }  # fmt: skip
    for reason in decision.reasons:
        called = (
            REVIEW if reason.code is STALE else NOTIFY
        ) if check.notifying else strict.get(reason.code, DENY)  # fmt: skip
        assert decision.verdict >= called
