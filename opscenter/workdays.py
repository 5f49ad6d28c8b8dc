"""The Chinese working-day calendar (statutory holidays, make-up working days) and §19 deadlines.

The source is the ``chinese-calendar`` package (the State Council's yearly schedule); a data
file (``opscenter/data/workdays_override.yaml``) defines years the package does not know yet,
or corrects one: a year listed there is Monday–Friday minus its ``holidays`` plus its
``workdays`` (调休上班日). Days are calendar days in Asia/Shanghai. Pure: no I/O but reading
the override file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import chinese_calendar

import opscenter
from opscenter.datafile import DataFileError, Doc, load_yaml

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_OVERRIDE_FILE = Path(opscenter.__file__).resolve().parent / "data" / "workdays_override.yaml"
#: §19: the bureau decides on an application within 2 working days
DECISION_WORKING_DAYS = 2


class UnknownYearError(LookupError):
    """Neither chinese-calendar nor the override file knows the year's holidays."""


@dataclass(frozen=True, slots=True)
class YearOverride:
    """One year's holidays and make-up working days, as the override file states them."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]


class WorkdayCalendar:
    """Working days: the override file's years first, then chinese-calendar."""

    def __init__(self, overrides: Mapping[int, YearOverride] | None = None, *, weekdays_if_unknown: bool = False) -> None:
        self.overrides = dict(overrides or {})
        #: True: a year nobody knows counts Monday–Friday (logged by the caller); False: raise
        self.weekdays_if_unknown = weekdays_if_unknown

    def knows(self, year: int) -> bool:
        """Whether the year's schedule is known (override file or chinese-calendar)."""
        if year in self.overrides:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def is_workday(self, day: date) -> bool:
        """Whether ``day`` is a working day (make-up Saturdays and Sundays included)."""
        o = self.overrides.get(day.year)
        if o is not None:
            if day in o.workdays:
                return True
            return day.weekday() < 5 and day not in o.holidays
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if self.weekdays_if_unknown:
                return day.weekday() < 5
            raise UnknownYearError(
                f"no holiday schedule for {day.year}: add it to {DEFAULT_OVERRIDE_FILE.name} "
                "or upgrade chinese-calendar"
            ) from None

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` itself not counted; n=0: start)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        day = start
        while n:
            day += timedelta(days=1)
            if self.is_workday(day):
                n -= 1
        return day

    def deadline(self, start: datetime, working_days: int = DECISION_WORKING_DAYS) -> datetime:
        """End of the ``working_days``-th working day after ``start``'s day in Shanghai, in UTC.

        The day of ``start`` is not counted (期间开始之日不计算在内); the deadline is the
        midnight (Asia/Shanghai) that ends the last allowed working day, exclusive.
        """
        if start.tzinfo is None:
            raise ValueError("start needs a time zone")
        last = self.add_working_days(start.astimezone(SHANGHAI).date(), working_days)
        return datetime.combine(last + timedelta(days=1), time(0), SHANGHAI).astimezone(timezone.utc)


def _day(doc: Doc, path: tuple[Any, ...], value: Any, year: int) -> list[date]:
    if isinstance(value, str) and ".." in value:  # a range "2027-10-01..2027-10-07"
        a, b = (_day(doc, path, part.strip(), year)[0] for part in value.split("..", 1))
        if b < a:
            raise doc.error(path, f"range {value!r} ends before it starts")
        return [a + timedelta(days=i) for i in range((b - a).days + 1)]
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise doc.error(path, f"{value!r} is not a date YYYY-MM-DD") from None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise doc.error(path, f"{value!r} is not a date YYYY-MM-DD")
    if value.year != year:
        raise doc.error(path, f"{value.isoformat()} is not in {year}")
    return [value]


def parse_overrides(doc: Doc) -> dict[int, YearOverride]:
    """Validate a parsed override file: ``years: {YYYY: {holidays: [...], workdays: [...]}}``."""
    v = doc.value if doc.value is not None else {}
    if not isinstance(v, dict):
        raise doc.error((), "expected a mapping with the single field 'years'")
    for key in v:
        if key != "years":
            raise doc.error((key,), "unknown field (the file has the single field 'years')")
    years = v.get("years") or {}
    if not isinstance(years, dict):
        raise doc.error(("years",), "expected a mapping year → {holidays, workdays}")
    out: dict[int, YearOverride] = {}
    for year, entry in years.items():
        if isinstance(year, bool) or not isinstance(year, int) or not 1949 < year < 2200:
            raise doc.error(("years", year), f"{year!r} is not a year")
        if not isinstance(entry, dict) or set(entry) - {"holidays", "workdays"}:
            raise doc.error(("years", year), "expected {holidays: [dates], workdays: [dates]}")
        lists: dict[str, frozenset[date]] = {}
        for key in ("holidays", "workdays"):
            items = entry.get(key) or []
            if not isinstance(items, list):
                raise doc.error(("years", year, key), "expected a list of dates")
            days: set[date] = set()
            for i, item in enumerate(items):
                days.update(_day(doc, ("years", year, key, i), item, year))
            lists[key] = frozenset(days)
        both = lists["holidays"] & lists["workdays"]
        if both:
            raise doc.error(("years", year), f"{min(both).isoformat()} is both a holiday and a workday")
        out[year] = YearOverride(year, lists["holidays"], lists["workdays"])
    return out


def load_calendar(path: str | Path = DEFAULT_OVERRIDE_FILE, *, weekdays_if_unknown: bool = False) -> WorkdayCalendar:
    """The calendar with the override file applied; :class:`DataFileError` names file, line, field."""
    try:
        doc = load_yaml(path)
    except OSError as exc:
        raise DataFileError(str(path), None, "", f"cannot read: {exc}") from exc
    return WorkdayCalendar(parse_overrides(doc), weekdays_if_unknown=weekdays_if_unknown)


def add_working_days(start: date, n: int, calendar: WorkdayCalendar | None = None) -> date:
    """The ``n``-th working day after ``start`` (default calendar: package + override file)."""
    return (calendar or load_calendar()).add_working_days(start, n)


def decision_deadline(applied_at: datetime, calendar: WorkdayCalendar | None = None) -> datetime:
    """§19: when the bureau's decision on an application made at ``applied_at`` is due (UTC)."""
    return (calendar or load_calendar()).deadline(applied_at, DECISION_WORKING_DAYS)
