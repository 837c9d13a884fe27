"""The Art. 6 monthly report on a city-sized registry: 1,000,000 structures and a year of the
gate's decisions on PostgreSQL (issue 10's target: the report in under 10 s).

``python -m benchmarks.monthly_report --db postgresql+psycopg://postgres@127.0.0.1/permitgate_report_bench``

The database must exist (``createdb permitgate_report_bench``); it is filled once and reused by
later runs while its fill matches the options (``registry_meta`` key ``report_bench``), so a
second run only times. ``--refill`` fills it again. The fill (COPY, in the tables' own formats):

* 1,000,000 structures in 16 districts, logged as one import on 2025-09-01;
* 5% of them with a case (50,000), each found over two years and logged with its history: the
  case appears at its finding (or the import) and moves stage by stage, 5 to 60 days apart, to
  the stage it is in now; a fifth name a party, some suspended (Art. 22); events are in time
  order, as the registry writes them;
* a year of decisions (2025-11-01 to 2026-10-31, Beijing time) at ``--per-day`` answers a day
  (default 27,400: 10 million a year, several times what a city of a million buildings asks:
  its utilities' connections, its housing registry's transfers and mortgages and its licensing
  offices' checks come to one to three million a year); by kind of caller 40% connections (the
  four utilities), 35% registrations, 25% premises checks (seven offices), in time order as the
  gate writes them;
* 20 Art. 13 notices and 10 referrals a day (a tenth of them late, on either count).

It then times ``monthly_report`` for the last month of that year (2026-10) for the whole city and
for one district, the median of ``--rounds`` runs each (the first run is one of them: nothing is
warmed on purpose beyond what the fill left in the cache), and writing the CSV and the chart.
Results: ``benchmarks/results/monthly_report.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from registry.canonical import canonical_json
from registry.log import event_bytes
from registry.monthly_report import (
    month_bounds,
    monthly_report,
    write_chart,
    write_csv,
)
from registry.records import format_time
from registry.storage import Database
from registry.vocabulary import CaseKind, CaseSource, Office, Utility

RESULTS = Path(__file__).with_name("results")
MONTH = "2026-10"
IMPORT_AT = datetime(2025, 9, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
DISTRICTS = [f"1101{n:02d}" for n in range(1, 17)]
PATHS = {  # the stages a case goes through to reach where it is now
    "reported": ["reported"],
    "filed": ["filed"],
    "stop_order": ["filed", "stop_order"],
    "rectify_order": ["filed", "rectify_order"],
    "demolition_order": ["filed", "stop_order", "demolition_order"],
    "rectified": ["filed", "rectify_order", "rectified"],
    "demolished": ["filed", "demolition_order", "demolished"],
    "closed": ["filed", "stop_order", "closed"],
    "dismissed": ["reported", "dismissed"],
}
STAGE_WEIGHTS = [5, 20, 10, 10, 5, 10, 5, 30, 5]
VERDICTS = (["ALLOW"] * 80) + (["DENY"] * 12) + (["REVIEW"] * 5) + (["NOTIFY"] * 3)


def structure_id(n: int) -> str:
    return f"{DISTRICTS[n % len(DISTRICTS)]}-{n // len(DISTRICTS):06d}"


def _copy(conn: Any, table: str, columns: str, lines: Iterator[str], chunk: int = 50_000) -> int:
    """COPY text lines (tab-separated, ``\\N`` for null) into ``table``; how many."""
    count = 0
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for line in lines:
            buffer.write(line)
            count += 1
            if count % chunk == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return count


def _t(at: datetime) -> str:
    return at.isoformat()


def fill(db: Database, structures: int, per_day: int, seed: int) -> dict[str, int]:
    """Fill the registry's tables; returns the rows written per table."""
    rng = random.Random(seed)
    db.upgrade()
    counts: dict[str, int] = {}
    year_start, _ = month_bounds("2025-11")
    _, year_end = month_bounds(MONTH)
    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cursor:
            for table in (
                "decision_log",
                "referral",
                "notification",
                "event",
                "violation_case",
                "permit",
                "status_record",
                "structure",
            ):
                cursor.execute(f"TRUNCATE {table} CASCADE")
        conn.commit()

        # The structures, and the cases with their histories as the log's events.
        at_json = orjson.dumps(format_time(IMPORT_AT))
        events: list[tuple[datetime, str, bytes]] = []  # (at, structure, record bytes), in order
        for n in range(structures):
            sid = structure_id(n)
            row = {"type": "structure", "id": sid, "area": "urban", "district": sid.split("-")[0]}
            events.append((IMPORT_AT, sid, canonical_json(row)))
        cases: list[dict[str, Any]] = []
        kinds, sources = list(CaseKind), list(CaseSource)
        case_events: list[tuple[datetime, str, bytes]] = []
        for i in range(structures // 20):
            n = rng.randrange(structures)
            opened = IMPORT_AT - timedelta(days=365) + timedelta(seconds=rng.randrange(86400 * 820))
            stage_now = rng.choices(list(PATHS), STAGE_WEIGHTS)[0]
            record: dict[str, Any] = {
                "type": "case",
                "id": f"C-{i:07d}",
                "structure": structure_id(n),
                "kind": rng.choice(kinds).value,
                "source": rng.choice(sources).value,
                "opened": format_time(opened),
            }
            if i % 5 == 0:
                record["party"] = f"9111{i % 9973:014d}"
                if stage_now in ("stop_order", "demolition_order") and i % 2 == 0:
                    record["party_suspended"] = True
            at = max(opened + timedelta(hours=rng.randrange(1, 48)), IMPORT_AT)
            last: dict[str, Any] | None = None
            for stage in PATHS[stage_now]:
                if at > NOW:
                    break
                last = {**record, "stage": stage}
                case_events.append((at, last["structure"], canonical_json(last)))
                at += timedelta(days=rng.randrange(5, 60), seconds=rng.randrange(86400))
            if last is not None:  # found after the fill's end: not in the registry yet
                cases.append(last)
        case_events.sort(key=lambda e: e[0])
        events.extend(case_events)
        events.sort(key=lambda e: e[0])  # stable: the import's structures first

        def structure_lines() -> Iterator[str]:
            for n in range(structures):
                sid = structure_id(n)
                yield f"{sid}\turban\t{sid.split('-')[0]}\t\\N\t\\N\n"

        counts["structure"] = _copy(
            conn, "structure", "id, area, district, address, declared_use", structure_lines()
        )
        conn.commit()

        def event_lines() -> Iterator[str]:
            for seq, (at, sid, record_bytes) in enumerate(events):
                at_bytes = at_json if at == IMPORT_AT else orjson.dumps(format_time(at))
                body = event_bytes(seq, at_bytes, record_bytes)
                yield f"{seq}\t{sid}\t\\\\x{body.hex()}\n"

        counts["event"] = _copy(conn, "event", "seq, structure_id, body", event_lines())
        conn.commit()

        def case_lines() -> Iterator[str]:
            for c in cases:
                party = c.get("party", "\\N")
                suspended = "t" if c.get("party_suspended") else "f"
                yield (
                    f"{c['id']}\t{c['structure']}\t{c['kind']}\t{c['stage']}\t{c['source']}\t"
                    f"{c['opened']}\t{party}\t{suspended}\n"
                )

        counts["violation_case"] = _copy(
            conn,
            "violation_case",
            "id, structure_id, kind, stage, source, opened, party, party_suspended",
            case_lines(),
        )
        conn.commit()

        # A year of decisions, in time order.
        total = per_day * (year_end - year_start).days
        step = (year_end - year_start) / total
        utilities, offices = [u.value for u in Utility], [o.value for o in Office]

        def decision_lines() -> Iterator[str]:
            for k in range(total):
                at = year_start + k * step
                n = rng.randrange(structures)
                sid = structure_id(n) if k % 100 else f"UNREGISTERED-{k}"
                roll = rng.random()
                if roll < 0.40:
                    check = "connection"
                    request = (
                        f'{{"type":"connection","structure_id":"{sid}","utility":'
                        f'"{utilities[k % 4]}","kind":"permanent","requested_until":null,'
                        f'"application_id":"A-{k}"}}'
                    )
                elif roll < 0.75:
                    check = "registration"
                    request = (
                        f'{{"type":"registration","structure_id":"{sid}","kind":"transfer",'
                        f'"application_id":"A-{k}"}}'
                    )
                else:
                    check = "premises"
                    request = (
                        f'{{"type":"premises","structure_id":"{sid}","office":'
                        f'"{offices[k % 7]}","declared_use":"retail","application_id":"A-{k}"}}'
                    )
                verdict = VERDICTS[k % 100]
                yield (
                    f"D{k:015d}\t{_t(at)}\tgate-1\t{check}\t{sid}\t{request}\t{verdict}\t"
                    f"[]\t{k // 1000 + 1}\t\\N\n"
                )

        counts["decision_log"] = _copy(
            conn,
            "decision_log",
            "decision_id, decided_at, caller, check_type, structure_id, request, verdict, "
            "reasons, registry_version, notification_id",
            decision_lines(),
        )
        conn.commit()

        days = (year_end - year_start).days
        notifying = ["market_regulation", "culture", "health", "tax"]

        def notice_lines() -> Iterator[str]:
            for k in range(20 * days):
                at = year_start + timedelta(seconds=k * 86400 / 20)
                sid = structure_id(rng.randrange(structures))
                ack = "\\N" if k % 3 else _t(at + timedelta(days=2))
                by = "\\N" if k % 3 else "city-working-group"
                yield (
                    f"N-{k:08d}\t{sid}\t{notifying[k % 4]}\tAPP-{k}\t"
                    f'[{{"code":"NO_PERMIT"}}]\t{_t(at)}\t{ack}\t{by}\n'
                )

        counts["notification"] = _copy(
            conn,
            "notification",
            "id, structure_id, office, application_id, reasons, created_at, acknowledged_at, "
            "acknowledged_by",
            notice_lines(),
        )

        departments = ["city-planning", "city-land", "city-housing", "city-enforcement"]

        def referral_lines() -> Iterator[str]:
            for k in range(10 * days):
                found = year_start + timedelta(seconds=k * 86400 / 10)
                due = found + timedelta(days=2)
                late = k % 10 == 0
                referred = due + timedelta(days=1) if late else due - timedelta(hours=3)
                decided = referred + timedelta(days=3)
                answer_due = decided + timedelta(days=2)
                answered = answer_due + (timedelta(days=1) if k % 10 == 5 else -timedelta(hours=2))
                sid = structure_id(rng.randrange(structures))
                yield (
                    f"R-{k:08d}\t{sid}\t{sid.split('-')[0]}\tno_planning_permit\t"
                    f"{departments[k % 3]}\t{_t(found)}\t{_t(due)}\tcity-enforcement\t"
                    f"{_t(referred)}\t{_t(decided)}\tstop_order\t{_t(answer_due)}\t"
                    f"{_t(answered)}\tanswered\n"
                )

        counts["referral"] = _copy(
            conn,
            "referral",
            "case_id, structure_id, district, case_kind, found_by, found_at, referral_due, "
            "referred_to, referred_at, decided_at, decision, answer_due, answered_at, answer",
            referral_lines(),
        )
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cursor:  # what autovacuum does in time on a running registry
            cursor.execute("VACUUM (ANALYZE)")
        conn.autocommit = False
    finally:
        raw.close()
    return counts


def _marker(db: Database) -> dict[str, Any] | None:
    if not sa.inspect(db.engine).has_table("registry_meta"):
        return None
    with db.session() as session:
        value = session.scalar(
            sa.text("SELECT value FROM registry_meta WHERE key = 'report_bench'")
        )
    return None if value is None else dict(json.loads(value))


def _set_marker(db: Database, marker: dict[str, Any]) -> None:
    with db.session() as session:
        session.execute(sa.text("DELETE FROM registry_meta WHERE key = 'report_bench'"))
        session.execute(
            sa.text("INSERT INTO registry_meta (key, value) VALUES ('report_bench', :v)"),
            {"v": json.dumps(marker)},
        )


def _median(work: Any, rounds: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def _sizes(db: Database) -> dict[str, int]:
    tables = ["structure", "violation_case", "event", "decision_log", "notification", "referral"]
    with db.session() as session:
        return {t: int(session.scalar(sa.text(f"SELECT count(*) FROM {t}")) or 0) for t in tables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a PostgreSQL URL (the database must exist)")
    parser.add_argument("--structures", type=int, default=1_000_000)
    parser.add_argument("--per-day", type=int, default=27_400, help="decisions a day")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--refill", action="store_true", help="fill again even if filled")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args(argv)
    db = Database(args.db)
    if db.dialect != "postgresql":
        parser.error("--db: the report benchmark is PostgreSQL's (issue 10's target)")
    db.upgrade()  # a database filled by an older schema gets the newer indexes
    wanted = {"structures": args.structures, "per_day": args.per_day, "seed": args.seed}
    fill_seconds = None
    if args.refill or _marker(db) != wanted:
        print(f"filling {db} ({wanted}) ...", flush=True)
        start = time.perf_counter()
        fill(db, args.structures, args.per_day, args.seed)
        fill_seconds = time.perf_counter() - start
        _set_marker(db, wanted)
        print(f"filled in {fill_seconds:.0f} s", flush=True)
    else:
        print(f"reusing {db} ({wanted})", flush=True)
    sizes = _sizes(db)
    district = DISTRICTS[3]
    city_s, city_runs, city = _median(lambda: monthly_report(db, MONTH, now=NOW), args.rounds)
    district_s, district_runs, one = _median(
        lambda: monthly_report(db, MONTH, district, now=NOW), args.rounds
    )
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        write_csv(city, Path(scratch) / "r.csv")
        write_chart(city, Path(scratch) / "r.png")
        files_s = time.perf_counter() - start
    month_start, month_end = month_bounds(MONTH)
    month_checks = sum(f.value for f in city.figures if f.section == "checks")
    pg_version = subprocess.run(
        ["psql", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    figures = {
        "month": MONTH,
        "machine": f"{platform.machine()}, {platform.processor() or '?'}, Python "
        f"{platform.python_version()}, {pg_version}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),  # the machine is shared: what else ran
        "options": wanted,
        "rows": sizes,
        "fill_seconds": fill_seconds,
        "checks_in_month": month_checks,
        "city_seconds": city_s,
        "city_runs": city_runs,
        "district": district,
        "district_seconds": district_s,
        "district_runs": district_runs,
        "csv_and_png_seconds": files_s,
        "target_seconds": 10.0,
        "city_figures": [(f.section, f.key, f.value) for f in city.figures],
        "district_figures": [(f.section, f.key, f.value) for f in one.figures],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "monthly_report.json").write_text(json.dumps(figures, indent=1) + "\n")
    met = "met" if max(city_s, district_s) < 10 else "MISSED"
    sections: dict[str, int] = {}
    for section, _, value in figures["city_figures"]:
        sections[section] = sections.get(section, 0) + value
    lines = [
        "# The monthly report on a city-sized registry (PostgreSQL)",
        "",
        f"{figures['date']}; {figures['machine']}; load average "
        f"{', '.join(f'{x:.1f}' for x in figures['load_average'])} ({os.cpu_count()} cores).",
        "",
        "| rows | |",
        "|---|---:|",
        *(f"| {t} | {n:,} |" for t, n in sizes.items()),
        "",
        f"Decisions: {args.per_day:,} a day over the year to {MONTH} "
        f"({month_checks:,} in {MONTH}, {month_start:%Y-%m-%d %H:%M} to "
        f"{month_end:%Y-%m-%d %H:%M} UTC).",
        "",
        "| report for " + MONTH + " | median (s) | runs (s) |",
        "|---|---:|---|",
        f"| the city | {city_s:.2f} | {', '.join(f'{t:.2f}' for t in city_runs)} |",
        f"| district {district} | {district_s:.2f} | "
        f"{', '.join(f'{t:.2f}' for t in district_runs)} |",
        f"| CSV and PNG (city) | {files_s:.2f} | |",
        "",
        f"Issue 10's target, under 10 s: {met}.",
        "",
        "Totals per section (city): " + ", ".join(f"{s} {v:,}" for s, v in sections.items()) + ".",
        "",
    ]
    (RESULTS / "monthly_report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
