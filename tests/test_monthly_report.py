"""The Art. 6 monthly report from prepared data, on SQLite and PostgreSQL.

The registry is filled by the importer at chosen times (so the log dates each change), and the
decision log, notices and referrals with the ORM. Every figure is checked against a count made
here, independently, from the same prepared data (Python over the lists the test wrote), not
against the report's own SQL. Then the CSV, the PNG and the command line.
"""

from __future__ import annotations

import csv
import json
import struct
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from registry_support import Registry, case, jsonl, structure

from registry.admin import load_registry_signer
from registry.importer import import_lines
from registry.monthly_report import (
    SECTIONS,
    month_bounds,
    monthly_report,
    write_chart,
    write_csv,
)
from registry.storage import Database, DecisionRow, NotificationRow, ReferralRow

T = datetime.fromisoformat
OCT_START, OCT_END = month_bounds("2026-10")


def _import(reg: Registry, db: Database, records: list[dict[str, Any]], at: datetime) -> None:
    signer = load_registry_signer(db, reg.keys)
    lines = [line.encode() for line in jsonl(records).splitlines()]
    import_lines(db, lines, signer, state_dir=reg.state_dir, now=at)


def _with(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**record, **changes}


@pytest.fixture
def prepared(reg: Registry) -> dict[str, Any]:
    """A registry of two districts, its cases changed before, during and after October 2026."""
    db = Database(reg.url)
    d1 = [structure(f"S1-{i}") for i in range(4)]
    d2 = [_with(structure(f"S2-{i}"), district="220101") for i in range(3)]
    c = {
        # opened in October (Beijing time: 2026-10-01 00:30 is 2026-09-30 16:30 UTC)
        "A": case("C-A", "S1-0", "filed", opened="2026-09-30T16:30:00Z", source="report"),
        "B": case(
            "C-B", "S1-1", "stop_order", "deviates_from_permit", opened="2026-10-12T00:00:00Z"
        ),
        "C": case("C-C", "S2-0", "filed", opened="2026-10-31T15:59:00Z", source="media"),
        # opened before October (the last minute of September, Beijing time)
        "D": case("C-D", "S1-2", "rectify_order", opened="2026-09-30T15:59:00Z"),
        "E": case(
            "C-E", "S2-1", "demolition_order", "illegal_land_use", opened="2026-05-01T00:00:00Z"
        ),
        "F": case("C-F", "S1-3", "rectified", opened="2026-03-01T00:00:00Z"),
        # opened after October
        "G": case("C-G", "S2-2", "filed", opened="2026-10-31T16:00:00Z"),
    }
    c["B"]["party"] = "91110000MA0000001X"
    c["B"]["party_suspended"] = True
    c["E"]["party"] = "91110000MA0000002Y"
    c["E"]["party_suspended"] = True
    # September: the structures and the cases then known (F already rectified: it ended before).
    _import(reg, db, [*d1, *d2, c["D"], c["E"], c["F"]], T("2026-09-20T08:00:00+00:00"))
    # October: A, B, C found; D rectified (ends); F closed (ended before: not counted again).
    oct_records = [
        c["A"],
        c["B"],
        c["C"],
        _with(c["D"], stage="rectified"),
        _with(c["F"], stage="closed"),
    ]
    _import(reg, db, oct_records, T("2026-10-15T02:00:00+00:00"))
    # November: E demolished and B closed (both were blocking at October's end), G found.
    nov_records = [_with(c["E"], stage="demolished"), _with(c["B"], stage="closed"), c["G"]]
    _import(reg, db, nov_records, T("2026-11-03T02:00:00+00:00"))

    decisions = []
    kinds = [
        ("connection", {"utility": "water"}, "ALLOW"),
        ("connection", {"utility": "power"}, "DENY"),
        ("registration", {"kind": "transfer"}, "DENY"),
        ("premises", {"office": "tax", "declared_use": "office"}, "NOTIFY"),
        ("premises", {"office": "fire", "declared_use": "office"}, "REVIEW"),
        ("connection", {"utility": "steam"}, "REVIEW"),  # outside the vocabulary
    ]
    times = [
        OCT_START - timedelta(seconds=1),
        OCT_START,
        OCT_START + timedelta(days=9),
        OCT_END - timedelta(microseconds=1),
        OCT_END,
    ]
    structures = ["S1-0", "S2-0", "NOT-REGISTERED"]
    n = 0
    for i, at in enumerate(times):
        for j, (check_type, fields, verdict) in enumerate(kinds):
            for k in range(1 + (i + j) % 3):
                sid = structures[(i + j + k) % 3]
                request = {"type": check_type, "structure_id": sid, **fields}
                decisions.append((f"D-{n:05d}", at, check_type, sid, request, verdict))
                n += 1
    notices = [
        ("N-1", "S1-0", "tax", OCT_START + timedelta(hours=1)),
        ("N-2", "S2-0", "tax", OCT_START + timedelta(days=3)),
        ("N-3", "S1-1", "health", OCT_END - timedelta(seconds=1)),
        ("N-4", "S1-1", "health", OCT_END),
        ("N-5", "S2-1", "culture", OCT_START - timedelta(days=2)),
    ]
    day = timedelta(days=1)
    referrals = [
        # case, structure, district, finder, due, referred_to, referred_at, answer_due,
        # answered_at
        ("R-1", "S1-0", "110228", "city-planning", OCT_START + 2 * day, None, None, None, None),
        (
            "R-2",
            "S1-1",
            "110228",
            "city-planning",
            OCT_START + 3 * day,
            "city-land",
            OCT_START + 4 * day,
            OCT_START + 9 * day,
            OCT_START + 8 * day,
        ),
        (
            "R-3",
            "S2-0",
            "220101",
            "city-housing",
            OCT_START + 5 * day,
            "city-land",
            OCT_START + 4 * day,
            OCT_START + 12 * day,
            None,
        ),
        ("R-4", "S2-1", "220101", "city-land", OCT_START - 3 * day, None, None, None, None),
        (
            "R-5",
            "S1-2",
            "110228",
            "city-housing",
            OCT_END - day,
            "city-planning",
            OCT_START,
            OCT_END + 2 * day,
            None,
        ),
    ]
    with db.session() as session:
        for did, at, check_type, sid, request, verdict in decisions:
            session.add(
                DecisionRow(
                    decision_id=did,
                    decided_at=at,
                    caller="test",
                    check_type=check_type,
                    structure_id=sid,
                    request=json.dumps(
                        request, separators=(",", ":") if int(did[2:]) % 2 else None
                    ),
                    verdict=verdict,
                    reasons="[]",
                    registry_version=1,
                    notification_id=None,
                )
            )
        for nid, sid, office, at in notices:
            session.add(
                NotificationRow(
                    id=nid,
                    structure_id=sid,
                    office=office,
                    application_id=nid,
                    reasons='[{"code":"USE_MISMATCH"}]',
                    created_at=at,
                )
            )
        for cid, sid, district, finder, due, to, referred_at, answer_due, answered_at in referrals:
            session.add(
                ReferralRow(
                    case_id=cid,
                    structure_id=sid,
                    district=district,
                    case_kind="no_planning_permit",
                    found_by=finder,
                    found_at=due - 2 * day,
                    referral_due=due,
                    referred_to=to,
                    referred_at=referred_at,
                    decided_at=None if answer_due is None else answer_due - 2 * day,
                    decision=None if answer_due is None else "stop_order",
                    answer_due=answer_due,
                    answered_at=answered_at,
                )
            )
    db.dispose()
    return {"cases": c, "decisions": decisions, "notices": notices, "referrals": referrals}


DISTRICT_OF = {**{f"S1-{i}": "110228" for i in range(4)}, **{f"S2-{i}": "220101" for i in range(3)}}


def _expected(
    prepared: dict[str, Any], district: str | None, now: datetime
) -> dict[str, Counter[str]]:
    """The figures, counted here from what the fixture wrote."""
    c = prepared["cases"]

    def here(sid: str) -> bool:
        return district is None or DISTRICT_OF.get(sid) == district

    def opened(record: dict[str, Any]) -> datetime:
        return T(record["opened"].replace("Z", "+00:00"))

    out: dict[str, Counter[str]] = {s: Counter() for s in SECTIONS}
    for r in c.values():
        if OCT_START <= opened(r) < OCT_END and here(r["structure"]):
            out["cases_opened"][f"{r['kind']}/{r['source']}"] += 1
    # Ended in October: D (rectified). F ended in September; B and E ended in November.
    if here("S1-2"):
        out["cases_closed"][f"{c['D']['kind']}/{c['D']['source']}"] += 1
    # Blocking at October's end: A, B (stop_order), C (filed), E (demolition_order).
    # D was rectified in October; G did not exist yet.
    for key in ("A", "B", "C", "E"):
        if here(c[key]["structure"]):
            out["open_blocking_cases"][c[key]["kind"]] += 1
    for _, at, check_type, sid, request, verdict in prepared["decisions"]:
        if OCT_START <= at < OCT_END and here(sid):
            who = {
                "connection": f"utility:{request.get('utility')}",
                "premises": f"office:{request.get('office')}",
            }.get(check_type, check_type)
            out["checks"][f"{who}/{verdict}"] += 1
    for _, sid, office, at in prepared["notices"]:
        if OCT_START <= at < OCT_END and here(sid):
            out["notices"][office] += 1
    until = min(OCT_END, now)
    for _, _, d, finder, due, to, referred_at, answer_due, answered_at in prepared["referrals"]:
        if district is not None and d != district:
            continue
        if OCT_START <= due < until and (referred_at is None or referred_at > due):
            out["overdue_referrals"][finder] += 1
        if (
            answer_due is not None
            and OCT_START <= answer_due < until
            and (answered_at is None or answered_at > answer_due)
        ):
            out["overdue_referrals"][to] += 1
    # B and E suspend their parties at October's end (both lifted by November's end stages).
    out["suspended_parties"]["parties"] = sum(here(c[k]["structure"]) for k in ("B", "E"))
    return out


@pytest.mark.parametrize("district", [None, "110228", "220101"])
def test_figures_match_an_independent_count(
    reg: Registry, prepared: dict[str, Any], district: str | None
) -> None:
    db = Database(reg.url)
    now = T("2026-12-01T00:00:00+00:00")
    report = monthly_report(db, "2026-10", district, now=now)
    db.dispose()
    assert report.month == "2026-10" and report.district == district
    expected = _expected(prepared, district, now)
    for section in SECTIONS:
        assert report.section(section) == {k: v for k, v in expected[section].items() if v}, section
    assert report.section("checks"), "the prepared month has checks"
    assert [f.section for f in report.figures] == sorted(
        (f.section for f in report.figures), key=SECTIONS.index
    )


def test_deadlines_not_yet_passed_are_not_counted(reg: Registry, prepared: dict[str, Any]) -> None:
    db = Database(reg.url)
    mid_october = OCT_START + timedelta(days=6)
    early = monthly_report(db, "2026-10", now=mid_october).section("overdue_referrals")
    db.dispose()
    expected = _expected(prepared, None, mid_october)["overdue_referrals"]
    assert early == {k: v for k, v in expected.items() if v}
    assert "city-housing" not in early  # R-3's and R-5's deadlines were still ahead


def test_csv_and_chart(reg: Registry, prepared: dict[str, Any], tmp_path: Path) -> None:
    db = Database(reg.url)
    report = monthly_report(db, "2026-10", "110228", now=T("2026-12-01T00:00:00+00:00"))
    db.dispose()
    csv_path, png_path = tmp_path / "r.csv", tmp_path / "r.png"
    write_csv(report, csv_path)
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["month", "district", "section", "key", "value"]
    assert rows[1:] == [
        ["2026-10", "110228", f.section, f.key, str(f.value)] for f in report.figures
    ]
    write_chart(report, png_path)
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 800 <= width <= 1600 and 600 <= height <= 6000, (width, height)
    assert 20_000 < len(data) < 2_000_000


def test_the_command(reg: Registry, prepared: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    from registry_support import invoke

    result = invoke(
        [
            "report",
            "monthly",
            "--month",
            "2026-10",
            "--district",
            "220101",
            "--db",
            reg.url,
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    csv_path, png_path = out / "report-2026-10-220101.csv", out / "report-2026-10-220101.png"
    assert str(csv_path) in result.output and str(png_path) in result.output
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    expected = _expected(prepared, "220101", datetime.now(UTC))
    got: dict[str, Counter[str]] = {s: Counter() for s in SECTIONS}
    for row in rows:
        assert row["district"] == "220101" and row["month"] == "2026-10"
        got[row["section"]][row["key"]] = int(row["value"])
    assert got == {s: Counter({k: v for k, v in expected[s].items() if v}) for s in SECTIONS}
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    city = invoke(["report", "monthly", "--month", "2026-10", "--db", reg.url, "--out", str(out)])
    assert city.exit_code == 0, city.output
    assert (out / "report-2026-10.csv").exists()


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "26-10", "2026-00", "October", ""])
def test_a_bad_month_is_refused(reg: Registry, month: str, tmp_path: Path) -> None:
    from registry_support import invoke

    result = invoke(
        ["report", "monthly", "--month", month, "--db", reg.url, "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--month" in result.output and "YYYY-MM" in result.output
    assert not list(tmp_path.glob("report-*"))
    with pytest.raises(ValueError, match="month: '2026-13' is not a month"):
        month_bounds("2026-13")


def test_month_bounds_are_beijing_time() -> None:
    start, end = month_bounds("2026-12")
    assert start == T("2026-11-30T16:00:00+00:00")
    assert end == T("2026-12-31T16:00:00+00:00")


def test_events_dated_by_the_import(reg: Registry, prepared: dict[str, Any]) -> None:
    """The fixture's premise: the log dates each change by the import that made it."""
    rows = reg.sql("SELECT body FROM event ORDER BY seq")
    times = sorted({orjson.loads(bytes(r[0]))["at"] for r in rows})
    assert times == ["2026-09-20T08:00:00Z", "2026-10-15T02:00:00Z", "2026-11-03T02:00:00Z"]
