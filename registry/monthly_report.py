"""The working group's monthly report to the city (Art. 6): one month's figures, for the city or
one district, as rows of (section, key, value), written as CSV and as a PNG chart.

The month is a calendar month in the city's local time (Asia/Shanghai, UTC+8): ``2026-10`` runs
from 2026-10-01 00:00 to 2026-11-01 00:00 Beijing time. A district is the structure's. The
sections, and what each counts:

* ``cases_opened`` (key ``kind/source``): cases whose ``opened`` time (when the case was found)
  falls in the month.
* ``cases_closed`` (key ``kind/source``): cases that reached an end stage (``rectified``,
  ``demolished``, ``closed``, ``dismissed``) in the month, dated by the registry's log: the
  first event recording the case in an end stage is in the month. End stages only lead to end
  stages (``registry.vocabulary.STAGE_MOVES``), so a case is counted once, in the month it
  ended; ``rectified`` then ``closed`` is one closing. A case imported already closed counts in
  the month of its import.
* ``open_blocking_cases`` (key: kind): cases in a blocking stage at the month's end, as the log
  stood then (the current stage, taken back through the changes logged since the month ended).
* ``checks`` (key ``caller/verdict``): the gate's answers in the month (``decision_log``), by
  kind of caller: ``utility:<water|power|gas|heat>``, ``registration``, ``office:<office>``.
  For a district, checks of structures in the registry in that district.
* ``notices`` (key: office): Art. 13 notices created in the month.
* ``overdue_referrals`` (key: department): Art. 19 deadlines that fell in the month and were
  missed: a referral not made by its ``referral_due`` counts against the finder, a decision not
  reported back by its ``answer_due`` against the receiver (deadlines still ahead at the time the
  report is made are not counted yet).
* ``suspended_parties`` (key ``parties``): organisations suspended at the month's end (named by a
  case suspending them, Art. 22, as the log stood then).

How it stays fast on a large registry: counting is done by SQL aggregates; the log is read only
where the month's figures need it. The log's order is its time order, so the events of the month
are a range of ``seq`` found by a binary search of a few rows; only the case events in it that
record an end stage are decoded, and, for the month's end, only the case events logged since.
On PostgreSQL the month's checks are found through a BRIN index on ``decision_log.decided_at``
(migration 0008), which costs the gate's writes nearly nothing.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import LargeBinary, String, and_, case, cast, func, literal, or_, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from registry.records import parse_time
from registry.storage import (
    CaseRow,
    Database,
    DecisionRow,
    EventRow,
    NotificationRow,
    ReferralRow,
    StructureRow,
    id_in,
)
from registry.vocabulary import BLOCKING_STAGES, CaseStage, Office, Utility

__all__ = [
    "CITY_TZ",
    "SECTIONS",
    "Figure",
    "MonthlyReport",
    "month_bounds",
    "monthly_report",
    "report_name",
    "write_chart",
    "write_csv",
]

CITY_TZ: Final = ZoneInfo("Asia/Shanghai")
"""The months of the report are the city's."""

SECTIONS: Final = (
    "cases_opened",
    "cases_closed",
    "open_blocking_cases",
    "checks",
    "notices",
    "overdue_referrals",
    "suspended_parties",
)

END_STAGES: Final = frozenset(
    {CaseStage.RECTIFIED, CaseStage.DEMOLISHED, CaseStage.CLOSED, CaseStage.DISMISSED}
)
"""Stages a case ends in; each leads only to another of them."""

_MONTH: Final = re.compile(r"(\d{4})-(\d{2})")
_CASE_EVENT: Final = b'"type":"case"'
_BATCH: Final = 5000  # ids per lookup


@dataclass(frozen=True, slots=True)
class Figure:
    section: str
    key: str
    value: int


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    """The month's figures (every section, in ``SECTIONS`` order, keys sorted)."""

    month: str  # YYYY-MM, Beijing time
    district: str | None  # None: the whole city
    figures: tuple[Figure, ...] = field(default=())

    def section(self, name: str) -> dict[str, int]:
        """One section's figures as ``{key: value}``."""
        return {f.key: f.value for f in self.figures if f.section == name}


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The month ``YYYY-MM`` in Beijing time, as [start, end) in UTC; ``ValueError`` naming the
    value when it is not a month."""
    found = _MONTH.fullmatch(month)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1970:
        raise ValueError(f"month: {month!r} is not a month written YYYY-MM (e.g. 2026-10)")
    year, number = int(found[1]), int(found[2])
    start = datetime(year, number, 1, tzinfo=CITY_TZ)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=CITY_TZ)
    return start.astimezone(UTC), end.astimezone(UTC)


def report_name(month: str, district: str | None) -> str:
    """``report-2026-10`` or ``report-2026-10-110228``: the files' name without suffix."""
    return f"report-{month}" + (f"-{district}" if district else "")


def monthly_report(
    db: Database, month: str, district: str | None = None, *, now: datetime | None = None
) -> MonthlyReport:
    """The figures of ``month`` (``YYYY-MM``) for ``district`` (None: the city), read in one
    consistent snapshot. ``now`` (default: the clock) only decides which deadlines of the month
    have passed yet."""
    start, end = month_bounds(month)
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    with db.snapshot() as session:
        if db.dialect == "postgresql":
            # One read of a month of answers: compiling it (JIT) costs more than it saves, and
            # its groups are counted in memory rather than sorted on disk.
            session.execute(text("SET LOCAL jit = off"))
            session.execute(text("SET LOCAL work_mem = '64MB'"))
        counts: dict[str, Counter[str]] = {}
        counts["cases_opened"] = _cases_opened(session, start, end, district)
        log = _Log(session)
        first, after = log.first_at_or_after(start), log.first_at_or_after(end)
        counts["cases_closed"] = _cases_closed(session, log, first, after, district)
        blocking, parties = _at_month_end(session, log, after, end, district)
        counts["open_blocking_cases"] = blocking
        counts["checks"] = _checks(session, start, end, district)
        counts["notices"] = _notices(session, start, end, district)
        counts["overdue_referrals"] = _overdue(session, start, min(end, now), district)
        counts["suspended_parties"] = Counter({"parties": len(parties)})
    figures = tuple(
        Figure(section, key, value)
        for section in SECTIONS
        for key, value in sorted(counts[section].items())
    )
    return MonthlyReport(month, district, figures)


# --- Sections from the tables ----------------------------------------------------------------


def _in_district(query: Any, structure_column: Any, district: str | None) -> Any:
    if district is None:
        return query
    return query.join(StructureRow, StructureRow.id == structure_column).where(
        StructureRow.district == district
    )


def _cases_opened(
    session: Session, start: datetime, end: datetime, district: str | None
) -> Counter[str]:
    query = select(CaseRow.kind, CaseRow.source, func.count()).where(
        CaseRow.opened >= start, CaseRow.opened < end
    )
    query = _in_district(query, CaseRow.structure_id, district)
    rows = session.execute(query.group_by(CaseRow.kind, CaseRow.source))
    return Counter({f"{kind}/{source}": int(n) for kind, source, n in rows})


def _named(field: str, values: Iterable[str], parsed: Any) -> Any:
    """``field:value`` for the request's ``field``. The gate writes requests as compact JSON
    (``"utility":"water"``, no spaces), and a quote inside a JSON string is escaped, so finding
    that text is finding the field; it costs a third of parsing the JSON, which is left for a
    value outside the vocabulary (``parsed``)."""
    whens = [
        (func.strpos(DecisionRow.request, f'"{field}":"{value}"') > 0, literal(f"{field}:{value}"))
        for value in values
    ]
    return case(*whens, else_=literal(f"{field}:") + cast(parsed, String))


def _caller_kind(dialect: str) -> Any:
    """The kind of caller from the request JSON: ``utility:water``, ``registration``,
    ``office:tax`` ..."""
    if dialect == "postgresql":
        request: Any = cast(DecisionRow.request, postgresql.JSON)
        utility = _named("utility", [u.value for u in Utility], request["utility"].astext)
        office = _named("office", [o.value for o in Office], request["office"].astext)
    else:
        utility = literal("utility:") + cast(
            func.json_extract(DecisionRow.request, "$.utility"), String
        )
        office = literal("office:") + cast(
            func.json_extract(DecisionRow.request, "$.office"), String
        )
    return case(
        (DecisionRow.check_type == "connection", utility),
        (DecisionRow.check_type == "premises", office),
        else_=DecisionRow.check_type,
    )


def _checks(session: Session, start: datetime, end: datetime, district: str | None) -> Counter[str]:
    caller = _caller_kind(session.get_bind().dialect.name).label("caller")
    query = select(caller, DecisionRow.verdict, func.count()).where(
        DecisionRow.decided_at >= start, DecisionRow.decided_at < end
    )
    query = _in_district(query, DecisionRow.structure_id, district)
    rows = session.execute(query.group_by(caller, DecisionRow.verdict))
    return Counter({f"{who}/{verdict}": int(n) for who, verdict, n in rows})


def _notices(
    session: Session, start: datetime, end: datetime, district: str | None
) -> Counter[str]:
    n = NotificationRow
    query = select(n.office, func.count()).where(n.created_at >= start, n.created_at < end)
    query = _in_district(query, n.structure_id, district)
    return Counter({office: int(c) for office, c in session.execute(query.group_by(n.office))})


def _overdue(
    session: Session, start: datetime, until: datetime, district: str | None
) -> Counter[str]:
    """Deadlines in [start, until) that were missed, per department responsible."""
    r = ReferralRow
    counts: Counter[str] = Counter()
    missed_referral = and_(
        r.referral_due >= start,
        r.referral_due < until,
        or_(r.referred_at.is_(None), r.referred_at > r.referral_due),
    )
    missed_answer = and_(
        r.answer_due >= start,
        r.answer_due < until,
        r.referred_to.is_not(None),
        or_(r.answered_at.is_(None), r.answered_at > r.answer_due),
    )
    for who, missed in ((r.found_by, missed_referral), (r.referred_to, missed_answer)):
        query = select(who, func.count()).where(missed)
        if district is not None:
            query = query.where(r.district == district)
        for department, n in session.execute(query.group_by(who)):
            counts[str(department)] += int(n)
    return counts


# --- Sections from the log -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CaseState:
    id: str
    structure: str
    kind: str
    stage: str
    source: str
    opened: datetime
    party: str | None
    suspended: bool


def _case_state(body: bytes) -> _CaseState | None:
    record = orjson.loads(body)["record"]
    if record.get("type") != "case":
        return None
    return _CaseState(
        record["id"],
        record["structure"],
        record["kind"],
        record["stage"],
        record["source"],
        parse_time(record["opened"]),
        record.get("party"),
        bool(record.get("party_suspended", False)),
    )


def _holds(column: Any, needle: bytes, dialect: str) -> Any:
    """``column`` (bytes) contains ``needle``: ``LIKE`` on PostgreSQL's bytea, ``instr`` on
    SQLite (whose ``LIKE`` does not look into blobs)."""
    value = literal(needle, LargeBinary)
    if dialect == "postgresql":
        pattern = literal(b"%" + needle + b"%", LargeBinary)
        return column.op("LIKE", is_comparison=True)(pattern)
    return func.instr(column, value) > 0


class _Log:
    """The registry's event log as the report reads it: by ranges of ``seq``."""

    def __init__(self, session: Session) -> None:
        self._session = session
        low, high = session.execute(select(func.min(EventRow.seq), func.max(EventRow.seq))).one()
        self.low: int = 0 if low is None else int(low)
        self.end: int = -1 if high is None else int(high)
        self.dialect = session.get_bind().dialect.name

    def _at(self, seq: int) -> tuple[int, datetime] | None:
        """The first event at or after ``seq``, with its time (from the body's first field)."""
        row = self._session.execute(
            select(EventRow.seq, func.substr(EventRow.body, 1, 48))
            .where(EventRow.seq >= seq)
            .order_by(EventRow.seq)
            .limit(1)
        ).first()
        if row is None:
            return None
        head = bytes(row[1])
        if not head.startswith(b'{"at":"'):
            raise ValueError(f"event {row[0]}: does not start with its time")
        return int(row[0]), parse_time(head[7 : head.index(b'"', 7)].decode())

    def first_at_or_after(self, moment: datetime) -> int:
        """The seq of the first event dated at or after ``moment`` (past the end when none)."""
        low, high = self.low, self.end + 1
        while low < high:
            middle = (low + high) // 2
            found = self._at(middle)
            if found is None or found[1] >= moment:
                high = middle
            else:
                low = found[0] + 1
        return low

    def case_events(
        self,
        first: int,
        after: int | None,
        *,
        stages: Iterable[CaseStage] = (),
        structures: Sequence[str] | None = None,
    ) -> Iterator[tuple[int, _CaseState]]:
        """Case events with ``first <= seq < after`` (``after`` None: to the end), in order;
        ``stages`` keeps those recording one of them; ``structures`` those of these."""
        wanted = [b'"stage":"' + stage.value.encode() + b'"' for stage in stages]
        conditions: list[Any] = [
            EventRow.seq >= first,
            _holds(EventRow.body, _CASE_EVENT, self.dialect),
        ]
        if after is not None:
            conditions.append(EventRow.seq < after)
        if wanted:
            conditions.append(or_(*(_holds(EventRow.body, w, self.dialect) for w in wanted)))
        batches: list[Sequence[str] | None] = [None]
        if structures is not None:
            batches = [structures[i : i + _BATCH] for i in range(0, len(structures), _BATCH)]
        for batch in batches:
            query = select(EventRow.seq, EventRow.body).where(*conditions)
            if batch is not None:
                query = query.where(id_in(EventRow.structure_id, batch, self.dialect))
            for seq, body in self._session.execute(query.order_by(EventRow.seq)):
                state = _case_state(bytes(body))
                if state is not None:
                    yield int(seq), state


def _districts(session: Session, structures: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(structures))
    found: dict[str, str] = {}
    dialect = session.get_bind().dialect.name
    for i in range(0, len(ids), _BATCH):
        query = select(StructureRow.id, StructureRow.district).where(
            id_in(StructureRow.id, ids[i : i + _BATCH], dialect)
        )
        found.update({i: d for i, d in session.execute(query)})
    return found


def _cases_closed(
    session: Session, log: _Log, first: int, after: int, district: str | None
) -> Counter[str]:
    ended: dict[str, _CaseState] = {}
    for _, state in log.case_events(first, after, stages=END_STAGES):
        ended.setdefault(state.id, state)  # the first end stage of the month
    if ended:
        structures = sorted({s.structure for s in ended.values()})
        for _, earlier in log.case_events(log.low, first, stages=END_STAGES, structures=structures):
            ended.pop(earlier.id, None)  # it ended before the month
    where = _districts(session, (s.structure for s in ended.values())) if district else {}
    return Counter(
        f"{s.kind}/{s.source}"
        for s in ended.values()
        if district is None or where.get(s.structure) == district
    )


def _at_month_end(
    session: Session, log: _Log, after: int, end: datetime, district: str | None
) -> tuple[Counter[str], set[str]]:
    """Blocking cases by kind, and suspended parties, as the log stood at the month's end.

    The current tables, with every case changed since the month's end taken back to its state
    then (its last event before ``after``; none: it did not exist yet)."""
    blocking_stages = sorted(s.value for s in BLOCKING_STAGES)
    changed: dict[str, str] = {}  # case id -> structure, for cases changed since
    for _, state in log.case_events(after, None):
        changed[state.id] = state.structure
    then: dict[str, _CaseState] = {}
    if changed:
        structures = sorted(set(changed.values()))
        for _, state in log.case_events(log.low, after, structures=structures):
            if state.id in changed:
                then[state.id] = state  # later events replace earlier ones

    blocking_query = select(CaseRow.kind, func.count()).where(
        CaseRow.stage.in_(blocking_stages), CaseRow.opened < end
    )
    blocking_query = _in_district(blocking_query, CaseRow.structure_id, district)
    blocking: Counter[str] = Counter(
        {kind: int(n) for kind, n in session.execute(blocking_query.group_by(CaseRow.kind))}
    )
    suspending_query = select(CaseRow.id, CaseRow.party).where(
        CaseRow.stage.in_(blocking_stages),
        CaseRow.party_suspended.is_(True),
        CaseRow.party.is_not(None),
        CaseRow.opened < end,
    )
    suspending_query = _in_district(suspending_query, CaseRow.structure_id, district)
    suspending: dict[str, str] = {i: p for i, p in session.execute(suspending_query)}

    if changed:
        # Take the changed cases out as they are now, and put them back as they were then.
        ids = sorted(changed)
        now_query = select(CaseRow.id, CaseRow.kind, CaseRow.stage, CaseRow.opened)
        now_query = _in_district(now_query, CaseRow.structure_id, district)
        dialect = session.get_bind().dialect.name
        for i in range(0, len(ids), _BATCH):
            batch = now_query.where(id_in(CaseRow.id, ids[i : i + _BATCH], dialect))
            for _, kind, stage, opened in session.execute(batch):
                if stage in blocking_stages and opened < end:
                    blocking[kind] -= 1
        for case_id in ids:
            suspending.pop(case_id, None)
        where = _districts(session, (s.structure for s in then.values())) if district else {}
        for state in then.values():
            if district is not None and where.get(state.structure) != district:
                continue
            if state.stage in blocking_stages and state.opened < end:
                blocking[state.kind] += 1
                if state.suspended and state.party is not None:
                    suspending[state.id] = state.party
    return +blocking, set(suspending.values())


# --- Output ----------------------------------------------------------------------------------


def write_csv(report: MonthlyReport, path: Path) -> None:
    """The figures as CSV (UTF-8): ``month,district,section,key,value``, one row a figure
    (district empty for the city)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["month", "district", "section", "key", "value"])
        for figure in report.figures:
            writer.writerow(
                [report.month, report.district or "", figure.section, figure.key, figure.value]
            )


_TITLES: Final = {
    "cases_opened": "Cases opened (kind/source)",
    "cases_closed": "Cases closed (kind/source)",
    "open_blocking_cases": "Open blocking cases at month end (kind)",
    "checks": "Gate checks (caller/verdict)",
    "notices": "Art. 13 notices (office)",
    "overdue_referrals": "Overdue referrals (department)",
    "suspended_parties": "Suspended parties at month end",
}


def write_chart(report: MonthlyReport, path: Path) -> None:
    """The figures as a PNG: one horizontal bar chart per section, every bar labelled."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    rows = [(s, sorted(report.section(s).items())) for s in SECTIONS]
    heights = [max(0.5, 0.26 * len(items) + 0.3) for _, items in rows]  # inches of bars
    gap, top, bottom = 0.85, 0.9, 0.4  # inches between charts, above and below them all
    tall = sum(heights) + gap * (len(rows) - 1) + top + bottom
    figure, axes = pyplot.subplots(
        len(rows),
        1,
        figsize=(11, tall),
        gridspec_kw={
            "height_ratios": heights,
            "hspace": gap / (sum(heights) / len(rows)),
            "left": 0.34,  # room for the longest keys: measuring each label costs more
            "right": 0.95,  # than drawing the chart
            "top": 1 - top / tall,
            "bottom": bottom / tall,
        },
    )
    where = f"district {report.district}" if report.district else "the whole city"
    figure.suptitle(
        f"Monthly report {report.month} (Beijing time), {where}", fontsize=13, y=1 - 0.3 / tall
    )
    for axis, (section, items) in zip(axes, rows, strict=True):
        axis.set_title(_TITLES[section], loc="left", fontsize=10)
        if not items:
            axis.text(0.5, 0.5, "none", ha="center", va="center", transform=axis.transAxes)
            axis.set_xticks([])
            axis.set_yticks([])
            continue
        labels = [key for key, _ in items]
        values = [value for _, value in items]
        bars = axis.barh(range(len(items)), values, color="#3b6ea5")
        axis.set_yticks(range(len(items)), labels, fontsize=8)
        axis.set_ylim(len(items) - 0.5, -0.5)  # the first key on top, no blank margin
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.bar_label(bars, fontsize=8, padding=2)
        axis.set_xlim(0, max(values) * 1.15 + 1)
        axis.tick_params(axis="x", labelsize=8)
    figure.savefig(path, format="png", dpi=100)
    pyplot.close(figure)
