"""Working days and Art. 19's deadlines, as tables, against ``registry/workdays.py``.

The 2026 file is read day by day against the State Council's notice (every holiday and make-up
day, as the notice lists them) and against ``chinese_calendar``, an independent reading of the
same notice; the provisional 2027 file against the lunar calendar and solar terms of
``lunar_python``. The deadlines table gives a finding's local time in the city and the local day
whose 24:00 it is due by. Bad files name the file and the line or key.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar
import pytest
from lunar_python import Lunar

from registry.workdays import CITY_TZ, CalendarError, WorkCalendar, read_calendar

REPO = Path(__file__).resolve().parent.parent
CALENDARS = REPO / "registry" / "calendars"


def _days(first: str, last: str) -> list[date]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# The notice of 2025-11-04, festival by festival: (rest days, make-up working days).
NOTICE_2026: dict[str, tuple[list[date], list[date]]] = {
    "元旦": (_days("2026-01-01", "2026-01-03"), [date(2026, 1, 4)]),
    "春节": (_days("2026-02-15", "2026-02-23"), [date(2026, 2, 14), date(2026, 2, 28)]),
    "清明": (_days("2026-04-04", "2026-04-06"), []),
    "劳动节": (_days("2026-05-01", "2026-05-05"), [date(2026, 5, 9)]),
    "端午": (_days("2026-06-19", "2026-06-21"), []),
    "中秋": (_days("2026-09-25", "2026-09-27"), []),
    "国庆": (_days("2026-10-01", "2026-10-07"), [date(2026, 9, 20), date(2026, 10, 10)]),
}
REST_2026 = [(name, day) for name, (rest, _) in NOTICE_2026.items() for day in rest]
MAKEUP_2026 = [(name, day) for name, (_, work) in NOTICE_2026.items() for day in work]


@pytest.fixture(scope="module")
def calendar() -> WorkCalendar:
    return WorkCalendar.default()


@pytest.mark.parametrize(("festival", "day"), REST_2026, ids=[str(d) for _, d in REST_2026])
def test_every_2026_holiday_is_a_rest_day(calendar: WorkCalendar, festival: str, day: date) -> None:
    assert not calendar.is_working_day(day), festival
    assert calendar.covers(day)


@pytest.mark.parametrize(("festival", "day"), MAKEUP_2026, ids=[str(d) for _, d in MAKEUP_2026])
def test_every_2026_make_up_day_is_a_working_weekend_day(
    calendar: WorkCalendar, festival: str, day: date
) -> None:
    assert day.weekday() >= 5, festival
    assert calendar.is_working_day(day)


def test_the_2026_file_lists_the_notice_and_nothing_else() -> None:
    year = read_calendar(CALENDARS / "2026.toml")
    assert year.holidays == {day for _, day in REST_2026}
    assert year.workdays == {day for _, day in MAKEUP_2026}
    assert not year.provisional
    assert "2026" in year.source and "2025-11-04" in year.source


def test_every_day_of_2026_agrees_with_an_independent_reading(calendar: WorkCalendar) -> None:
    disagree = [
        day
        for day in _days("2026-01-01", "2026-12-31")
        if calendar.is_working_day(day) != chinese_calendar.is_workday(day)
    ]
    assert disagree == []


def test_2027_is_provisional_with_the_statutory_holidays_on_their_lunar_dates(
    calendar: WorkCalendar,
) -> None:
    spring = Lunar.fromYmd(2027, 1, 1)
    eve = spring.next(-1)  # 除夕: the last day of the lunar year, 腊月廿九 or 三十
    statutory = {
        date(2027, 1, 1),  # 元旦
        *(_solar(eve.next(i)) for i in range(4)),  # 春节: 除夕 and 正月初一 to 初三
        _solar(Lunar.fromYmd(2027, 3, 1).getJieQiTable()["清明"]),  # 清明: the solar term
        date(2027, 5, 1),  # 劳动节
        date(2027, 5, 2),
        _solar(Lunar.fromYmd(2027, 5, 5)),  # 端午
        _solar(Lunar.fromYmd(2027, 8, 15)),  # 中秋
        *_days("2027-10-01", "2027-10-03"),  # 国庆
    }
    year = calendar.year(2027)
    assert year is not None
    assert year.holidays == statutory
    assert min(year.holidays - {date(2027, 1, 1)}) == date(2027, 2, 5)
    assert year.workdays == frozenset()
    assert calendar.provisional_years == (2027,)
    assert calendar.years == (2026, 2027)


def _solar(day: Any) -> date:
    """A lunar_python Lunar or Solar (untyped objects) as a date."""
    solar = day.getSolar() if hasattr(day, "getSolar") else day
    return date.fromisoformat(solar.toYmd())


# (what, the finding's local time in the city, working days, the local day it is due by at 24:00)
DEADLINES = [
    ("Friday finding, due Tuesday", "2026-03-06 10:00", 2, "2026-03-10"),
    ("Thursday finding, due Monday", "2026-03-05 10:00", 2, "2026-03-09"),
    ("just before 中秋", "2026-09-24 17:00", 2, "2026-09-29"),
    ("just before 国庆", "2026-09-30 09:00", 2, "2026-10-09"),
    ("make-up Saturday counts (劳动节)", "2026-05-08 11:00", 2, "2026-05-11"),
    ("make-up Saturday counts (春节)", "2026-02-13 11:00", 2, "2026-02-24"),
    ("make-up Saturday is the first day", "2026-02-13 11:00", 1, "2026-02-14"),
    ("finding on a holiday", "2026-10-03 12:00", 2, "2026-10-09"),
    ("finding on the last day of 春节", "2026-02-23 20:00", 2, "2026-02-25"),
    ("finding on a make-up Sunday", "2026-09-20 08:00", 2, "2026-09-22"),
    ("year boundary into 2027's 元旦", "2026-12-31 15:00", 2, "2027-01-05"),
    ("year boundary into 2026's 元旦", "2025-12-31 15:00", 2, "2026-01-05"),
    ("23:30 local Thursday", "2026-03-05 23:30", 2, "2026-03-09"),
    ("00:30 local Friday", "2026-03-06 00:30", 2, "2026-03-10"),
    ("the same day's end with 0", "2026-10-03 12:00", 0, "2026-10-03"),
    ("uncovered 2028: weekends only", "2028-09-29 10:00", 2, "2028-10-03"),
]


@pytest.mark.parametrize(
    ("what", "found", "working_days", "due_day"), DEADLINES, ids=[row[0] for row in DEADLINES]
)
def test_deadline(
    calendar: WorkCalendar, what: str, found: str, working_days: int, due_day: str
) -> None:
    at = datetime.fromisoformat(found).replace(tzinfo=CITY_TZ).astimezone(UTC)
    due = calendar.due(at, working_days)
    end_of_day = datetime.combine(date.fromisoformat(due_day), time(0), tzinfo=CITY_TZ)
    assert due == (end_of_day + timedelta(days=1)).astimezone(UTC), what
    assert due.tzinfo == UTC
    assert calendar.add_working_days(at.astimezone(CITY_TZ).date(), working_days) == (
        date.fromisoformat(due_day)
    )


def test_the_city_day_not_the_utc_day_starts_the_count(calendar: WorkCalendar) -> None:
    # Both are Thursday 2026-03-05 in UTC; the second is already Friday 00:30 in the city.
    before = calendar.due(datetime(2026, 3, 5, 15, 30, tzinfo=UTC))
    after = calendar.due(datetime(2026, 3, 5, 16, 30, tzinfo=UTC))
    assert before == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)  # Monday 24:00 in the city
    assert after == datetime(2026, 3, 10, 16, 0, tzinfo=UTC)  # Tuesday 24:00 in the city


def test_the_default_due_is_two_working_days(calendar: WorkCalendar) -> None:
    at = datetime(2026, 2, 13, 3, 0, tzinfo=UTC)
    assert calendar.due(at) == calendar.due(at, 2) != calendar.due(at, 1)


def test_a_naive_time_or_negative_count_is_refused(calendar: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        calendar.due(datetime(2026, 3, 5, 10, 0))
    with pytest.raises(ValueError, match="0 or more, not -1"):
        calendar.add_working_days(date(2026, 3, 5), -1)


def test_outside_the_covered_years_weekends_only_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calendar = WorkCalendar.load([CALENDARS / "2026.toml"])
    with caplog.at_level(logging.WARNING, logger="registry.workdays"):
        assert not calendar.covers(date(2027, 1, 1))
        assert calendar.is_working_day(date(2027, 1, 1))  # 元旦, but no 2027 file here
        assert not calendar.is_working_day(date(2027, 1, 2))  # a Saturday
        assert calendar.is_working_day(date(2025, 12, 31))
        calendar.due(datetime(2027, 2, 4, 2, 0, tzinfo=UTC), 10)
    warned = [r.getMessage() for r in caplog.records if r.name == "registry.workdays"]
    assert len(warned) == 2
    assert "2027" in warned[0] and "weekends only" in warned[0]
    assert "2025" in warned[1]
    assert calendar.covers(date(2026, 12, 31))
    assert calendar.provisional_years == ()


GOOD = """\
year = 2026
source = "a notice"
holidays = [2026-01-01]
workdays = [2026-01-04]
"""

# (what, file text, what the error must say besides the file's name)
BAD_FILES = [
    ("not TOML", GOOD + "oops\n", "line 5"),
    ("unknown key", GOOD + "holiday = [2026-01-02]\n", "line 5, holiday: unknown key"),
    ("missing key", GOOD.replace("workdays = [2026-01-04]\n", ""), "'workdays' is missing"),
    ("year not a number", GOOD.replace("year = 2026", 'year = "2026"'), "line 1, year:"),
    ("no source", GOOD.replace('"a notice"', '""'), "line 2, source:"),
    ("provisional not a flag", GOOD + 'provisional = "yes"\n', "line 5, provisional:"),
    ("holidays not a list", GOOD.replace("[2026-01-01]", "2026-01-01"), "line 3, holidays:"),
    (
        "quoted date",
        GOOD.replace("[2026-01-01]", '[2026-01-01,\n "2026-01-02"]'),
        "line 4, holidays[1]: must be a date",
    ),
    ("date and time", GOOD.replace("[2026-01-01]", "[2026-01-01T08:00:00]"), "holidays[0]"),
    ("wrong year", GOOD.replace("[2026-01-01]", "[2025-10-01]"), "line 3, holidays[0]: 2025-10-01"),
    (
        "listed twice",
        GOOD.replace("[2026-01-01]", "[2026-01-01,\n 2026-01-02, 2026-01-01]"),
        "holidays[2]: 2026-01-01 is listed twice",
    ),
    (
        "make-up day on a weekday",
        GOOD.replace("[2026-01-04]", "[2026-01-05]"),
        "line 4, workdays: 2026-01-05 is a Monday",
    ),
    (
        "both rest and work",
        GOOD.replace("[2026-01-04]", "[2026-01-01]"),
        "workdays: 2026-01-01 is also listed as a holiday",
    ),
]


@pytest.mark.parametrize(("what", "text", "says"), BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_a_bad_calendar_file_is_refused_naming_file_and_place(
    tmp_path: Path, what: str, text: str, says: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarError) as raised:
        WorkCalendar.load([path])
    message = str(raised.value)
    assert message.startswith(f"{path}: "), what
    assert says in message, message


def test_the_good_file_of_the_bad_table_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD, encoding="utf-8")
    calendar = WorkCalendar.load([path])
    assert not calendar.is_working_day(date(2026, 1, 1))
    assert calendar.is_working_day(date(2026, 1, 4))


def test_two_files_for_one_year_are_refused(tmp_path: Path) -> None:
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text(GOOD, encoding="utf-8")
    with pytest.raises(CalendarError, match="two calendars for the year 2026"):
        WorkCalendar.load([tmp_path / "a.toml", tmp_path / "b.toml"])


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match=r"nothing\.toml: cannot read"):
        WorkCalendar.load([tmp_path / "nothing.toml"])


def test_the_wheel_ships_the_calendars(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    for package in ("permitgate", "registry", "server"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = tmp_path / "wheel"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"),
            *("--wheel-dir", str(built), str(source)),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = built.glob("permitgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"registry/calendars/{path.name}" for path in CALENDARS.glob("*.toml")}
    assert shipped >= {"registry/calendars/2026.toml", "registry/calendars/2027.toml"}
    assert shipped <= names
