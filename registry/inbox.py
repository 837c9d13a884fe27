"""What departments and the working group read: permits, cases, referrals, notices and parties,
filtered and paged, as typed views over one ``Session``.

These are projections of the tables the department writes keep (``violation_case`` with its
party columns, ``referral``, ``notification`` with its acknowledgement), joined to
``structure`` for the district. Nothing here writes. The Registry service's read RPCs
(``registry.department_reads``) and the working group's web page call these functions; each
takes ``now`` where a figure depends on the time (a notice's or referral's age, whether a
referral is overdue), so a caller, and a test, chooses the moment.

Paging is by keyset: each list has one total order (notices and referrals by their time, then
id; the others by id), and a page token is the URL-safe base64 of the last item's sort key
with the list's name, so a token is opaque to callers and fits only its own list. Rows written
between two pages neither shift nor repeat the rest: every row there when the listing began is
listed once, and a new row appears on a later page when it sorts after the last one given (else
in the next listing). A token that is not one raises ``BadPageToken``.

Referral states and lateness follow Art. 19 (``referral_state``, ``referral_overdue``):

* state: ``awaiting_referral`` (not referred yet), ``referred`` (not decided), ``decided`` (the
  decision not reported back), ``answered``;
* overdue: ``referral`` when it was not referred by ``referral_due`` (still not, and ``now`` is
  past it; or referred after it), else ``answer`` when the decision was not reported back by
  ``answer_due`` (likewise), else empty. A referral late on both counts shows ``referral``, the
  first lateness; ``overdue_by_department`` counts both, each against its department.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Generic, TypeVar

import orjson
from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from registry.departments import CASE_REMIT, LEAD
from registry.records import Case, Permit, format_time, parse_time
from registry.storage import CaseRow, NotificationRow, PermitRow, ReferralRow, StructureRow
from registry.vocabulary import BLOCKING_STAGES, CaseKind, CaseSource, CaseStage, party_key

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "BadPageToken",
    "CaseView",
    "NoticeState",
    "NoticeView",
    "Page",
    "PartyView",
    "PermitView",
    "ReferralState",
    "ReferralView",
    "case_view",
    "cases",
    "get_case",
    "get_notice",
    "get_party",
    "get_permit",
    "get_referral",
    "notice_view",
    "notices",
    "overdue_by_department",
    "parties",
    "permit_view",
    "permits",
    "referral_overdue",
    "referral_state",
    "referral_view",
    "referrals",
]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000

_BLOCKING: Final = sorted(stage.value for stage in BLOCKING_STAGES)

T = TypeVar("T")


class BadPageToken(ValueError):
    """A page token that this list did not give out (the message says why)."""


class NoticeState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


class ReferralState(StrEnum):
    AWAITING_REFERRAL = "awaiting_referral"
    REFERRED = "referred"
    DECIDED = "decided"
    ANSWERED = "answered"


# --- Views ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; ``next_page_token`` is None on the last page."""

    items: tuple[T, ...]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class PermitView:
    id: str
    structure_id: str
    kind: str
    status: str
    issued: datetime
    expires: datetime | None
    use: str | None


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case with what follows from its kind: who decides it and who leads (Art. 20)."""

    id: str
    structure_id: str
    district: str
    kind: str
    stage: str
    source: str
    opened: datetime
    party: str | None
    party_suspended: bool
    decider: str  # the role that files and decides cases of this kind (Art. 8-11)
    lead: str  # the lead role (Art. 20)
    blocking: bool  # in a stage that blocks connections and registrations


@dataclass(frozen=True, slots=True)
class NoticeView:
    id: str
    structure_id: str
    district: str | None  # None when the structure is not in the registry
    office: str
    application_id: str | None
    reasons: tuple[str, ...]  # the reason codes
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    state: NoticeState


@dataclass(frozen=True, slots=True)
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
    answer: str | None
    state: ReferralState
    overdue: str  # "referral", "answer" or "" (at the ``now`` it was read)


@dataclass(frozen=True, slots=True)
class PartyView:
    """An organisation named by cases, and whether it is suspended (Art. 22)."""

    id: str
    suspended: bool
    cases: tuple[str, ...]
    suspending_cases: tuple[str, ...]


# --- The Art. 19 rules, pure ----------------------------------------------------------------------


def referral_state(
    referred_at: datetime | None, decided_at: datetime | None, answered_at: datetime | None
) -> ReferralState:
    """Where a referral stands."""
    if referred_at is None:
        return ReferralState.AWAITING_REFERRAL
    if decided_at is None:
        return ReferralState.REFERRED
    if answered_at is None:
        return ReferralState.DECIDED
    return ReferralState.ANSWERED


def _late(done: datetime | None, due: datetime, now: datetime) -> bool:
    return done > due if done is not None else now > due


def referral_overdue(
    *,
    referral_due: datetime,
    referred_at: datetime | None,
    decided_at: datetime | None,
    answer_due: datetime | None,
    answered_at: datetime | None,
    now: datetime,
) -> str:
    """``"referral"``, ``"answer"`` or ``""``: which Art. 19 deadline was missed, as of ``now``."""
    if _late(referred_at, referral_due, now):
        return "referral"
    if decided_at is not None and answer_due is not None and _late(answered_at, answer_due, now):
        return "answer"
    return ""


def _late_referral(now: datetime) -> ColumnElement[bool]:
    r = ReferralRow
    return or_(and_(r.referred_at.is_(None), r.referral_due < now), r.referred_at > r.referral_due)


def _late_answer(now: datetime) -> ColumnElement[bool]:
    r = ReferralRow
    return and_(
        r.decided_at.is_not(None),
        or_(and_(r.answered_at.is_(None), r.answer_due < now), r.answered_at > r.answer_due),
    )


def _in_state(state: ReferralState) -> ColumnElement[bool]:
    r = ReferralRow
    if state is ReferralState.AWAITING_REFERRAL:
        return r.referred_at.is_(None)
    if state is ReferralState.REFERRED:
        return and_(r.referred_at.is_not(None), r.decided_at.is_(None))
    if state is ReferralState.DECIDED:
        return and_(r.decided_at.is_not(None), r.answered_at.is_(None))
    return r.answered_at.is_not(None)


# --- Page tokens ---------------------------------------------------------------------------------


def _token(list_name: str, key: Sequence[Any]) -> str:
    body = orjson.dumps([list_name, *key])
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _untoken(list_name: str, token: str, types: Sequence[type]) -> list[Any] | None:
    """The sort key a token carries (times as aware datetimes); None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadPageToken(f"page_token: not a page token of this list ({exc})") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadPageToken("page_token: not a page token of this list")
    if value[0] != list_name:
        raise BadPageToken(f"page_token: a token of the {value[0]!r} list, not of {list_name!r}")
    if len(value) != len(types) + 1:
        raise BadPageToken("page_token: not a page token of this list")
    key: list[Any] = []
    for text, kind in zip(value[1:], types, strict=True):
        if kind is datetime:
            try:
                key.append(parse_time(text))
            except ValueError:
                raise BadPageToken("page_token: not a page token of this list") from None
        else:
            key.append(text)
    return key


def _page_size(size: int) -> int:
    if size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size: {size} is not between 1 and {MAX_PAGE_SIZE}")
    return size


def _ages(column: Any, now: datetime, min_days: int | None, max_days: int | None) -> list[Any]:
    """Conditions for an age in days (``now - column``) between ``min_days`` and ``max_days``."""
    where: list[Any] = []
    if min_days is not None:
        where.append(column <= now - timedelta(days=min_days))
    if max_days is not None:
        where.append(column >= now - timedelta(days=max_days))
    return where


def _check_now(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now: a naive datetime (give an aware one)")
    return now.astimezone(UTC)


# --- Permits -------------------------------------------------------------------------------------


def _permit(row: PermitRow) -> PermitView:
    return PermitView(
        row.id, row.structure_id, row.kind, row.status, row.issued, row.expires, row.use
    )


def permit_view(permit: Permit) -> PermitView:
    """A permit record (as a write made it) as the departments see it."""
    return PermitView(
        permit.id,
        permit.structure,
        permit.kind.value,
        permit.status.value,
        permit.issued,
        permit.expires,
        permit.use,
    )


def get_permit(session: Session, permit_id: str) -> PermitView | None:
    row = session.get(PermitRow, permit_id)
    return None if row is None else _permit(row)


def permits(
    session: Session,
    *,
    structure: str | None = None,
    kind: str | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Page[PermitView]:
    """Permits by id, optionally of one structure or one kind."""
    size = _page_size(page_size)
    after = _untoken("permits", page_token, [str])
    query = select(PermitRow)
    if structure is not None:
        query = query.where(PermitRow.structure_id == structure)
    if kind is not None:
        query = query.where(PermitRow.kind == kind)
    if after is not None:
        query = query.where(PermitRow.id > after[0])
    rows = list(session.scalars(query.order_by(PermitRow.id).limit(size + 1)))
    items = tuple(_permit(r) for r in rows[:size])
    more = len(rows) > size
    return Page(items, _token("permits", [items[-1].id]) if more else None)


# --- Cases ---------------------------------------------------------------------------------------


def _case(row: CaseRow, district: str) -> CaseView:
    case = Case(
        row.id,
        row.structure_id,
        CaseKind(row.kind),
        CaseStage(row.stage),
        CaseSource(row.source),
        row.opened,
        row.party,
        bool(row.party_suspended),
    )
    return case_view(case, district)


def case_view(case: Case, district: str) -> CaseView:
    """A case record as the departments see it, with who decides and who leads its kind."""
    return CaseView(
        id=case.id,
        structure_id=case.structure,
        district=district,
        kind=case.kind.value,
        stage=case.stage.value,
        source=case.source.value,
        opened=case.opened,
        party=case.party,
        party_suspended=case.party_suspended,
        decider=CASE_REMIT[case.kind].value,
        lead=LEAD[case.kind].value,
        blocking=case.stage in BLOCKING_STAGES,
    )


def _cases_query() -> Select[CaseRow, str]:
    return select(CaseRow, StructureRow.district).join(
        StructureRow, StructureRow.id == CaseRow.structure_id
    )


def get_case(session: Session, case_id: str) -> CaseView | None:
    row = session.execute(_cases_query().where(CaseRow.id == case_id)).first()
    return None if row is None else _case(row[0], row[1])


def cases(
    session: Session,
    *,
    structure: str | None = None,
    district: str | None = None,
    kind: str | None = None,
    party: str | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Page[CaseView]:
    """Cases by id, optionally of one structure, district, kind or party."""
    size = _page_size(page_size)
    after = _untoken("cases", page_token, [str])
    query = _cases_query()
    if structure is not None:
        query = query.where(CaseRow.structure_id == structure)
    if district is not None:
        query = query.where(StructureRow.district == district)
    if kind is not None:
        query = query.where(CaseRow.kind == kind)
    if party is not None:
        query = query.where(_party_column() == party_key(party))
    if after is not None:
        query = query.where(CaseRow.id > after[0])
    rows = session.execute(query.order_by(CaseRow.id).limit(size + 1)).all()
    items = tuple(_case(r[0], r[1]) for r in rows[:size])
    more = len(rows) > size
    return Page(items, _token("cases", [items[-1].id]) if more else None)


# --- Notices (Art. 13) ---------------------------------------------------------------------------


def notice_view(row: NotificationRow, district: str | None) -> NoticeView:
    reasons = orjson.loads(row.reasons)
    codes = tuple(r["code"] if isinstance(r, dict) else str(r) for r in reasons)
    return NoticeView(
        id=row.id,
        structure_id=row.structure_id,
        district=district,
        office=row.office,
        application_id=row.application_id,
        reasons=codes,
        created_at=row.created_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        state=NoticeState.OPEN if row.acknowledged_at is None else NoticeState.ACKNOWLEDGED,
    )


def _notices_query() -> Select[NotificationRow, str]:
    return select(NotificationRow, StructureRow.district).outerjoin(
        StructureRow, StructureRow.id == NotificationRow.structure_id
    )


def get_notice(session: Session, notice_id: str) -> NoticeView | None:
    row = session.execute(_notices_query().where(NotificationRow.id == notice_id)).first()
    return None if row is None else notice_view(row[0], row[1])


def notices(
    session: Session,
    *,
    now: datetime,
    office: str | None = None,
    district: str | None = None,
    state: NoticeState | str | None = None,
    min_age_days: int | None = None,
    max_age_days: int | None = None,
    structure: str | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Page[NoticeView]:
    """The working group's notices, oldest first (by ``created_at``, then id).

    ``state`` is ``open`` or ``acknowledged``; the age is ``now - created_at`` in days, at least
    ``min_age_days`` and at most ``max_age_days``; ``district`` is the structure's.
    """
    now = _check_now(now)
    size = _page_size(page_size)
    after = _untoken("notices", page_token, [datetime, str])
    n = NotificationRow
    query = _notices_query()
    if office is not None:
        query = query.where(n.office == office)
    if district is not None:
        query = query.where(StructureRow.district == district)
    if state is not None:
        try:
            wanted = NoticeState(state)
        except ValueError:
            raise ValueError(f"state: {state!r} is not open or acknowledged") from None
        opened = wanted is NoticeState.OPEN
        query = query.where(
            n.acknowledged_at.is_(None) if opened else n.acknowledged_at.is_not(None)
        )
    if structure is not None:
        query = query.where(n.structure_id == structure)
    query = query.where(*_ages(n.created_at, now, min_age_days, max_age_days))
    if after is not None:
        query = query.where(
            or_(n.created_at > after[0], and_(n.created_at == after[0], n.id > after[1]))
        )
    rows = session.execute(query.order_by(n.created_at, n.id).limit(size + 1)).all()
    items = tuple(notice_view(r[0], r[1]) for r in rows[:size])
    more = len(rows) > size
    last = items[-1] if items else None
    token = _token("notices", [format_time(last.created_at), last.id]) if more and last else None
    return Page(items, token)


# --- Referrals (Art. 19) -------------------------------------------------------------------------


def referral_view(row: ReferralRow, now: datetime) -> ReferralView:
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
        answer=row.answer,
        state=referral_state(row.referred_at, row.decided_at, row.answered_at),
        overdue=referral_overdue(
            referral_due=row.referral_due,
            referred_at=row.referred_at,
            decided_at=row.decided_at,
            answer_due=row.answer_due,
            answered_at=row.answered_at,
            now=now,
        ),
    )


def get_referral(session: Session, case_id: str, *, now: datetime) -> ReferralView | None:
    """The referral of a case, with its state and lateness as of ``now``."""
    row = session.get(ReferralRow, case_id)
    return None if row is None else referral_view(row, _check_now(now))


def referrals(
    session: Session,
    *,
    now: datetime,
    department: str | None = None,
    district: str | None = None,
    state: ReferralState | str | None = None,
    overdue_only: bool = False,
    min_age_days: int | None = None,
    max_age_days: int | None = None,
    structure: str | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Page[ReferralView]:
    """Referrals, oldest finding first (by ``found_at``, then case id).

    ``department`` matches the finder or the receiver; the age is ``now - found_at`` in days;
    ``overdue_only`` keeps those late on either count as of ``now``.
    """
    now = _check_now(now)
    size = _page_size(page_size)
    after = _untoken("referrals", page_token, [datetime, str])
    r = ReferralRow
    query = select(r)
    if department is not None:
        query = query.where(or_(r.found_by == department, r.referred_to == department))
    if district is not None:
        query = query.where(r.district == district)
    if state is not None:
        try:
            wanted = ReferralState(state)
        except ValueError:
            names = ", ".join(s.value for s in ReferralState)
            raise ValueError(f"state: {state!r} is not one of {names}") from None
        query = query.where(_in_state(wanted))
    if overdue_only:
        query = query.where(or_(_late_referral(now), _late_answer(now)))
    if structure is not None:
        query = query.where(r.structure_id == structure)
    query = query.where(*_ages(r.found_at, now, min_age_days, max_age_days))
    if after is not None:
        query = query.where(
            or_(r.found_at > after[0], and_(r.found_at == after[0], r.case_id > after[1]))
        )
    rows = list(session.scalars(query.order_by(r.found_at, r.case_id).limit(size + 1)))
    items = tuple(referral_view(row, now) for row in rows[:size])
    more = len(rows) > size
    last = items[-1] if items else None
    token = (
        _token("referrals", [format_time(last.found_at), last.case_id]) if more and last else None
    )
    return Page(items, token)


def overdue_by_department(session: Session, now: datetime) -> dict[str, int]:
    """Overdue referrals per responsible department as of ``now``: the finder for each late
    referral, the receiver for each late answer (a referral late on both counts for both)."""
    now = _check_now(now)
    r = ReferralRow
    counts: dict[str, int] = {}
    late_referrals = select(r.found_by, func.count()).where(_late_referral(now))
    late_answers = select(r.referred_to, func.count()).where(
        _late_answer(now), r.referred_to.is_not(None)
    )
    for query, column in ((late_referrals, r.found_by), (late_answers, r.referred_to)):
        for department, count in session.execute(query.group_by(column)):
            if department is not None:
                counts[department] = counts.get(department, 0) + int(count)
    return dict(sorted(counts.items()))


# --- Parties (Art. 22) ---------------------------------------------------------------------------


def _suspending() -> ColumnElement[int]:
    """1 for a case that suspends its party (suspended, and in a blocking stage), else 0."""
    return case((and_(CaseRow.party_suspended.is_(True), CaseRow.stage.in_(_BLOCKING)), 1), else_=0)


def _party_column() -> ColumnElement[str]:
    """A case's party as its comparison key (``party_key``: ids are ASCII, so upper case)."""
    return func.upper(CaseRow.party)


def _party_views(session: Session, ids: Sequence[str]) -> list[PartyView]:
    """The parties ``ids`` (party keys), each with the cases naming it however it was typed."""
    if not ids:
        return []
    key = _party_column()
    rows = session.execute(
        select(key, CaseRow.id, _suspending()).where(key.in_(list(ids))).order_by(key, CaseRow.id)
    ).all()
    named: dict[str, list[str]] = {i: [] for i in ids}
    suspending: dict[str, list[str]] = {i: [] for i in ids}
    for party, case_id, suspends in rows:
        if party is None or party not in named:
            continue
        named[party].append(case_id)
        if suspends:
            suspending[party].append(case_id)
    return [PartyView(i, bool(suspending[i]), tuple(named[i]), tuple(suspending[i])) for i in ids]


def get_party(session: Session, party_id: str) -> PartyView | None:
    """An organisation named by at least one case; None when no case names it."""
    views = _party_views(session, [party_key(party_id)])
    return views[0] if views and views[0].cases else None


def parties(
    session: Session,
    *,
    suspended: bool | None = None,
    district: str | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Page[PartyView]:
    """Organisations named by cases, by id; ``suspended`` keeps those suspended (True) or not
    (False); ``district`` those named by a case on a structure of that district."""
    size = _page_size(page_size)
    after = _untoken("parties", page_token, [str])
    key = _party_column()
    query = select(key).where(CaseRow.party.is_not(None))
    if district is not None:
        in_district = (
            select(key)
            .join(StructureRow, StructureRow.id == CaseRow.structure_id)
            .where(StructureRow.district == district)
        )
        query = query.where(key.in_(in_district))
    if after is not None:
        query = query.where(key > after[0])
    query = query.group_by(key)
    if suspended is not None:
        flag = func.max(_suspending())
        query = query.having(flag == 1 if suspended else flag == 0)
    ids = [p for p in session.scalars(query.order_by(key).limit(size + 1)) if p]
    items = tuple(_party_views(session, ids[:size]))
    more = len(ids) > size
    return Page(items, _token("parties", [items[-1].id]) if more else None)
