"""What the working group's page reads: plain query functions over the registry's tables.

Each function takes an open ``Session`` (the page opens one read-only snapshot per request, off
the event loop) and returns plain, fully loaded objects the templates show; none of them writes.
The Art. 19 lateness rules (``referral_state``, ``overdue_kind``) are pure functions of a
referral row and the time, as the issue's contract states them, so the inbox, the overdue list
and the figures agree.

Paging is by page number over a stable order (structure id); searches are bounded (``limit``)
and report whether more matched. Address search is a case-insensitive substring match with the
query's ``%`` and ``_`` taken literally.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from registry.storage import CaseRow, NotificationRow, PermitRow, ReferralRow, StructureRow
from registry.vocabulary import BLOCKING_STAGES, CaseStage, id_error

__all__ = [
    "CITY_TZ",
    "NOTICE_STATES",
    "REFERRAL_STATES",
    "Figure",
    "FlaggedPage",
    "FlaggedStructure",
    "NoticeFilter",
    "NoticeView",
    "OverdueReport",
    "ReferralFilter",
    "ReferralView",
    "SearchResult",
    "StructureDetail",
    "flagged_structures",
    "month_bounds",
    "month_figures",
    "notices",
    "overdue_kind",
    "overdue_referrals",
    "parse_month",
    "referral_state",
    "referrals",
    "search_structures",
    "structure_detail",
]

CITY_TZ: Final = ZoneInfo("Asia/Shanghai")
"""Months (and so the monthly figures) run in the city's own time."""

BLOCKING: Final[tuple[str, ...]] = tuple(sorted(stage.value for stage in BLOCKING_STAGES))
NOTICE_STATES: Final[tuple[str, ...]] = ("open", "acknowledged")
REFERRAL_STATES: Final[tuple[str, ...]] = ("awaiting_referral", "referred", "decided", "answered")
ReferralState = Literal["awaiting_referral", "referred", "decided", "answered"]
Lateness = Literal["referral", "answer"]


# --- Flagged structures and a structure's detail -------------------------------------------------


@dataclass(frozen=True)
class FlaggedStructure:
    structure: StructureRow
    cases: list[CaseRow]  # all its cases, blocking ones first


@dataclass(frozen=True)
class FlaggedPage:
    items: list[FlaggedStructure]
    total: int  # structures with a blocking case, in all
    page: int  # 1-based
    pages: int  # at least 1


def _has_blocking_case() -> ColumnElement[bool]:
    return exists().where(CaseRow.structure_id == StructureRow.id, CaseRow.stage.in_(BLOCKING))


def _cases_of(session: Session, structure_ids: Sequence[str]) -> dict[str, list[CaseRow]]:
    by_structure: dict[str, list[CaseRow]] = {sid: [] for sid in structure_ids}
    if not structure_ids:
        return by_structure
    rows = session.scalars(
        select(CaseRow).where(CaseRow.structure_id.in_(structure_ids)).order_by(CaseRow.id)
    )
    for row in rows:
        by_structure[row.structure_id].append(row)
    for cases in by_structure.values():
        cases.sort(key=lambda case: case.stage not in BLOCKING)  # stable: ids stay in order
    return by_structure


def flagged_structures(session: Session, *, page: int, page_size: int) -> FlaggedPage:
    """One page of the structures with a blocking case, by id, each with its cases.

    A page past the last one is empty (its ``pages`` says how many there are)."""
    if page < 1 or page_size < 1:
        raise ValueError(f"page ({page}) and page_size ({page_size}) start at 1")
    total = session.scalar(
        select(func.count()).select_from(StructureRow).where(_has_blocking_case())
    )
    total = int(total or 0)
    structures = list(
        session.scalars(
            select(StructureRow)
            .where(_has_blocking_case())
            .order_by(StructureRow.id)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
    )
    cases = _cases_of(session, [s.id for s in structures])
    return FlaggedPage(
        items=[FlaggedStructure(s, cases[s.id]) for s in structures],
        total=total,
        page=page,
        pages=max(1, -(-total // page_size)),
    )


Standing = Literal["flagged", "pending", "clear"]


@dataclass(frozen=True)
class StructureDetail:
    structure: StructureRow
    permits: list[PermitRow]
    cases: list[CaseRow]
    notices: list[NoticeView]
    referrals: list[ReferralView]
    standing: Standing  # a blocking case; a reported lead only; neither
    parties: dict[str, bool] = field(default_factory=dict)  # party id -> suspended by a case


def standing_of(cases: Sequence[CaseRow]) -> Standing:
    """What the gate makes of a structure's cases: flagged by a blocking case, pending on a
    reported lead alone, else clear (DOMAIN.md: CASE_PENDING only without a blocking case)."""
    if any(case.stage in BLOCKING for case in cases):
        return "flagged"
    if any(case.stage == CaseStage.REPORTED for case in cases):
        return "pending"
    return "clear"


def structure_detail(
    session: Session, structure_id: str, *, now: datetime
) -> StructureDetail | None:
    """A structure with its permits, cases, parties, notices and referrals; None if unknown."""
    if id_error(structure_id) is not None:
        return None
    structure = session.get(StructureRow, structure_id)
    if structure is None:
        return None
    permits = list(
        session.scalars(
            select(PermitRow)
            .where(PermitRow.structure_id == structure_id)
            .order_by(PermitRow.issued.desc(), PermitRow.id)
        )
    )
    cases = _cases_of(session, [structure_id])[structure_id]
    parties: dict[str, bool] = {}
    for case in cases:
        if case.party is not None:
            suspends = bool(case.party_suspended) and case.stage in BLOCKING  # Case.suspends_party
            parties[case.party] = parties.get(case.party, False) or suspends
    return StructureDetail(
        structure=structure,
        permits=permits,
        cases=cases,
        notices=notices(session, NoticeFilter(structure_id=structure_id), now=now, limit=200),
        referrals=referrals(session, ReferralFilter(structure_id=structure_id), now=now, limit=200),
        standing=standing_of(cases),
        parties=parties,
    )


# --- Search --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    structures: list[StructureRow]
    more: bool  # more matched than are listed


def search_structures(session: Session, query: str, *, limit: int) -> SearchResult:
    """Structures whose id is ``query`` exactly, then those whose address contains it
    (case-insensitively, ``%`` and ``_`` literal), by id; at most ``limit``."""
    query = query.strip()
    if not query:
        return SearchResult([], more=False)
    found: list[StructureRow] = []
    if id_error(query) is None:
        exact = session.get(StructureRow, query)
        if exact is not None:
            found.append(exact)
    by_address = session.scalars(
        select(StructureRow)
        .where(
            StructureRow.address.is_not(None),
            func.lower(StructureRow.address).contains(query.lower(), autoescape=True),
            StructureRow.id != query,
        )
        .order_by(StructureRow.id)
        .limit(limit + 1 - len(found))
    )
    found.extend(by_address)
    return SearchResult(found[:limit], more=len(found) > limit)


# --- Notices (Art. 13) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeView:
    id: str
    structure_id: str
    district: str | None  # None when the structure is not in the registry
    office: str
    application_id: str | None
    reasons: list[str]  # reason codes
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    @property
    def state(self) -> str:
        return "open" if self.acknowledged_at is None else "acknowledged"


@dataclass(frozen=True)
class NoticeFilter:
    office: str | None = None
    district: str | None = None
    state: str | None = None  # one of NOTICE_STATES
    min_age_days: int | None = None
    structure_id: str | None = None


def _reason_codes(text: str) -> list[str]:
    try:
        reasons = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [text]
    if not isinstance(reasons, list):
        return [str(reasons)]
    return [
        str(reason.get("code", reason)) if isinstance(reason, dict) else str(reason)
        for reason in reasons
    ]


def notices(
    session: Session, where: NoticeFilter, *, now: datetime, limit: int
) -> list[NoticeView]:
    """Notices to the working group, newest first, filtered by office, the structure's
    district, state (open or acknowledged) and age; at most ``limit``."""
    conditions: list[ColumnElement[bool]] = []
    if where.office:
        conditions.append(NotificationRow.office == where.office)
    if where.district:
        conditions.append(StructureRow.district == where.district)
    if where.state == "open":
        conditions.append(NotificationRow.acknowledged_at.is_(None))
    elif where.state == "acknowledged":
        conditions.append(NotificationRow.acknowledged_at.is_not(None))
    if where.min_age_days is not None:
        conditions.append(NotificationRow.created_at <= now - timedelta(days=where.min_age_days))
    if where.structure_id:
        conditions.append(NotificationRow.structure_id == where.structure_id)
    rows = session.execute(
        select(NotificationRow, StructureRow.district)
        .outerjoin(StructureRow, StructureRow.id == NotificationRow.structure_id)
        .where(and_(True, *conditions))
        .order_by(NotificationRow.created_at.desc(), NotificationRow.id)
        .limit(limit)
    )
    return [
        NoticeView(
            id=row.id,
            structure_id=row.structure_id,
            district=district,
            office=row.office,
            application_id=row.application_id,
            reasons=_reason_codes(row.reasons),
            created_at=row.created_at,
            acknowledged_at=row.acknowledged_at,
            acknowledged_by=row.acknowledged_by,
        )
        for row, district in rows
    ]


# --- Referrals (Art. 19) -------------------------------------------------------------------------


def referral_state(row: ReferralRow) -> ReferralState:
    """awaiting_referral (not referred), referred (not decided), decided (not answered), or
    answered."""
    if row.referred_at is None:
        return "awaiting_referral"
    if row.decided_at is None:
        return "referred"
    if row.answered_at is None:
        return "decided"
    return "answered"


def overdue_kind(row: ReferralRow, now: datetime) -> Lateness | None:
    """ "referral" when the finder referred late or has not referred and the due time passed;
    "answer" when the decision was reported back late or is still due and the time passed."""
    if row.referred_at is None:
        if now > row.referral_due:
            return "referral"
    elif row.referred_at > row.referral_due:
        return "referral"
    if row.decided_at is not None and row.answer_due is not None:
        if row.answered_at is None:
            if now > row.answer_due:
                return "answer"
        elif row.answered_at > row.answer_due:
            return "answer"
    return None


def responsible_for(row: ReferralRow, lateness: Lateness) -> str:
    """The department a late referral counts against: the finder for a late referral, the
    receiving department for a late answer."""
    if lateness == "answer" and row.referred_to is not None:
        return row.referred_to
    return row.found_by


@dataclass(frozen=True)
class ReferralView:
    case_id: str
    structure_id: str
    district: str
    case_kind: str
    found_by: str
    found_at: datetime
    referral_due: datetime
    referred_to: str | None
    referred_at: datetime | None
    decided_at: datetime | None
    decision: str | None
    answer_due: datetime | None
    answered_at: datetime | None
    state: ReferralState
    overdue: Lateness | None


def _view(row: ReferralRow, now: datetime) -> ReferralView:
    return ReferralView(
        case_id=row.case_id,
        structure_id=row.structure_id,
        district=row.district,
        case_kind=row.case_kind,
        found_by=row.found_by,
        found_at=row.found_at,
        referral_due=row.referral_due,
        referred_to=row.referred_to,
        referred_at=row.referred_at,
        decided_at=row.decided_at,
        decision=row.decision,
        answer_due=row.answer_due,
        answered_at=row.answered_at,
        state=referral_state(row),
        overdue=overdue_kind(row, now),
    )


@dataclass(frozen=True)
class ReferralFilter:
    office: str | None = None  # the finder or the receiving department
    district: str | None = None
    state: str | None = None  # one of REFERRAL_STATES
    min_age_days: int | None = None
    structure_id: str | None = None


def _state_condition(state: str) -> ColumnElement[bool]:
    r = ReferralRow
    return {
        "awaiting_referral": r.referred_at.is_(None),
        "referred": and_(r.referred_at.is_not(None), r.decided_at.is_(None)),
        "decided": and_(r.decided_at.is_not(None), r.answered_at.is_(None)),
        "answered": r.answered_at.is_not(None),
    }[state]


def referrals(
    session: Session, where: ReferralFilter, *, now: datetime, limit: int
) -> list[ReferralView]:
    """Referrals, newest finding first, filtered by department (finder or receiver),
    district, state and age (days since the finding); at most ``limit``."""
    conditions: list[ColumnElement[bool]] = []
    if where.office:
        conditions.append(
            or_(ReferralRow.found_by == where.office, ReferralRow.referred_to == where.office)
        )
    if where.district:
        conditions.append(ReferralRow.district == where.district)
    if where.state:
        conditions.append(_state_condition(where.state))
    if where.min_age_days is not None:
        conditions.append(ReferralRow.found_at <= now - timedelta(days=where.min_age_days))
    if where.structure_id:
        conditions.append(ReferralRow.structure_id == where.structure_id)
    rows = session.scalars(
        select(ReferralRow)
        .where(and_(True, *conditions))
        .order_by(ReferralRow.found_at.desc(), ReferralRow.case_id)
        .limit(limit)
    )
    return [_view(row, now) for row in rows]


def _may_be_overdue(now: datetime) -> ColumnElement[bool]:
    """A superset of the overdue referrals, in SQL; ``overdue_kind`` decides each."""
    r = ReferralRow
    return or_(
        and_(r.referred_at.is_(None), r.referral_due < now),
        r.referred_at > r.referral_due,
        and_(r.decided_at.is_not(None), r.answered_at.is_(None), r.answer_due < now),
        r.answered_at > r.answer_due,
    )


@dataclass(frozen=True)
class OverdueReport:
    referrals: list[ReferralView]
    per_department: list[tuple[str, int]]  # most overdue first, then by id


def overdue_referrals(
    session: Session,
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    district: str | None = None,
) -> OverdueReport:
    """The overdue referrals (found in [since, until) when given), counted per department
    they count against (``responsible_for``)."""
    conditions = [_may_be_overdue(now)]
    if since is not None:
        conditions.append(ReferralRow.found_at >= since)
    if until is not None:
        conditions.append(ReferralRow.found_at < until)
    if district:
        conditions.append(ReferralRow.district == district)
    rows = session.scalars(
        select(ReferralRow)
        .where(*conditions)
        .order_by(ReferralRow.referral_due, ReferralRow.case_id)
    )
    late: list[ReferralView] = []
    counts: Counter[str] = Counter()
    for row in rows:
        view = _view(row, now)
        if view.overdue is not None:
            late.append(view)
            counts[responsible_for(row, view.overdue)] += 1
    return OverdueReport(late, sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# --- Monthly figures (Art. 6) --------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    section: str  # cases_opened, open_blocking_cases, notices, overdue_referrals, ...
    key: str  # a case kind, an office, a department, ...
    value: int


def parse_month(text: str) -> date:
    """``YYYY-MM`` as the month's first day; ``ValueError`` naming the value otherwise."""
    try:
        year, month = text.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        first = date(int(year), int(month), 1)
    except ValueError:
        raise ValueError(f"month {text!r} is not YYYY-MM (e.g. 2026-10)") from None
    if first.year < 2000:
        raise ValueError(f"month {text!r} is before 2000")
    return first


def month_bounds(first: date) -> tuple[datetime, datetime]:
    """The month's start and end (exclusive) in the city's time, as UTC datetimes."""
    days = calendar.monthrange(first.year, first.month)[1]
    start = datetime(first.year, first.month, 1, tzinfo=CITY_TZ)
    return start.astimezone(UTC), (start + timedelta(days=days)).astimezone(UTC)


def month_figures(
    session: Session, first: date, *, now: datetime, district: str | None = None
) -> list[Figure]:
    """The month's figures: cases found in it by kind, notices received by office, overdue
    referrals of cases found in it per department; and, as of now, open blocking cases by kind
    and suspended parties."""
    start, end = month_bounds(first)
    in_district: list[ColumnElement[bool]] = (
        [] if not district else [StructureRow.district == district]
    )
    figures: list[Figure] = []
    opened = session.execute(
        select(CaseRow.kind, func.count())
        .join(StructureRow, StructureRow.id == CaseRow.structure_id)
        .where(CaseRow.opened >= start, CaseRow.opened < end, *in_district)
        .group_by(CaseRow.kind)
        .order_by(CaseRow.kind)
    )
    figures += [Figure("cases_opened", kind, int(n)) for kind, n in opened]
    blocking = session.execute(
        select(CaseRow.kind, func.count())
        .join(StructureRow, StructureRow.id == CaseRow.structure_id)
        .where(CaseRow.stage.in_(BLOCKING), *in_district)
        .group_by(CaseRow.kind)
        .order_by(CaseRow.kind)
    )
    figures += [Figure("open_blocking_cases", kind, int(n)) for kind, n in blocking]
    received = session.execute(
        select(NotificationRow.office, func.count())
        .outerjoin(StructureRow, StructureRow.id == NotificationRow.structure_id)
        .where(NotificationRow.created_at >= start, NotificationRow.created_at < end, *in_district)
        .group_by(NotificationRow.office)
        .order_by(NotificationRow.office)
    )
    figures += [Figure("notices", office, int(n)) for office, n in received]
    late = overdue_referrals(session, now=now, since=start, until=end, district=district)
    figures += [Figure("overdue_referrals", dept, n) for dept, n in late.per_department]
    suspended = session.scalar(
        select(func.count(func.distinct(CaseRow.party)))
        .join(StructureRow, StructureRow.id == CaseRow.structure_id)
        .where(
            CaseRow.party.is_not(None),
            CaseRow.party_suspended.is_(True),
            CaseRow.stage.in_(BLOCKING),
            *in_district,
        )
    )
    if suspended:
        figures.append(Figure("suspended_parties", "parties", int(suspended)))
    return figures
