"""Working days in the city: weekends, public holidays and make-up working days, from files.

Art. 19's deadlines run in working days: a case found outside the finder's remit is referred
within 2 working days, and the decision is reported back within 2 working days of making it. A
day is a working day when it is a weekday that is not a public holiday, or a weekend day the
State Council names as a make-up working day (调休上班). Both lists change every year, so they are
data, not code: one TOML file per year (``registry/calendars/YYYY.toml``, shipped in the package),
read with the standard library's ``tomllib``::

    year = 2026
    source = "国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04)"
    holidays = [2026-01-01, ...]   # rest days, whatever the weekday
    workdays = [2026-01-04, ...]   # make-up working days: weekend days worked
    provisional = true             # optional: statutory holidays only, notice not yet published

A year without a file falls back to weekends only; ``covers`` says so, and the calendar logs a
warning once per such year, since a deadline computed that way may be early or late by the
holidays it does not know. A malformed file stops the load with a ``CalendarError`` naming the
file and the line or key.

``due(at)`` is the deadline itself: the end (24:00 in the city, Asia/Shanghai) of the n-th working
day after the local day of ``at``, as an aware UTC datetime. The day of the finding never counts,
whatever it is; a finding on Friday is due by Tuesday 24:00.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Final, Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "CITY_TZ",
    "CalendarError",
    "WorkCalendar",
    "YearCalendar",
    "read_calendar",
    "superseded_years",
]

log = logging.getLogger(__name__)

CITY_TZ: Final = ZoneInfo("Asia/Shanghai")
"""The city's time zone: a day, and so a deadline's 24:00, is a day in this zone."""

_SATURDAY: Final = 5
_KEYS: Final = frozenset({"year", "source", "provisional", "holidays", "workdays"})
_REQUIRED: Final = ("year", "source", "holidays", "workdays")


class CalendarError(ValueError):
    """A calendar file that cannot be used: the message names the file and the line or key."""


@dataclass(frozen=True, slots=True)
class YearCalendar:
    """One year's rest and working days as published (or, if ``provisional``, as statute fixes)."""

    year: int
    source: str
    holidays: frozenset[date]
    workdays: frozenset[date]
    provisional: bool = False


class WorkCalendar:
    """Working days over the years that have a calendar file; weekends only for the others."""

    def __init__(self, years: Iterable[YearCalendar], *, warn: bool = True) -> None:
        by_year: dict[int, YearCalendar] = {}
        for year in years:
            if year.year in by_year:
                raise CalendarError(f"two calendars for the year {year.year}")
            by_year[year.year] = year
        self._years: Mapping[int, YearCalendar] = by_year
        self._warn = warn
        self._warned: set[int] = set()

    def replaced(self, year: int, by: YearCalendar | None) -> WorkCalendar:
        """This calendar as it was with ``year``'s file ``by`` (None: no file, weekends only):
        for recomputing a deadline written before that year's file was shipped or replaced.
        It logs nothing for the years it counts by weekends only."""
        years = [y for y in self._years.values() if y.year != year]
        return WorkCalendar(years if by is None else [*years, by], warn=False)

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> WorkCalendar:
        """A calendar from these files, one year each; ``CalendarError`` if any is malformed."""
        return cls(read_calendar(Path(path)) for path in paths)

    @classmethod
    def default(cls) -> WorkCalendar:
        """The calendar shipped with permitgate (``registry/calendars/*.toml``), read once."""
        global _default
        if _default is None:
            folder = resources.files("registry").joinpath("calendars")
            files = sorted(
                (entry for entry in folder.iterdir() if entry.name.endswith(".toml")),
                key=lambda entry: entry.name,
            )
            _default = cls(
                _parse(entry.read_text(encoding="utf-8"), f"registry/calendars/{entry.name}")
                for entry in files
            )
        return _default

    @property
    def years(self) -> tuple[int, ...]:
        """The years this calendar has a file for, in order."""
        return tuple(sorted(self._years))

    @property
    def provisional_years(self) -> tuple[int, ...]:
        """The years whose file holds only the statutory holidays, awaiting the State Council."""
        return tuple(sorted(y for y, cal in self._years.items() if cal.provisional))

    def year(self, year: int) -> YearCalendar | None:
        """The file's content for ``year``, or None if the calendar has none."""
        return self._years.get(year)

    def covers(self, day: date) -> bool:
        """True when ``day``'s year has a calendar file (holidays known), False otherwise."""
        return day.year in self._years

    def is_working_day(self, day: date) -> bool:
        """Whether people work on ``day``: a make-up day, or a weekday that is no holiday."""
        calendar = self._years.get(day.year)
        if calendar is None:
            if self._warn and day.year not in self._warned:
                self._warned.add(day.year)
                log.warning(
                    "no working-day calendar for %d: counting weekends only (public holidays "
                    "and make-up working days of that year are not known)",
                    day.year,
                )
            return day.weekday() < _SATURDAY
        if day in calendar.workdays:
            return True
        return day.weekday() < _SATURDAY and day not in calendar.holidays

    def add_working_days(self, day: date, n: int) -> date:
        """The n-th working day after ``day`` (``day`` itself never counts); ``day`` if n is 0."""
        if n < 0:
            raise ValueError(f"working days must be 0 or more, not {n}")
        current = day
        counted = 0
        while counted < n:
            current += timedelta(days=1)
            if self.is_working_day(current):
                counted += 1
        return current

    def due(self, at: datetime, working_days: int = 2) -> datetime:
        """The end (24:00 in the city) of the n-th working day after ``at``'s local day, in UTC."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"a deadline needs an aware time, not the naive {at.isoformat()}")
        local_day = at.astimezone(CITY_TZ).date()
        last_day = self.add_working_days(local_day, working_days)
        midnight = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=CITY_TZ)
        return midnight.astimezone(UTC)


_default: WorkCalendar | None = None


def superseded_years() -> list[YearCalendar]:
    """The years' files the shipped ones replaced (``registry/calendars/superseded/``): a
    provisional year's file is kept there when the published one replaces it, so that the
    deadlines written under it can still be recomputed."""
    folder = resources.files("registry").joinpath("calendars", "superseded")
    if not folder.is_dir():
        return []
    return [
        _parse(entry.read_text(encoding="utf-8"), f"registry/calendars/superseded/{entry.name}")
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".toml")
    ]


def read_calendar(path: Path) -> YearCalendar:
    """One year's calendar from its TOML file; ``CalendarError`` naming file and line if bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalendarError(f"{path}: cannot read the calendar file: {exc}") from exc
    return _parse(text, str(path))


def _parse(text: str, name: str) -> YearCalendar:
    """Check every key and date of a calendar file's text; ``name`` is what errors call it."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CalendarError(f"{name}: not valid TOML: {exc}") from exc

    def fail(key: str, message: str, needle: str | None = None) -> CalendarError:
        line = _line_of(text, needle if needle is not None else key)
        where = f"line {line}, " if line else ""
        return CalendarError(f"{name}: {where}{key}: {message}")

    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key (a calendar has {', '.join(sorted(_KEYS))})")
    for key in _REQUIRED:
        if key not in table:
            raise CalendarError(f"{name}: the key {key!r} is missing")
    year = table["year"]
    if not isinstance(year, int) or isinstance(year, bool) or not 1949 <= year <= 9999:
        raise fail("year", f"must be a year such as 2026, not {year!r}")
    source = table["source"]
    if not isinstance(source, str) or not source.strip():
        raise fail("source", "must name the notice the days come from (a non-empty string)")
    provisional = table.get("provisional", False)
    if not isinstance(provisional, bool):
        raise fail("provisional", f"must be true or false, not {provisional!r}")
    holidays = _dates(table["holidays"], "holidays", year, fail)
    workdays = _dates(table["workdays"], "workdays", year, fail)
    for day in sorted(holidays & workdays):
        raise fail("workdays", f"{day} is also listed as a holiday", day.isoformat())
    for day in sorted(workdays):
        if day.weekday() < _SATURDAY:
            raise fail(
                "workdays",
                f"{day} is a {day:%A}: a make-up working day is a weekend day",
                day.isoformat(),
            )
    return YearCalendar(year, source.strip(), holidays, workdays, provisional)


def _dates(value: object, key: str, year: int, fail: _Fail) -> frozenset[date]:
    """A list of dates of ``year``, each once, written as TOML dates (2026-01-01, unquoted)."""
    if not isinstance(value, list):
        raise fail(key, f"must be a list of dates, not {value!r}")
    seen: set[date] = set()
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if isinstance(item, datetime) or not isinstance(item, date):
            needle = item if isinstance(item, str) else key
            raise fail(
                where, f"must be a date such as {year}-01-01 (unquoted), not {item!r}", needle
            )
        if item.year != year:
            raise fail(where, f"{item} is not in {year}", item.isoformat())
        if item in seen:
            raise fail(where, f"{item} is listed twice", item.isoformat())
        seen.add(item)
    return frozenset(seen)


class _Fail(Protocol):
    """The shape of ``_parse``'s ``fail``: an error for a key, located by a text on its line."""

    def __call__(self, key: str, message: str, needle: str | None = None) -> CalendarError: ...


def _line_of(text: str, needle: str) -> int | None:
    """The number of the first line that holds ``needle`` as a word, or None."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(needle)}(?![\w-])")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line.split("#", 1)[0]):
            return number
    return None
