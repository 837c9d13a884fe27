"""What the working group's page reads that no other part of the registry does: flagged
structures (a blocking case) with their cases, one structure's file, and the search by id or
address. Everything else the page shows (notices, referrals, parties, the monthly figures) comes
from ``registry.inbox`` and ``registry.monthly_report``, as the read RPCs and the command line
have it, so the page and they agree.

Each function takes an open ``Session`` (the page opens one read-only snapshot per request, off
the event loop) and returns plain, fully loaded objects the templates show; none of them writes.
Flagged structures are paged by number over a stable order (structure id), so a reader can jump
to a page; searches are bounded (``limit``) and say whether more matched. Address search is a
case-insensitive substring match with the query's ``%`` and ``_`` taken literally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from registry import inbox
from registry.storage import CaseRow, PermitRow, StructureRow
from registry.vocabulary import BLOCKING_STAGES, CaseStage, id_error

__all__ = [
    "FlaggedPage",
    "FlaggedStructure",
    "SearchResult",
    "Standing",
    "StructureDetail",
    "flagged_structures",
    "search_structures",
    "standing_of",
    "structure_detail",
]

BLOCKING: Final[tuple[str, ...]] = tuple(sorted(stage.value for stage in BLOCKING_STAGES))
DETAIL_LIMIT: Final = 200  # notices and referrals a structure's file lists, each


# --- Flagged structures --------------------------------------------------------------------------


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


# --- One structure's file ------------------------------------------------------------------------

Standing = Literal["flagged", "pending", "clear"]


def standing_of(cases: Sequence[CaseRow]) -> Standing:
    """What the gate makes of a structure's cases: flagged by a blocking case, pending on a
    reported lead alone, else clear (DOMAIN.md: CASE_PENDING only without a blocking case)."""
    if any(case.stage in BLOCKING for case in cases):
        return "flagged"
    if any(case.stage == CaseStage.REPORTED for case in cases):
        return "pending"
    return "clear"


@dataclass(frozen=True)
class StructureDetail:
    structure: StructureRow
    permits: list[PermitRow]  # newest first
    cases: list[CaseRow]  # blocking ones first
    parties: list[inbox.PartyView]  # the organisations its cases name
    notices: list[inbox.NoticeView]
    referrals: list[inbox.ReferralView]
    standing: Standing


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
    named = sorted({case.party for case in cases if case.party is not None})
    parties = [p for p in (inbox.get_party(session, party) for party in named) if p is not None]
    return StructureDetail(
        structure=structure,
        permits=permits,
        cases=cases,
        parties=parties,
        notices=list(
            inbox.notices(session, now=now, structure=structure_id, page_size=DETAIL_LIMIT).items
        ),
        referrals=list(
            inbox.referrals(session, now=now, structure=structure_id, page_size=DETAIL_LIMIT).items
        ),
        standing=standing_of(cases),
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
